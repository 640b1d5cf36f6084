// firstrun_test.go: backend detection against fake local servers, and registration with ticked engines.

package app

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"studioworker/engine"
	"studioworker/hub"
	"studioworker/protocol"
)

// fakeBackend stands in for a local inference server that cannot run here (Ollama, llama-server,
// LocalAI, ComfyUI): it answers the paths the detector asks with canned JSON, 404 otherwise.
func fakeBackend(t *testing.T, answers map[string]string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := answers[r.URL.Path]
		if !ok || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// closedURL is a loopback address where nothing listens.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// fakePrograms puts executables with these names in a folder and makes it the whole PATH.
func fakePrograms(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)
	return dir
}

const (
	ollamaTags      = `{"models":[{"name":"llama3.2:latest","size":2019393189},{"name":"qwen2.5:7b"}]}`
	llamaModels     = `{"object":"list","data":[{"id":"qwen2.5-7b-instruct","object":"model","owned_by":"llamacpp"}],"models":[{"name":"qwen2.5-7b-instruct"}]}`
	comfyStats      = `{"system":{"os":"posix","comfyui_version":"0.3.40"},"devices":[]}`
	localAIModels   = `{"object":"list","data":[{"id":"gpt-4","object":"model"},{"id":"stablediffusion","object":"model"}]}`
	llamaPropsOnly  = `{"object":"list","data":[{"id":"model.gguf","object":"model"}]}`
	llamaPropsReply = `{"default_generation_settings":{"n_ctx":4096},"total_slots":1}`
)

