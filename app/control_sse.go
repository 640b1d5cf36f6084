// control_sse.go: reads a Server-Sent Events stream into events, one at a time. It knows nothing
// of what the events mean (control_follow.go) nor of where the bytes come from.
package app

import (
	"bufio"
	"io"
	"strings"
)

type sseEvent struct {
	event string
	data  []byte
}

type sseReader struct{ sc *bufio.Scanner }

func newSSEReader(r io.Reader) *sseReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	return &sseReader{sc: sc}
}

func (s *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case line == "":
			if ev.event != "" || len(ev.data) > 0 {
				return ev, nil
			}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event: "):
			ev.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.data = append(ev.data, strings.TrimPrefix(line, "data: ")...)
		}
	}
	if err := s.sc.Err(); err != nil {
		return ev, err
	}
	return ev, io.EOF
}
