// openai_stream_cost_test.go: a streamed chat answer read the way llama-server writes it comes out
// byte for byte, whatever its tokens hold, and reading it costs two allocations per token. It
// must not know how the session throttles the progress it is given.

package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"studioworker/protocol"
)

// fakeLlamaStream serves POST /v1/chat/completions as llama-server streams: a first chunk whose
// delta is {"role":"assistant","content":null}, one chunk per token (its JSON string escaped as
// llama-server's JSON library does: quotes, backslashes and control characters only, other
// UTF-8 as it is), a finish chunk with an empty delta, the usage chunk with choices [] and
// data: [DONE]. GET /v1/models lists the one model.
func fakeLlamaStream(t *testing.T, tokens []string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"models":[{"name":"tiny.gguf","model":"tiny.gguf"}],"object":"list","data":[{"id":"tiny.gguf","object":"model","owned_by":"llamacpp"}]}`)
	})
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fl, _ := w.(http.Flusher)
		event := func(choices, usage string) {
			fmt.Fprintf(w, `data: {"choices":%s,"created":1733270400,"id":"chatcmpl-x","model":"tiny.gguf","system_fingerprint":"b4200-1a2b3c","object":"chat.completion.chunk"%s}`+"\n\n", choices, usage)
			if fl != nil {
				fl.Flush()
			}
		}
		event(`[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}]`, "")
		for _, tok := range tokens {
			b, _ := json.Marshal(tok) // Go escapes <, > and & too; llama-server does not, either reads the same
			event(`[{"finish_reason":null,"index":0,"delta":{"content":`+string(b)+`}}]`, "")
		}
		event(`[{"finish_reason":"stop","index":0,"delta":{}}]`, "")
		event(`[]`, fmt.Sprintf(`,"usage":{"completion_tokens":%d,"prompt_tokens":3,"total_tokens":%d}`, len(tokens), len(tokens)+3))
		fmt.Fprint(w, "data: [DONE]\n\n")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestAStreamedAnswerComesOutByteForByte: tokens with escapes, quotes, newlines, multi-byte
// characters and a character split across two tokens' escapes are joined exactly, and the model
// the server named is reported.
func TestAStreamedAnswerComesOutByteForByte(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tokens []string
	}{
		{"plain words", []string{"Hello", " there", ",", " friend"}},
		{"quotes, backslashes and newlines", []string{`He said "hi"`, "\n", `C:\path\to`, "\t\x01end"}},
		{"multi-byte characters", []string{"Grüße", " 日本語", " 🙂", " naïve"}},
		{"HTML-looking text", []string{"<b>", "a & b", "</b>"}},
		{"one token", []string{"x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := fakeLlamaStream(t, tc.tokens)
			r := mustRouter(t, Config{protocol.KindLLM: {Backend: BackendOpenAI, URL: srv.URL + "/v1", TimeoutS: 10}}, Options{})
			r.Refresh(background(t))
			res, err := r.Run(background(t), newTestJob(t, protocol.KindLLM, "tiny.gguf", `{"prompt":"hi"}`), nil)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			out := llmResult(t, res)
			if want := strings.Join(tc.tokens, ""); out.Text != want {
				t.Errorf("text %q, want %q", out.Text, want)
			}
			if out.Usage.CompletionTokens != len(tc.tokens) || out.FinishReason != "stop" || out.Model != "" {
				t.Errorf("result %+v: want %d tokens, stop, no other model", out, len(tc.tokens))
			}
		})
	}
}

// TestReadingAStreamAllocatesLittlePerToken: the per-token cost of reading a stream (issue 16)
// is the token's string (two allocations with escapes) and its progress message, not a decoder's
// state per chunk (json.Unmarshal per line made 14 allocations per token, 17 with escapes).
func TestReadingAStreamAllocatesLittlePerToken(t *testing.T) {
	const n = 1024
	var stream bytes.Buffer
	stream.WriteString(`data: {"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"model":"m","object":"chat.completion.chunk"}` + "\n\n")
	for i := range n {
		fmt.Fprintf(&stream, `data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":" w\"%d\n"}}],"created":1,"id":"c","model":"m","object":"chat.completion.chunk"}`+"\n\n", i%97)
	}
	stream.WriteString(`data: {"choices":[{"finish_reason":"length","index":0,"delta":{}}],"model":"m"}` + "\n\n" + "data: [DONE]\n\n")
	raw := stream.Bytes()
	progress := monotonic(func(float64, string) {})
	allocs := testing.AllocsPerRun(5, func() {
		res, err := readChatStream(bytes.NewReader(raw), tokenProgress(progress, n))
		if err != nil || res.Usage.CompletionTokens != n || res.Model != "m" {
			t.Fatalf("read: %+v, %v", res, err)
		}
	})
	if perToken := allocs / n; perToken > 4 {
		t.Errorf("%.1f allocations per token (%.0f for %d tokens), want at most 4", perToken, allocs, n)
	}
}
