// backendtext.go: a backend's own words on the way into a job's error: cut to a size a person
// can read (clip), and an error object's message, type and code read from the shapes the servers
// answer (backendError).
package engine

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxBackendText is the most of a backend's text (an error body, a stream's error chunk, a
// command's stderr, a node's exception) that goes into a job's error or one log line.
const maxBackendText = 1 << 10

// clipNoteRoom is what a clipped text keeps free for its note, which is shorter:
// "…(more than 63.0 KiB cut)" (a read limit) is 27 bytes, "…(99999.9 MiB cut)" 20.
const clipNoteRoom = 32

// clip cuts s to at most maxBackendText bytes, on a UTF-8 boundary, and says how much it cut: it
// keeps the start ("text…(9.2 KiB cut)"), or with keepEnd the end ("(9.2 KiB cut)…text"), where a
// command's last words are. total is the length of the whole text when s is only part of it (a
// read limit kept the rest), negative when that is not known. Invalid UTF-8 becomes "?".
func clip(s string, total int, keepEnd bool) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	whole := total >= 0 && total <= len(s)
	if len(s) <= maxBackendText && whole {
		return s
	}
	keep := min(len(s), maxBackendText-clipNoteRoom)
	var kept string
	if keepEnd {
		start := len(s) - keep
		for start < len(s) && !utf8.RuneStart(s[start]) {
			start++
		}
		kept = s[start:]
	} else {
		end := keep
		for end > 0 && end < len(s) && !utf8.RuneStart(s[end]) {
			end--
		}
		kept = s[:end]
	}
	amount := byteSize(max(total, len(s)) - len(kept))
	if total < 0 {
		amount = "more than " + amount
	}
	if keepEnd {
		return "(" + amount + " cut)…" + kept
	}
	return kept + "…(" + amount + " cut)"
}

// clipText cuts a backend's text to maxBackendText bytes, keeping its start.
func clipText(s string) string { return clip(s, len(s), false) }

// byteSize writes n bytes for a person: "312 bytes", "9.2 KiB", "3.4 MiB".
func byteSize(n int) string {
	switch {
	case n < 1<<10:
		return strconv.Itoa(n) + " bytes"
	case n < 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	default:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	}
}

// backendError is a backend's error object: OpenAI's and llama-server's {"message", "type",
// "code"}, vLLM's (also at the top level, with "object": "error"), Ollama's bare string, and the
// "detail" of a FastAPI server.
type backendError struct {
	Message string
	Type    string
	// Status is a numeric code (llama-server's and vLLM's carry the HTTP status), 0 when none.
	Status int
	// Code is a code in words (OpenAI's "context_length_exceeded"), "" when none.
	Code string
}

// parseBackendError reads an error answer's body, or the value of a stream chunk's "error".
// ok is false when raw holds no message it knows.
func parseBackendError(raw []byte) (e backendError, ok bool) {
	raw = bytes.TrimSpace(raw)
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return backendError{Message: s}, s != ""
	}
	var obj struct {
		Error   json.RawMessage `json:"error"`
		Message json.RawMessage `json:"message"`
		Type    string          `json:"type"`
		Code    json.RawMessage `json:"code"`
		Detail  json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(raw, &obj) != nil {
		return backendError{}, false
	}
	if len(obj.Error) > 0 && string(obj.Error) != "null" {
		if inner, ok := parseBackendError(obj.Error); ok {
			return inner, true
		}
	}
	e.Type = obj.Type
	e.Status, e.Code = readCode(obj.Code)
	if json.Unmarshal(obj.Message, &e.Message) == nil && e.Message != "" {
		return e, true
	}
	if json.Unmarshal(obj.Detail, &e.Message) == nil && e.Message != "" {
		return e, true
	}
	if len(obj.Detail) > 0 && string(obj.Detail) != "null" {
		e.Message = string(obj.Detail) // FastAPI's validation errors: a list of objects
		return e, true
	}
	return backendError{}, false
}

// readCode reads a "code" that is a number (an HTTP status), a string holding one, or words.
func readCode(raw json.RawMessage) (int, string) {
	var n float64
	if json.Unmarshal(raw, &n) == nil {
		return int(n), ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if i, err := strconv.Atoi(s); err == nil {
			return i, ""
		}
		return 0, s
	}
	return 0, ""
}

// head is the status, type and code that go in front of the message: "500 (server_error)".
// status is the answer's HTTP status line, "" inside a stream, where e.Status stands for it.
func (e backendError) head(status string) string {
	var label []string
	for _, p := range []string{e.Type, e.Code} {
		if p != "" && !slices.Contains(label, p) {
			label = append(label, p)
		}
	}
	if e.Status != 0 {
		if status == "" {
			status = strconv.Itoa(e.Status)
		} else if !strings.HasPrefix(status, strconv.Itoa(e.Status)) {
			label = append(label, "code "+strconv.Itoa(e.Status))
		}
	}
	if len(label) == 0 {
		return status
	}
	return strings.TrimSpace(status + " (" + strings.Join(label, ", ") + ")")
}

// describe writes the error as a person reads it, the head in front and the message clipped:
// "500 Internal Server Error (server_error): Failed to parse input at pos 22: …(9.2 KiB cut)".
func (e backendError) describe(status string) string {
	head := e.head(status)
	switch {
	case e.Message == "":
		return head
	case head == "":
		return clipText(e.Message)
	}
	return head + ": " + clipText(e.Message)
}
