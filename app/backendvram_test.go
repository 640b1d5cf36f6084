// backendvram_test.go: admission through a real Worker and hub with Ollama's own VRAM figure — a
// fake Ollama whose /api/ps says the job's model is loaded — on a simulated GPU with less free
// memory than the job's estimate; and State.GPU.Backends, where the window reads that figure.

package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"studioworker/engine"
	"studioworker/protocol"
)

// fakeOllamaPSServer answers as Ollama does at its root and under /v1 (read from its source:
// server/routes.go PsHandler, openai/openai.go): /v1/models lists llama3.1:8b, /v1/chat/completions
// streams a short answer, and /api/ps lists what loaded says is in memory now (JSON, the models
// array), with size_vram in bytes.
type fakeOllamaPSServer struct {
	*httptest.Server
	mu     sync.Mutex
	loaded string
}

func newFakeOllamaPSServer(t *testing.T, loaded string) *fakeOllamaPSServer {
	f := &fakeOllamaPSServer{loaded: loaded}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"object":"list","data":[{"id":"llama3.1:8b","object":"model","created":1733000000,"owned_by":"library"}]}`)
	})
	mux.HandleFunc("GET /api/ps", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		loaded := f.loaded
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		io.WriteString(w, `{"models":`+loaded+`}`)
	})
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model string `json:"model"`
		}
		if json.NewDecoder(r.Body).Decode(&req) != nil || req.Model != "llama3.1:8b" {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"error":{"message":"model %q not found, try pulling it first","type":"api_error","param":null,"code":null}}`, req.Model)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, c := range []string{`{"role":"assistant","content":"Hello"}`, `{"content":" there"}`} {
			fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1733000001,\"model\":\"llama3.1:8b\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,\"delta\":%s,\"finish_reason\":null}]}\n\n", c)
		}
		io.WriteString(w, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1733000001,\"model\":\"llama3.1:8b\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"stop\"}]}\n\n")
		io.WriteString(w, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1733000001,\"model\":\"llama3.1:8b\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":2,\"total_tokens\":12}}\n\n")
		io.WriteString(w, "data: [DONE]\n\n")
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

// psLlama31 is /api/ps with llama3.1:8b loaded, 5.8 GB of it in VRAM.
const psLlama31 = `[{"name":"llama3.1:8b","model":"llama3.1:8b","size":6654289920,"digest":"46e0c10c039e019119339687c3c1757cc81b9da49709a3b3924863ba87ca666e","details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],"parameter_size":"8.0B","quantization_level":"Q4_K_M"},"expires_at":"2099-01-01T00:00:00Z","size_vram":6227702579,"context_length":4096}]`

// TestAnOfferFitsBecauseOllamaHasItsModelLoaded: 4 GB free on the GPU and a 6 GB estimate is a
// decline on NVML's figure alone; with llama3.1:8b loaded in Ollama (5.8 GB) the job needs 0.2 GB
// more, and is taken.
func TestAnOfferFitsBecauseOllamaHasItsModelLoaded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		loaded string
		want   string // the offer's outcome
	}{
		{"the model is loaded: accepted", psLlama31, "accepted"},
		{"nothing loaded: declined for vram", `[]`, "vram"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ollama := newFakeOllamaPSServer(t, tc.loaded)
			env := newTestEnv(t, func(c *Config) {
				c.Engines[protocol.KindLLM] = engine.BackendConfig{Backend: engine.BackendOpenAI, URL: ollama.URL + "/v1"}
			})
			env.worker.mu.Lock()
			env.worker.opts.SimulatedBaseMB = 20 * 1024
			env.worker.mu.Unlock()
			env.worker.sim.SetUsedMB(20 * 1024) // 24 GB card: 4 GB free
			env.waitState("20 GB used and llama3.1:8b offered", func(s State) bool {
				return len(s.GPU.Cards) == 1 && s.GPU.Cards[0].UsedMB == 20*1024 && len(s.Models["llm"]) > 0
			})
			_, sub := env.worker.Observers().Subscribe()
			defer sub.Close()
			est := 6.0
			id, err := env.admin.Submit(context.Background(), protocol.JobRequest{Kind: protocol.KindLLM, Model: "llama3.1:8b",
				Input: protocol.Object(`{"prompt":"hi"}`), VRAMGBEstimate: &est})
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.After(20 * time.Second)
			for resolved := false; !resolved; {
				select {
				case n := <-sub.Notices():
					if n.Kind != NoticeOfferResolved || n.JobID != id {
						continue
					}
					if n.Outcome != tc.want {
						t.Fatalf("the offer was %s, want %s", n.Outcome, tc.want)
					}
					resolved = true
				case <-deadline:
					t.Fatal("the offer was not resolved within 20 s")
				}
			}
			if tc.want == "accepted" {
				if info := env.wait(id); info.Status != protocol.JobCompleted {
					t.Fatalf("job %s: %s %s", id, info.Status, info.Error)
				}
			}
		})
	}
}

// TestStateShowsWhatOllamaHolds: the window reads the figure admission used in
// State.GPU.Backends, beside the GPU's card.
func TestStateShowsWhatOllamaHolds(t *testing.T) {
	ollama := newFakeOllamaPSServer(t, psLlama31)
	env := newTestEnv(t, func(c *Config) {
		c.Engines[protocol.KindLLM] = engine.BackendConfig{Backend: engine.BackendOpenAI, URL: ollama.URL + "/v1"}
	})
	s := env.waitState("Ollama's loaded model in the state", func(s State) bool { return len(s.GPU.Backends) > 0 })
	want := BackendVRAM{Kind: protocol.KindLLM, Backend: "Ollama", Model: "llama3.1:8b", HeldMB: 5939, GPU: -1}
	if len(s.GPU.Backends) != 1 || s.GPU.Backends[0] != want {
		t.Errorf("GPU.Backends = %+v, want [%+v]", s.GPU.Backends, want)
	}
	// What a window gets through the control socket, as JSON.
	raw, err := json.Marshal(s.GPU)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"backends":[{"kind":"llm","backend":"Ollama","model":"llama3.1:8b","held_mb":5939,"gpu":-1}]`) {
		t.Errorf("GPU state as JSON: %s", raw)
	}
}
