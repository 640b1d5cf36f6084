// control_sse.go: reads a Server-Sent Events stream into events, one at a time. It knows nothing
// of what the events mean (control_follow.go) nor of where the bytes come from.
package app

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// maxSSELine bounds one line of the stream, so a broken peer cannot make the reader grow without
// end; a State with its GPU history is far below it.
const maxSSELine = 16 << 20

// sseEvent is one event: its name and its data, the data lines joined by "\n".
type sseEvent struct {
	event string
	data  []byte
}

type sseReader struct{ sc *bufio.Scanner }

func newSSEReader(r io.Reader) *sseReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), maxSSELine)
	return &sseReader{sc: sc}
}

// next returns the next event, skipping comments (keepalives); io.EOF once the stream has ended.
// An event the stream ends in the middle of is not returned: its data may be cut short.
func (s *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	hasData := false
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case line == "":
			if ev.event != "" || hasData {
				return ev, nil
			}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event: "):
			ev.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if hasData {
				ev.data = append(ev.data, '\n')
			}
			ev.data = append(ev.data, strings.TrimPrefix(line, "data: ")...)
			hasData = true
		}
	}
	if err := s.sc.Err(); err != nil {
		return sseEvent{}, fmt.Errorf("event stream: %w", err)
	}
	return sseEvent{}, io.EOF
}
