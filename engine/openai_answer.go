// openai_answer.go: reading a binary result out of an OpenAI-compatible server's answer: its
// file type from its first bytes, and a base64 value from inside JSON as it streams.
package engine

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// sniffExt names a file type from its first bytes, "" when unknown.
func sniffExt(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("\x89PNG")):
		return "png"
	case bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}):
		return "jpg"
	case len(b) >= 12 && string(b[0:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return "webp"
	case len(b) >= 12 && string(b[0:4]) == "RIFF" && string(b[8:12]) == "WAVE":
		return "wav"
	case bytes.HasPrefix(b, []byte("ID3")), len(b) >= 2 && b[0] == 0xFF && b[1]&0xE0 == 0xE0:
		return "mp3"
	case bytes.HasPrefix(b, []byte("OggS")):
		return "ogg"
	case bytes.HasPrefix(b, []byte("fLaC")):
		return "flac"
	case bytes.HasPrefix(b, []byte("GIF8")):
		return "gif"
	case len(b) >= 8 && string(b[4:8]) == "ftyp":
		return "mp4"
	case bytes.HasPrefix(b, []byte{0x1A, 0x45, 0xDF, 0xA3}):
		return "webm"
	}
	return ""
}

var errNoField = errors.New("field not found in the answer")

// jsonStringField reads the value of the first string field named key in a JSON stream, byte by
// byte as it arrives, undoing the escapes a base64 value can carry ("\/", and "\n" from encoders
// that wrap lines).
type jsonStringField struct {
	r     *bufio.Reader
	key   string
	found bool
	done  bool
}

func (j *jsonStringField) find() error {
	pat := `"` + j.key + `"`
	m := 0
	for m < len(pat) {
		c, err := j.r.ReadByte()
		if err != nil {
			return fmt.Errorf("%w: %s", errNoField, j.key)
		}
		switch {
		case c == pat[m]:
			m++
		case c == pat[0]:
			m = 1
		default:
			m = 0
		}
	}
	for _, want := range []byte{':', '"'} {
		for {
			c, err := j.r.ReadByte()
			if err != nil {
				return fmt.Errorf("%w: %s", errNoField, j.key)
			}
			if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
				continue
			}
			if c != want {
				return fmt.Errorf("%w: %s is not a string", errNoField, j.key)
			}
			break
		}
	}
	j.found = true
	return nil
}

func (j *jsonStringField) Read(p []byte) (int, error) {
	if j.done {
		return 0, io.EOF
	}
	if !j.found {
		if err := j.find(); err != nil {
			return 0, err
		}
	}
	n := 0
	for n < len(p) {
		c, err := j.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		switch c {
		case '"':
			j.done = true
			return n, io.EOF
		case '\\':
			e, err := j.r.ReadByte()
			if err != nil {
				return n, io.ErrUnexpectedEOF
			}
			switch e {
			case '/', '\\':
				p[n] = e
				n++
			case 'n', 'r', 't':
			default:
				return n, fmt.Errorf("unexpected escape \\%c in %s", e, j.key)
			}
		default:
			p[n] = c
			n++
		}
		if n > 0 && j.r.Buffered() == 0 {
			return n, nil // hand over what we have rather than block for more
		}
	}
	return n, nil
}
