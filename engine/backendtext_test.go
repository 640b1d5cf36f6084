// Tests of a backend's own words in a job's error: cut to 1 KiB on a UTF-8 boundary saying how
// much, with the status, type and code in front, from a 10 KiB error body, an error chunk inside
// a stream, a command's stderr and a ComfyUI node's exception, each sent by a real server or
// process in the test.
package engine

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"

	"studioworker/protocol"
)

func TestClip(t *testing.T) {
	long := strings.Repeat("ab", 5120) // 10 KiB
	runes := strings.Repeat("ü", 5120) // 10 KiB of two-byte runes
	tests := []struct {
		name    string
		in      string
		total   int
		keepEnd bool
		want    string // the whole answer, or with prefix/suffix below
		prefix  string
		suffix  string
	}{
		{name: "empty", in: "", total: 0, want: ""},
		{name: "short", in: "CUDA error: out of memory", total: 25, want: "CUDA error: out of memory"},
		{name: "exactly 1 KiB", in: long[:1024], total: 1024, want: long[:1024]},
		{name: "1 KiB and a byte", in: long[:1025], total: 1025, prefix: long[:992], suffix: "ab…(33 bytes cut)"},
		{name: "10 KiB", in: long, total: len(long), prefix: "abab", suffix: "ab…(9.0 KiB cut)"},
		{name: "10 KiB of two-byte runes", in: runes, total: len(runes), prefix: "üü", suffix: "ü…(9.0 KiB cut)"},
		{name: "keeping the end", in: "first " + long + " last words", total: len(long) + 17, keepEnd: true, prefix: "(9.0 KiB cut)…", suffix: "abab last words"},
		{name: "keeping the end of runes", in: runes + "!", total: len(runes) + 1, keepEnd: true, prefix: "(9.0 KiB cut)…ü", suffix: "ü!"},
		{name: "read limit, total unknown", in: long[:4096], total: -1, suffix: "…(more than 3.0 KiB cut)"},
		{name: "short but more was dropped", in: "abc", total: 3000, want: "abc…(2.9 KiB cut)"},
		{name: "invalid UTF-8", in: "bad \xff byte", total: 10, want: "bad ? byte"},
		{name: "mebibytes", in: long, total: 3 << 20, suffix: "…(3.0 MiB cut)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := clip(tc.in, tc.total, tc.keepEnd)
			if len(got) > maxBackendText || !utf8.ValidString(got) {
				t.Fatalf("clip gave %d bytes (valid UTF-8: %v), want at most %d", len(got), utf8.ValidString(got), maxBackendText)
			}
			if tc.prefix == "" && tc.suffix == "" && got != tc.want {
				t.Fatalf("clip = %q, want %q", got, tc.want)
			}
			if !strings.HasPrefix(got, tc.prefix) || !strings.HasSuffix(got, tc.suffix) {
				t.Fatalf("clip = %q…%q, want %q…%q", got[:min(20, len(got))], got[max(0, len(got)-30):], tc.prefix, tc.suffix)
			}
		})
	}
}

