// http.go: one request to a backend over HTTP, its error words cut to a bound, and URL joining.
// It must not know which backend it talks to.

package engine

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxErrorBody caps how much of an error answer is read: enough to parse a JSON error whose
// message is long (llama-server quotes the whole generated text), of which maxBackendText is
// quoted.
const maxErrorBody = 64 << 10

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

// errorText reads a failed answer's body and returns it as a person reads it: the HTTP status,
// the backend's error type and code, and its message cut to maxBackendText bytes. It reads the
// JSON errors of OpenAI, llama.cpp, vLLM, Ollama and FastAPI servers, and plain text
// (whisper.cpp answers "Invalid request").
func errorText(resp *http.Response) string {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody+1))
	total := len(body)
	if total > maxErrorBody {
		body, total = body[:maxErrorBody], -1 // how much more is not known
	}
	if e, ok := parseBackendError(body); ok {
		return e.describe(resp.Status)
	}
	text := strings.TrimSpace(string(body))
	if text == "" {
		return resp.Status
	}
	if total >= 0 {
		total = len(text)
	}
	return resp.Status + ": " + clip(text, total, false)
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