func TestDetectorFindsLocalBackends(t *testing.T) {
	dir := fakePrograms(t, "espeak-ng", "whisper-cli")
	if err := os.MkdirAll(filepath.Join(dir, "models"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "models", "ggml-base.en.bin"), []byte("model"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgDir := t.TempDir()
	d := Detector{
		OllamaURL: fakeBackend(t, map[string]string{"/": "Ollama is running", "/api/tags": ollamaTags}),
		LlamaURL:  fakeBackend(t, map[string]string{"/v1/models": llamaModels}),
		VLLMURL:   closedURL(t), LMStudioURL: closedURL(t),
		ComfyUIURL:  fakeBackend(t, map[string]string{"/system_stats": comfyStats}),
		WorkflowDir: cfgDir,
	}
	found, err := d.Detect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		name  string
		kind  protocol.Kind
		ready bool
	}
	var got []row
	for _, f := range found {
		got = append(got, row{f.Name, f.Kind, f.Ready})
	}
	want := []row{
		{"Ollama", protocol.KindLLM, true}, {"llama.cpp server", protocol.KindLLM, true},
		{"ComfyUI", protocol.KindImage, true}, {"espeak-ng", protocol.KindTTS, true}, {"whisper.cpp", protocol.KindSTT, true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("found %+v\nwant  %+v", got, want)
	}
	byName := map[string]Detected{}
	for _, f := range found {
		byName[f.Name] = f
	}
	if o := byName["Ollama"]; o.Backend.URL != d.OllamaURL+"/v1" || !slices.Equal(o.Models, []string{"llama3.2:latest", "qwen2.5:7b"}) {
		t.Errorf("Ollama: %+v", o)
	}
	if l := byName["llama.cpp server"]; l.Backend.URL != d.LlamaURL+"/v1" || !slices.Equal(l.Models, []string{"qwen2.5-7b-instruct"}) {
		t.Errorf("llama.cpp: %+v", l)
	}
	if e := byName["espeak-ng"]; e.Backend.Backend != engine.BackendExec || e.Backend.Command[0] != filepath.Join(dir, "espeak-ng") {
		t.Errorf("espeak-ng: %+v", e.Backend)
	}
	if w := byName["whisper.cpp"]; !slices.Contains(w.Backend.Command, filepath.Join(dir, "models", "ggml-base.en.bin")) ||
		!slices.Equal(w.Models, []string{"ggml-base.en"}) {
		t.Errorf("whisper.cpp: %+v", w)
	}
	// Every ready suggestion is a config the worker accepts, once the example workflow is written.
	if err := writeComfyUIWorkflow(byName["ComfyUI"].Backend.Workflow); err != nil {
		t.Fatal(err)
	}
	for _, f := range found {
		if err := (engine.Config{f.Kind: f.Backend.config()}).Validate(); err != nil {
			t.Errorf("%s's suggestion is not a valid config: %v", f.Name, err)
		}
	}
}

func TestDetectorPort8080(t *testing.T) {
	tests := []struct {
		name    string
		answers map[string]string
		want    string // "" = nothing found
		models  []string
	}{
		{"llama-server by owned_by", map[string]string{"/v1/models": llamaModels}, "llama.cpp server", []string{"qwen2.5-7b-instruct"}},
		{"llama-server by /props", map[string]string{"/v1/models": llamaPropsOnly, "/props": llamaPropsReply}, "llama.cpp server", []string{"model.gguf"}},
		{"LocalAI", map[string]string{"/v1/models": localAIModels, "/readyz": ""}, "LocalAI", []string{"gpt-4", "stablediffusion"}},
		{"something else on 8080", map[string]string{"/": "{}"}, "", nil},
		{"not JSON", map[string]string{"/v1/models": "<html>"}, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fakePrograms(t)
			d := Detector{OllamaURL: closedURL(t), ComfyUIURL: closedURL(t), VLLMURL: closedURL(t), LMStudioURL: closedURL(t), LlamaURL: fakeBackend(t, tc.answers)}
			found, err := d.Detect(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if len(found) != 0 {
					t.Fatalf("found %+v, want nothing", found)
				}
				return
			}
			if len(found) != 1 || found[0].Name != tc.want || !slices.Equal(found[0].Models, tc.models) {
				t.Fatalf("found %+v, want %s with %v", found, tc.want, tc.models)
			}
		})
	}
}

func TestDetectorOllamaFallsBackToV1Models(t *testing.T) {
	fakePrograms(t)
	d := Detector{LlamaURL: closedURL(t), ComfyUIURL: closedURL(t), VLLMURL: closedURL(t), LMStudioURL: closedURL(t),
		OllamaURL: fakeBackend(t, map[string]string{"/": "Ollama is running", "/v1/models": `{"data":[{"id":"llama3.2"}]}`})}
	found, err := d.Detect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Name != "Ollama" || !slices.Equal(found[0].Models, []string{"llama3.2"}) {
		t.Fatalf("found %+v", found)
	}
}

func TestDetectorNothingThereAndNoModel(t *testing.T) {
	fakePrograms(t, "whisper-cpp") // a whisper without a model next to it
	t.Setenv("HOME", t.TempDir())
	d := Detector{OllamaURL: closedURL(t), LlamaURL: closedURL(t), ComfyUIURL: closedURL(t), VLLMURL: closedURL(t), LMStudioURL: closedURL(t)}
	found, err := d.Detect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Name != "whisper.cpp" || found[0].Ready || !strings.Contains(found[0].Note, "model") {
		t.Fatalf("found %+v, want only a whisper.cpp that is not ready and says why", found)
	}
}

// The detector never leaves this machine: not by address, not by redirect, not through a proxy.
func TestDetectorTalksToLoopbackOnly(t *testing.T) {
	var hits sync.Map
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Store(r.URL.Path, true)
		http.Redirect(w, r, "http://192.0.2.10/api/tags", http.StatusFound)
	}))
	defer redirector.Close()
	t.Setenv("HTTP_PROXY", redirector.URL)
	t.Setenv("http_proxy", redirector.URL)
	fakePrograms(t)
	d := Detector{OllamaURL: "http://192.0.2.10:11434", LlamaURL: redirector.URL, ComfyUIURL: "http://studio.example.com:8188",
		VLLMURL: "http://192.0.2.10:8000", LMStudioURL: "http://192.0.2.10:1234"}
	found, err := d.Detect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 0 {
		t.Fatalf("found %+v through a non-loopback address", found)
	}
	if _, ok := hits.Load("/v1/models"); !ok {
		t.Error("the loopback probe did not reach the loopback server")
	}
	for _, p := range []string{"/api/tags", "/system_stats"} {
		if _, ok := hits.Load(p); ok {
			t.Errorf("a probe of a non-loopback address went through the proxy (%s)", p)
		}
	}
	_, err = loopbackClient(time.Second).Get("http://192.0.2.10:80/")
	if !errors.Is(err, ErrNotLoopback) {
		t.Errorf("a non-loopback GET: %v, want ErrNotLoopback", err)
	}
}

// firstRunEnv is a worker with no registration, as the window starts it on a first run, with its
// control socket, and a reference hub that wants real pairing codes.
type firstRunEnv struct {
	t      *testing.T
	hub    *hub.Hub
	url    string
	worker *Worker
	client *Client
	path   string
}