func TestBackendErrorShapes(t *testing.T) {
	tests := []struct {
		name, body, status, want string
	}{
		{"llama-server", `{"error":{"code":500,"message":"CUDA error: out of memory","type":"server_error"}}`, "500 Internal Server Error",
			"500 Internal Server Error (server_error): CUDA error: out of memory"},
		{"llama-server in a stream", `{"code":500,"message":"Failed to parse input","type":"server_error"}`, "",
			"500 (server_error): Failed to parse input"},
		{"OpenAI, a code in words", `{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`,
			"400 Bad Request", "400 Bad Request (invalid_request_error, context_length_exceeded): This model's maximum context length is 8192 tokens."},
		{"vLLM at the top level", `{"object":"error","message":"The model does not exist.","type":"NotFoundError","param":null,"code":404}`, "404 Not Found",
			"404 Not Found (NotFoundError): The model does not exist."},
		{"a code unlike the status", `{"error":{"message":"busy","code":503}}`, "200 OK", "200 OK (code 503): busy"},
		{"Ollama's bare string", `{"error":"model \"llama9\" not found, try pulling it first"}`, "404 Not Found", `404 Not Found: model "llama9" not found, try pulling it first`},
		{"FastAPI detail", `{"detail":"Not authenticated"}`, "401 Unauthorized", "401 Unauthorized: Not authenticated"},
		{"FastAPI validation list", `{"detail":[{"loc":["body","model"],"msg":"field required"}]}`, "422 Unprocessable Entity",
			`422 Unprocessable Entity: [{"loc":["body","model"],"msg":"field required"}]`},
		{"a type, no message", `{"error":{"type":"server_error","message":""}}`, "500 Internal Server Error", ""},
		{"whisper-server's plain text", `Invalid request`, "400 Bad Request", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := parseBackendError([]byte(tc.body))
			if ok != (tc.want != "") {
				t.Fatalf("parseBackendError(%s) ok = %v", tc.body, ok)
			}
			if got := e.describe(tc.status); ok && got != tc.want {
				t.Fatalf("describe = %q, want %q", got, tc.want)
			}
		})
	}
}

// backendPart is what follows the error's head: the backend's own text.
func backendPart(t *testing.T, err error, head string) string {
	t.Helper()
	_, rest, ok := strings.Cut(err.Error(), head)
	if !ok {
		t.Fatalf("error %q does not start with %q", err, head)
	}
	if len(rest) > maxBackendText || !utf8.ValidString(rest) {
		t.Fatalf("the backend's text in %q… is %d bytes (valid UTF-8: %v), want at most %d", err.Error()[:80], len(rest), utf8.ValidString(rest), maxBackendText)
	}
	return rest
}

func TestA10KiBErrorArrivesCutTo1KiB(t *testing.T) {
	f := newFakeOpenAI(t, "")
	h := &recordHandler{}
	cfg := Config{
		protocol.KindLLM: {Backend: BackendOpenAI, URL: f.URL + "/v1", TimeoutS: 20},
		protocol.KindSTT: {Backend: BackendOpenAI, URL: f.URL, TranscriptionPath: "/inference", Models: []string{"whisper-base"}, TimeoutS: 20},
	}
	r := mustRouter(t, cfg, Options{Logger: slog.New(h)})
	r.Refresh(context.Background())

	// llama-server's 500, JSON, quoting the whole output.
	_, err := r.Run(context.Background(), newTestJob(t, protocol.KindLLM, "llama3", `{"prompt":"huge-error"}`), nil)
	assertClass(t, err, ErrBackendFailed, true, "")
	text := backendPart(t, err, "backend failed: openai /chat/completions: 500 Internal Server Error (server_error): ")
	if !strings.HasPrefix(text, "Failed to parse input at pos 22: Grüße, ") || !strings.HasSuffix(text, "…(9.0 KiB cut)") {
		t.Errorf("backend text %q…%q", text[:40], text[len(text)-20:])
	}
	attrs, ok := h.find("engine: job failed")
	if !ok || len(attrs["err"]) > len(err.Error()) {
		t.Errorf("the log of the failure is not the cut error: %d bytes", len(attrs["err"]))
	}

	// whisper-server's 400, plain text.
	job := newTestJob(t, protocol.KindSTT, "whisper-base", `{"language":"huge"}`)
	job.InputFile = writeWAV(t, 1)
	_, err = r.Run(context.Background(), job, nil)
	assertClass(t, err, ErrInvalidInput, false, "")
	text = backendPart(t, err, "refused the job: 400 Bad Request: ")
	if !strings.HasPrefix(text, "Invalid request: language not supported; ") || !strings.HasSuffix(text, "…(9.0 KiB cut)") {
		t.Errorf("backend text %q…%q", text[:40], text[len(text)-20:])
	}
}

