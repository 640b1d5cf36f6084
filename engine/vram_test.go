// vram_test.go: the backends' own VRAM figures (vram.go) against fakes that answer /api/ps and
// /system_stats in the shapes Ollama's and ComfyUI's sources give: matching a loaded model, the
// brief cache, and no figure (never an error that declines) when a backend does not answer.

package engine

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"studioworker/internal/handclock"
	"studioworker/protocol"
)

// fakeOllamaPS answers GET /api/ps as Ollama's server/routes.go (PsHandler) does: every loaded
// model with name, model, size and size_vram in bytes; and /v1/models with the same names. ps
// is the answer's models list (JSON); status, when not 200, is sent instead (llama-server, vLLM
// and LocalAI have no /api/ps); hold, when set, keeps /api/ps from answering until it is closed.
type fakeOllamaPS struct {
	*httptest.Server
	calls atomic.Int32

	mu     sync.Mutex
	ps     string
	status int
	hold   chan struct{}
}

func newFakeOllamaPS(t *testing.T, ps string) *fakeOllamaPS {
	f := &fakeOllamaPS{ps: ps, status: http.StatusOK}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"object":"list","data":[{"id":"llama3.2:latest","object":"model","created":1733000000,"owned_by":"library"},{"id":"qwen2.5:7b","object":"model","created":1733000000,"owned_by":"library"}]}`)
	})
	mux.HandleFunc("GET /api/ps", func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		f.mu.Lock()
		ps, status, hold := f.ps, f.status, f.hold
		f.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		if status != http.StatusOK {
			w.WriteHeader(status)
			io.WriteString(w, "404 page not found")
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		io.WriteString(w, `{"models":`+ps+`}`)
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

// psLlama32 is /api/ps with llama3.2 (pulled without a tag) loaded, 3 GiB of it on the GPU.
const psLlama32 = `[{"name":"llama3.2:latest","model":"llama3.2:latest","size":3758096384,"digest":"a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72","details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],"parameter_size":"3.2B","quantization_level":"Q4_K_M"},"expires_at":"2025-06-01T12:05:00.000000000Z","size_vram":3221225472,"context_length":4096}]`

func ollamaRouter(t *testing.T, f *fakeOllamaPS) (*Router, *openAI) {
	t.Helper()
	r := mustRouter(t, Config{protocol.KindLLM: {Backend: BackendOpenAI, URL: f.URL + "/v1"}}, Options{Client: f.Client()})
	r.Refresh(background(t))
	return r, r.backends[protocol.KindLLM].(*openAI)
}

func TestOllamaHeldVRAMFromAPIPS(t *testing.T) {
	f := newFakeOllamaPS(t, psLlama32)
	r, _ := ollamaRouter(t, f)
	ctx := background(t)
	for _, model := range []string{"llama3.2", "llama3.2:latest", "LLAMA3.2"} {
		got, ok := r.HeldVRAM(ctx, protocol.KindLLM, model)
		if !ok || !got.Loaded || got.HeldMB != 3072 || got.Model != "llama3.2:latest" || got.Backend != "Ollama" {
			t.Errorf("HeldVRAM(%q) = %+v, %v; want llama3.2:latest loaded in Ollama holding 3072 MB", model, got, ok)
		}
	}
	got, ok := r.HeldVRAM(ctx, protocol.KindLLM, "qwen2.5:7b")
	if !ok || got.Loaded || got.HeldMB != 0 {
		t.Errorf("a model not in /api/ps: %+v, %v; want a figure that says it is not loaded", got, ok)
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("/api/ps asked %d times for four figures within the cache's time, want 1", n)
	}
}

func TestOllamaRootIsTheURLWithoutV1(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:11434/v1":  "http://127.0.0.1:11434",
		"http://127.0.0.1:11434/v1/": "http://127.0.0.1:11434",
		"http://box:11434":           "http://box:11434",
		"http://box/ollama/v1":       "http://box/ollama",
	} {
		if got := ollamaRoot(in); got != want {
			t.Errorf("ollamaRoot(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHeldVRAMIsCachedBriefly(t *testing.T) {
	f := newFakeOllamaPS(t, `[]`)
	r, o := ollamaRouter(t, f)
	clock := handclock.New(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC))
	o.ps.now = clock.Now
	ctx := background(t)
	if got, ok := r.HeldVRAM(ctx, protocol.KindLLM, "llama3.2"); !ok || got.Loaded {
		t.Fatalf("nothing loaded: %+v, %v", got, ok)
	}
	f.mu.Lock()
	f.ps = psLlama32 // Ollama loads the model
	f.mu.Unlock()
	clock.Add(figureTTL - time.Millisecond)
	if got, _ := r.HeldVRAM(ctx, protocol.KindLLM, "llama3.2"); got.Loaded || f.calls.Load() != 1 {
		t.Fatalf("within the cache's time: %+v after %d requests; want the cached answer", got, f.calls.Load())
	}
	clock.Add(time.Millisecond)
	if got, _ := r.HeldVRAM(ctx, protocol.KindLLM, "llama3.2"); !got.Loaded || f.calls.Load() != 2 {
		t.Fatalf("after the cache's time: %+v after %d requests; want a new answer that says it is loaded", got, f.calls.Load())
	}
}

func TestHeldVRAMWithoutAnAnswerIsNoFigure(t *testing.T) {
	t.Run("no /api/ps (llama-server, vLLM, LocalAI)", func(t *testing.T) {
		f := newFakeOllamaPS(t, `[]`)
		f.status = http.StatusNotFound
		r, _ := ollamaRouter(t, f)
		for range 3 {
			if got, ok := r.HeldVRAM(background(t), protocol.KindLLM, "llama3.2"); ok {
				t.Errorf("a 404 gave a figure: %+v", got)
			}
		}
		if n := f.calls.Load(); n != 1 {
			t.Errorf("a server without /api/ps was asked %d times within the cache's time, want 1", n)
		}
	})
	t.Run("a backend that does not answer in time", func(t *testing.T) {
		f := newFakeOllamaPS(t, psLlama32)
		r, _ := ollamaRouter(t, f)
		hold := make(chan struct{})
		f.mu.Lock()
		f.hold = hold
		f.mu.Unlock()
		t.Cleanup(func() { close(hold) }) // before the server's Close, which waits for the handler
		ctx, cancel := context.WithTimeout(background(t), 20*time.Millisecond)
		defer cancel()
		if got, ok := r.HeldVRAM(ctx, protocol.KindLLM, "llama3.2"); ok {
			t.Errorf("a figure from a backend that did not answer: %+v", got)
		}
		// The request goes on without the caller who gave up: once it answers, the next
		// caller has the figure without asking again.
		f.mu.Lock()
		f.hold = nil
		f.mu.Unlock()
		close(hold)
		hold = make(chan struct{}) // for the Cleanup
		got, ok := r.HeldVRAM(background(t), protocol.KindLLM, "llama3.2")
		if !ok || !got.Loaded || f.calls.Load() != 1 {
			t.Errorf("after the slow answer: %+v, %v after %d requests; want its figure from the one request", got, ok, f.calls.Load())
		}
	})
	t.Run("nothing listens", func(t *testing.T) {
		f := newFakeOllamaPS(t, psLlama32)
		r, _ := ollamaRouter(t, f)
		f.Close()
		if got, ok := r.HeldVRAM(background(t), protocol.KindLLM, "llama3.2"); ok {
			t.Errorf("a figure from a closed port: %+v", got)
		}
	})
}

func TestHeldVRAMOfBackendsThatSayNothing(t *testing.T) {
	r := mustRouter(t, Config{protocol.KindTTS: {Backend: BackendSynthetic}}, Options{})
	if got, ok := r.HeldVRAM(background(t), protocol.KindTTS, ""); ok {
		t.Errorf("synthetic gave a figure: %+v", got)
	}
	if got, ok := r.HeldVRAM(background(t), protocol.KindLLM, "x"); ok {
		t.Errorf("a kind not configured gave a figure: %+v", got)
	}
}

// fakeComfyStats answers GET /system_stats as ComfyUI's server.py does (0.3.64): one device, the
// torch device, with vram_free = the driver's free memory + torch_vram_free.
func fakeComfyStats(t *testing.T, body string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/system_stats" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestComfyUIFreeVRAMFromSystemStats(t *testing.T) {
	// 24 GiB card; the driver says 4 GiB free; ComfyUI's torch cache has 6 GiB it is not using.
	srv := fakeComfyStats(t, `{"system":{"os":"posix","ram_total":67108864000,"ram_free":50000000000,"comfyui_version":"0.3.64","required_frontend_version":"1.27.10","python_version":"3.12.3","pytorch_version":"2.8.0+cu128","embedded_python":false,"argv":["main.py"]},`+
		`"devices":[{"name":"cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync","type":"cuda","index":0,"vram_total":25757220864,"vram_free":10737418240,"torch_vram_total":19327352832,"torch_vram_free":6442450944}]}`)
	c := &comfyUI{kind: protocol.KindImage, cfg: BackendConfig{URL: srv.URL}, client: srv.Client()}
	got, err := c.HeldVRAM(background(t), "sdxl")
	if err != nil {
		t.Fatal(err)
	}
	if got.Backend != "ComfyUI" || len(got.Devices) != 1 {
		t.Fatalf("HeldVRAM = %+v", got)
	}
	if d := got.Devices[0]; d.Index != 0 || d.FreeMB != 10240 || d.CacheFreeMB != 6144 || d.TotalMB != 24564 {
		t.Errorf("device = %+v; want GPU 0 with 10240 MB free as ComfyUI counts it (6144 of it its cache) of 24564", d)
	}

	cpu := fakeComfyStats(t, `{"system":{"os":"posix"},"devices":[{"name":"cpu","type":"cpu","index":null,"vram_total":67108864000,"vram_free":50000000000,"torch_vram_total":67108864000,"torch_vram_free":50000000000}]}`)
	c = &comfyUI{kind: protocol.KindImage, cfg: BackendConfig{URL: cpu.URL}, client: cpu.Client()}
	if got, err := c.HeldVRAM(background(t), "sdxl"); err == nil {
		t.Errorf("ComfyUI on the CPU gave a VRAM figure: %+v", got)
	}
}
