// ollama_test.go: llm jobs against Ollama as it really answers (fakeOllama) and against the error
// chunks of llama-server and vLLM (fakeOpenAI): a stream that ends without its last event is a
// failed generation, not a server that went away, and an error inside a stream fails the job in
// the server's own words, cut short. It must not know how the worker's session reports a job.
package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"studioworker/protocol"
)

func TestOllamaStreamThatEndsEarlyIsAFailedGenerationNotADeadServer(t *testing.T) {
	f := newFakeOllama(t)
	tests := []struct {
		name, model, prompt string
		class               error // nil: the job succeeds
		retry               bool
		says                string
		stillOffered        bool // the kind stays in the capabilities after the job
	}{
		{name: "whole answer", model: "llama3.2", prompt: "hi", stillOffered: true},
		{name: "runner fails mid-answer", model: "llama3.2", prompt: "runner-fails", class: ErrBackendFailed, retry: true,
			says: "stopped mid-answer", stillOffered: true},
		{name: "clean end without [DONE]", model: "llama3.2", prompt: "clean-eof", class: ErrBackendFailed, retry: true,
			says: "after 2 tokens", stillOffered: true},
		{name: "connection cut inside the body", model: "llama3.2", prompt: "cut", class: ErrBackendDown, retry: true,
			says: "unexpected EOF", stillOffered: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRouter(t, Config{protocol.KindLLM: {Backend: BackendOpenAI, URL: f.URL + "/v1", Models: []string{"llama3.2"}, TimeoutS: 20}}, Options{})
			if caps := r.Refresh(context.Background()); len(caps.Models[protocol.KindLLM]) != 1 {
				t.Fatalf("llama3.2 not offered against Ollama's llama3.2:latest: %+v", caps)
			}
			res, err := r.Run(context.Background(), newTestJob(t, protocol.KindLLM, tc.model, `{"prompt":`+quote(tc.prompt)+`}`), nil)
			if tc.class == nil {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				want := protocol.LLMResult{Text: "Hello there!", FinishReason: "stop", Usage: protocol.Usage{PromptTokens: 26, CompletionTokens: 3}}
				if got := llmResult(t, res); got != want {
					t.Errorf("result %+v, want %+v (no model: llama3.2:latest is the model asked for)", got, want)
				}
			} else {
				assertClass(t, err, tc.class, tc.retry, "")
				if tc.class != ErrBackendDown && errors.Is(err, ErrBackendDown) {
					t.Errorf("error %q counts the server as unreachable", err)
				}
				if !strings.Contains(err.Error(), tc.says) {
					t.Errorf("error %q does not say %q", err, tc.says)
				}
			}
			if _, up := r.Capabilities().Models[protocol.KindLLM]; up != tc.stillOffered {
				t.Errorf("llm offered after the job: %v, want %v", up, tc.stillOffered)
			}
		})
	}
}

func TestOllamaModelItDoesNotHaveIsNotRetried(t *testing.T) {
	f := newFakeOllama(t)
	// Configured here, gone from Ollama since (ollama rm): the 404 comes before any stream.
	r := mustRouter(t, Config{protocol.KindLLM: {Backend: BackendOpenAI, URL: f.URL + "/v1", Models: []string{"qwen2.5"}}}, Options{})
	_, err := r.Run(context.Background(), newTestJob(t, protocol.KindLLM, "qwen2.5", `{"prompt":"hi"}`), nil)
	assertClass(t, err, ErrUnsupported, false, "")
	if !strings.Contains(err.Error(), `model "qwen2.5" not found`) {
		t.Errorf("error %q does not quote Ollama", err)
	}
}

func TestErrorInsideAStreamFailsTheJobInTheServersWordsCutShort(t *testing.T) {
	f := newFakeOpenAI(t, "")
	r := openAIRouter(t, f, "", protocol.KindLLM)
	tests := []struct {
		prompt string
		class  error
		retry  bool
		field  string
		says   string
	}{
		// llama-server's parse error quotes the whole generated text (10 KiB here).
		{prompt: "stream-error", class: ErrBackendFailed, retry: true, says: "Failed to parse input at pos 22"},
		{prompt: "stream-error-line", class: ErrBackendFailed, retry: true, says: "Loading model"},
		{prompt: "stream-400", class: ErrInvalidInput, retry: false, says: "maximum context length is 4096 tokens"},
		{prompt: "stream-model-missing", class: ErrUnsupported, retry: false, field: "model", says: "The model `llama3` does not exist."},
	}
	for _, tc := range tests {
		t.Run(tc.prompt, func(t *testing.T) {
			_, err := r.Run(context.Background(), newTestJob(t, protocol.KindLLM, "llama3", `{"prompt":`+quote(tc.prompt)+`}`), nil)
			assertClass(t, err, tc.class, tc.retry, tc.field)
			if errors.Is(err, ErrBackendDown) {
				t.Errorf("error %q counts the server as unreachable", err)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
			// The message is cut, never the whole generated text: a fail frame and a log line.
			if len(err.Error()) > maxBackendText+100 {
				t.Errorf("error is %d bytes, want at most about %d", len(err.Error()), maxBackendText)
			}
		})
	}
}

func TestModelMissingWords(t *testing.T) {
	for msg, want := range map[string]bool{
		`model "llama3.2" not found, try pulling it first`: true,
		`model 'x' not found`:                              true,
		"The model `qwen` does not exist.":                 true,
		"model not found":                                  true,
		"CUDA error in model eval: kernel not found":       false,
		"Loading model":                                    false,
		"Failed to parse input at pos 22":                  false,
	} {
		if got := modelMissing(msg); got != want {
			t.Errorf("modelMissing(%q) = %v, want %v", msg, got, want)
		}
	}
}

// TestOllamaModelsAreOfferedWithAndWithoutLatest: Ollama's /v1/models says "llama3.2:latest";
// a job for "llama3.2" is routed by that exact name, so both are offered and both run.
func TestOllamaModelsAreOfferedWithAndWithoutLatest(t *testing.T) {
	f := newFakeOllama(t)
	r := mustRouter(t, Config{protocol.KindLLM: {Backend: BackendOpenAI, URL: f.URL + "/v1"}}, Options{})
	caps := r.Refresh(context.Background())
	if got := caps.Models[protocol.KindLLM]; !slices.Equal(got, []string{"llama3.2:latest", "llama3.2"}) {
		t.Fatalf("offered %v, want llama3.2:latest and llama3.2", got)
	}
	for _, model := range []string{"llama3.2", "llama3.2:latest"} {
		t.Run(model, func(t *testing.T) {
			if _, err := r.Run(context.Background(), newTestJob(t, protocol.KindLLM, model, `{"prompt":"hi"}`), nil); err != nil {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}