func TestAnErrorChunkInsideAStreamIsReportedWithItsCode(t *testing.T) {
	f := newFakeOpenAI(t, "")
	r := openAIRouter(t, f, "", protocol.KindLLM)
	tests := []struct {
		prompt string
		class  error
		retry  bool
		head   string
		text   string // the start of the backend's text
		suffix string
	}{
		// llama-server's chat parser on odd output, no [DONE]: the same with a fixed seed, which
		// the hub's cool-off keeps off this worker.
		{"stream-error", ErrBackendFailed, true, "backend failed: openai stream error 500 (server_error): ", "Failed to parse input at pos 22: Grüße", "…(9.0 KiB cut)"},
		// An older llama-server's "error:" line.
		{"stream-error-line", ErrBackendFailed, true, "backend failed: openai stream error 503 (unavailable_error): ", "Loading model", "Loading model"},
		// vLLM: the request itself is wrong.
		{"stream-400", ErrInvalidInput, false, "invalid input: openai stream error 400 (BadRequestError): ", "This model's maximum context length", "4096 tokens."},
	}
	for _, tc := range tests {
		t.Run(tc.prompt, func(t *testing.T) {
			_, err := r.Run(context.Background(), newTestJob(t, protocol.KindLLM, "llama3", `{"prompt":`+quote(tc.prompt)+`}`), nil)
			assertClass(t, err, tc.class, tc.retry, "")
			text := backendPart(t, err, tc.head)
			if !strings.HasPrefix(text, tc.text) || !strings.HasSuffix(text, tc.suffix) {
				t.Errorf("backend text %q", text)
			}
		})
	}
}

func TestACommandsLongStderrIsCutKeepingItsLastWords(t *testing.T) {
	needProgram(t, "sh")
	// 10 lines of 1 KiB, then the line that says what went wrong.
	script := `i=0; while [ $i -lt 10 ]; do printf '%01024d\n' 0 >&2; i=$((i+1)); done; echo 'RuntimeError: CUDA out of memory' >&2; exit 3`
	r := mustRouter(t, Config{protocol.KindImage: {Backend: BackendExec, Command: []string{"sh", "-c", script}}}, Options{})
	_, err := r.Run(context.Background(), newTestJob(t, protocol.KindImage, "", `{"prompt":"x","width":8,"height":8}`), nil)
	assertClass(t, err, ErrBackendFailed, true, "")
	text := backendPart(t, err, "sh: exit status 3: ")
	if !strings.HasPrefix(text, "(") || !strings.Contains(text, " cut)…") || !strings.HasSuffix(text, " | RuntimeError: CUDA out of memory") {
		t.Errorf("stderr quoted as %q", text)
	}
}

func TestAComfyUINodesLongExceptionIsCut(t *testing.T) {
	for _, refuseWS := range []bool{false, true} { // from the socket's execution_error, and from /history
		f := newFakeComfyUI(t, refuseWS)
		r := mustRouter(t, exampleConfig(t, f.URL), Options{})
		r.Refresh(context.Background())
		_, err := r.Run(context.Background(), newTestJob(t, protocol.KindImage, "sdxl_base.safetensors", `{"prompt":"fail-huge","width":64,"height":64}`), nil)
		assertClass(t, err, ErrBackendFailed, true, "")
		head := "comfyui node 3 (KSampler) failed (torch.OutOfMemoryError): "
		if refuseWS {
			head = "comfyui could not run the prompt: node 3 (KSampler) failed (torch.OutOfMemoryError): "
		}
		text := backendPart(t, err, head)
		if !strings.HasPrefix(text, "CUDA out of memory. Tried to allocate Speicher größer") || !strings.HasSuffix(text, " KiB cut)") {
			t.Errorf("socket %v: exception quoted as %q", !refuseWS, text)
		}
	}
}
