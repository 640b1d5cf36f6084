// ollama_fake_test.go: fakeOllama, an in-test HTTP server that answers as Ollama's
// OpenAI-compatible API (/v1, what the worker is configured with for Ollama) does, read from its
// source (middleware/openai.go, openai/openai.go). It must not know the worker's code: only
// Ollama's wire format.
package engine

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// fakeOllama serves GET /v1/models and POST /v1/chat/completions. The last message chooses the
// stream: "runner-fails" (two tokens, then what Ollama's ChatWriter makes of a native
// {"error": …} line: one chunk with an empty delta, and the answer ends, cleanly, without
// [DONE]), "clean-eof" (two tokens, then the answer ends cleanly), "cut" (two tokens, then the
// connection is closed inside the chunked body, as a killed process leaves it); a model it does
// not have gets its 404 before any stream; anything else streams a whole answer with usage.
type fakeOllama struct {
	*httptest.Server
}

func newFakeOllama(t *testing.T) *fakeOllama {
	f := &fakeOllama{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"object":"list","data":[{"id":"llama3.2:latest","object":"model","created":1733000000,"owned_by":"library"}]}`)
	})
	mux.HandleFunc("POST /v1/chat/completions", f.chat)
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func (f *fakeOllama) chat(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model    string `json:"model"`
		Messages []struct {
			Content string `json:"content"`
		} `json:"messages"`
		StreamOptions *struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Messages) == 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"message":"[] is too short - 'messages'","type":"invalid_request_error","param":null,"code":null}}`)
		return
	}
	if !sameModel(req.Model, "llama3.2:latest") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"error":{"message":"model %q not found, try pulling it first","type":"api_error","param":null,"code":null}}`, req.Model)
		return
	}
	prompt := req.Messages[len(req.Messages)-1].Content
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	chunk := func(content string, finish string) {
		reason := "null"
		if finish != "" {
			reason = fmt.Sprintf("%q", finish)
		}
		fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-417\",\"object\":\"chat.completion.chunk\",\"created\":1733000001,\"model\":\"llama3.2:latest\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":%q},\"finish_reason\":%s}]}\n\n",
			content, reason)
		fl.Flush()
	}
	chunk("Hello", "")
	chunk(" there", "")
	switch prompt {
	case "runner-fails":
		chunk("", "")
		return
	case "clean-eof":
		return
	case "cut":
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	chunk("!", "")
	chunk("", "stop")
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		io.WriteString(w, "data: {\"id\":\"chatcmpl-417\",\"object\":\"chat.completion.chunk\",\"created\":1733000001,\"model\":\"llama3.2:latest\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[],\"usage\":{\"prompt_tokens\":26,\"completion_tokens\":3,\"total_tokens\":29}}\n\n")
	}
	io.WriteString(w, "data: [DONE]\n\n")
}
