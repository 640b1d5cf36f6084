package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"
)

// maxErrorBody caps how much of an error answer is read and quoted.
const maxErrorBody = 4 << 10

// send does req with client and classifies a transport failure: cancelled or timed out (from the
// contexts), otherwise the backend is down.
func send(parent, ctx context.Context, client *http.Client, req *http.Request, name string) (*http.Response, error) {
	resp, err := client.Do(req)
	if err != nil {
		if cerr := ctxError(parent, ctx, name); cerr != nil {
			return nil, cerr
		}
		return nil, backendDown(name, err)
	}
	return resp, nil
}

// errorText reads a failed answer's body and returns its message: the "error.message" or
// "error" of a JSON body (OpenAI, llama.cpp, Ollama, ComfyUI), or the text itself (whisper.cpp
// answers plain text).
func errorText(resp *http.Response) string {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var j struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
		Detail  json.RawMessage `json:"detail"`
	}
	msg := ""
	if json.Unmarshal(body, &j) == nil {
		var e struct {
			Message string `json:"message"`
		}
		var s string
		switch {
		case json.Unmarshal(j.Error, &e) == nil && e.Message != "":
			msg = e.Message
		case json.Unmarshal(j.Error, &s) == nil && s != "":
			msg = s
		case j.Message != "":
			msg = j.Message
		case json.Unmarshal(j.Detail, &s) == nil && s != "":
			msg = s
		}
	}
	if msg == "" {
		msg = strings.TrimSpace(string(body))
	}
	if !utf8.ValidString(msg) {
		msg = strings.ToValidUTF8(msg, "?")
	}
	if msg == "" {
		return resp.Status
	}
	return fmt.Sprintf("%s: %s", resp.Status, msg)
}

// statusError classifies a failed HTTP answer from a backend. 404 means the model or endpoint is
// not served here; other 4xx mean the job's input was refused; 401/403 (a wrong API key), 408,
// 429 and 5xx are this worker's trouble, so another attempt may succeed.
func statusError(resp *http.Response, name string) *Error {
	text := errorText(resp)
	switch c := resp.StatusCode; {
	case c == http.StatusNotFound:
		return unsupported("", "%s: %s", name, text)
	case c == http.StatusUnauthorized || c == http.StatusForbidden:
		return backendFailed(true, "%s refused the API key: %s", name, text)
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		return backendFailed(true, "%s: %s", name, text)
	default:
		return &Error{Err: fmt.Errorf("%w: %s refused the job: %s", ErrInvalidInput, name, text)}
	}
}

// joinURL appends path to base, keeping base's own path (an OpenAI base URL ends in /v1).
func joinURL(base, path string) string {
	return strings.TrimRight(base, "/") + "/" + strings.TrimLeft(path, "/")
}