func newFirstRunEnv(t *testing.T) *firstRunEnv {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: testLogLevel()}))
	ctx := context.Background()
	h, err := hub.Open(ctx, hub.Config{DBPath: filepath.Join(dir, "hub.db"), AdminToken: "admin",
		HeartbeatInterval: 200 * time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.Handler())
	cfg := DefaultConfig()
	cfg.GPU.Simulated = &SimulatedGPU{Name: "Simulated test GPU", VRAMGB: 24}
	cfg.GPU.SampleIntervalS = 0.1
	path := filepath.Join(dir, "worker", "config.json")
	w, err := NewWorker(Options{ConfigPath: path, Config: cfg, Logger: logger, AgentVersion: "test", KeepRunning: true})
	if err != nil {
		t.Fatal(err)
	}
	ln, token, err := ListenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	done := make(chan error, 1)
	wg.Add(1)
	go func() { defer wg.Done(); _ = NewControlServer(w, w, token, logger).Serve(wctx, ln) }()
	go func() { done <- w.Serve(wctx) }()
	cl, err := DialControl(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Follow(wctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cl.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("worker did not stop within 15 s")
		}
		wg.Wait()
		srv.Close()
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		_ = h.Close(cctx)
	})
	e := &firstRunEnv{t: t, hub: h, url: srv.URL, worker: w, client: cl, path: path}
	e.waitState("unregistered", func(s State) bool { return s.Conn.State == "unregistered" && !s.Registered })
	return e
}

func (e *firstRunEnv) waitState(what string, ok func(State) bool) State {
	e.t.Helper()
	return (&testEnv{t: e.t, client: e.client, worker: e.worker}).waitState(what, ok)
}

func TestRegisterWithTickedEngines(t *testing.T) {
	e := newFirstRunEnv(t)
	ctx := context.Background()
	fakePrograms(t, "espeak-ng")
	tts := engine.BackendConfig{Backend: engine.BackendExec, Command: []string{"espeak-ng", "-w", "{output}", "--", "{text}"}}

	// A bad engine is refused before the hub hears anything: the pairing code stays unused.
	code, err := e.hub.NewPairingCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bad := BackendForms{protocol.KindTTS: {Backend: BackendExec}}
	err = e.client.Register(ctx, RegisterRequest{ServerURL: e.url, PairingCode: code, Name: "pc", Engines: &bad})
	var ve *ValidationError
	if !errors.As(err, &ve) || !strings.Contains(ve.Fields["engines"], "engines.tts.command") {
		t.Fatalf("bad engines: %v", err)
	}
	// A wrong code is the pairing code's error.
	err = e.client.Register(ctx, RegisterRequest{ServerURL: e.url, PairingCode: "WRONG-CODE1", Engines: &BackendForms{protocol.KindTTS: backendFormOf(tts)}})
	if !errors.As(err, &ve) || ve.Fields["pairing_code"] == "" {
		t.Fatalf("wrong code: %v", err)
	}
	if _, err := os.Stat(e.path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed registration wrote the config: %v", err)
	}

	// The right code (still unused) with the ticked engines: registered, connected, and the
	// engines are what the config file says.
	if err := e.client.Register(ctx, RegisterRequest{ServerURL: e.url, PairingCode: code, Name: "pc", Engines: &BackendForms{protocol.KindTTS: backendFormOf(tts)}}); err != nil {
		t.Fatal(err)
	}
	e.waitState("connected", func(s State) bool { return s.Registered && s.Conn.State == "connected" })
	saved, err := LoadConfig(e.path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(saved.Engines, engine.Config{protocol.KindTTS: tts}) || !saved.Registered() {
		t.Fatalf("saved engines %+v registered %v", saved.Engines, saved.Registered())
	}
	e.waitState("tts offered", func(s State) bool { return len(s.Models["tts"]) > 0 && len(s.Models["image"]) == 0 })
}

func TestDetectThroughControlSocket(t *testing.T) {
	e := newFirstRunEnv(t)
	fakePrograms(t, "espeak-ng")
	found, err := e.client.DetectBackends(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(found, func(d Detected) bool { return d.Name == "espeak-ng" })
	if i < 0 || found[i].Kind != protocol.KindTTS || !found[i].Ready {
		t.Fatalf("found %+v", found)
	}
}

func TestLogLines(t *testing.T) {
	var mu sync.Mutex
	var got []string
	h := &recordHandler{fn: func(msg string) { mu.Lock(); got = append(got, msg); mu.Unlock() }}
	l := &logLines{log: slog.New(h), level: slog.LevelInfo}
	for _, p := range []string{"one\ntw", "o\n\n", strings.Repeat("x", maxLogLine+1), "tail"} {
		_, _ = l.Write([]byte(p))
	}
	l.flush()
	want := []string{"demo: one", "demo: two", "demo: " + strings.Repeat("x", maxLogLine+1), "demo: tail"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q", got)
	}
}

type recordHandler struct{ fn func(string) }

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.fn(r.Message)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }
