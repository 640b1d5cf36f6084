// backend_down_test.go: issue 16's done-when across the worker's pieces — a backend killed in the
// middle of a stream takes its kind out of the capabilities in the very next heartbeat, the hub
// keeps the failed job from this worker for its retry cool-off, and the backend's return is
// advertised again within 5 s. The real engine router against a fake llama-server, this session,
// the real hub in process. It must not know how app wires them; the handler here does it the
// same way (the router's changes ask for a heartbeat at once).

package session

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"studioworker/engine"
	"studioworker/hub"
	"studioworker/protocol"
)

// fakeLlamaServer answers as llama-server does (GET /v1/models with data[].id, a streamed chat
// completion of one chunk per token ending in data: [DONE]) on a fixed loopback address. kill
// makes the next chat die as a SIGKILLed llama-server does: a few tokens, then the connection
// and the listener are gone (an EOF mid-stream, then connection refused); start serves again on
// the same address.
type fakeLlamaServer struct {
	t    *testing.T
	addr string
	kill atomic.Bool

	mu  sync.Mutex
	srv *http.Server
}

func newFakeLlamaServer(t *testing.T) *fakeLlamaServer {
	t.Helper()
	f := &fakeLlamaServer{t: t}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	f.serve(ln)
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		_ = f.srv.Close()
	})
	return f
}

func (f *fakeLlamaServer) url() string { return "http://" + f.addr + "/v1" }

func (f *fakeLlamaServer) serve(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"models":[{"name":"tiny.gguf","model":"tiny.gguf"}],"object":"list","data":[{"id":"tiny.gguf","object":"model","owned_by":"llamacpp"}]}`)
	})
	mux.HandleFunc("POST /v1/chat/completions", f.chat)
	srv := &http.Server{Handler: mux}
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (f *fakeLlamaServer) chat(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	for i := range 8 {
		fmt.Fprintf(w, `data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":" t%d"}}],"created":1733270400,"id":"chatcmpl-x","model":"tiny.gguf","object":"chat.completion.chunk"}`+"\n\n", i)
		fl.Flush()
		if i == 2 && f.kill.Load() {
			// SIGKILL: the process and with it every socket is gone at once.
			f.mu.Lock()
			_ = f.srv.Close()
			f.mu.Unlock()
			return
		}
	}
	fmt.Fprint(w, `data: {"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"model":"tiny.gguf","object":"chat.completion.chunk"}`+"\n\ndata: [DONE]\n\n")
}

// start serves again on the same address, as a restarted llama-server would.
func (f *fakeLlamaServer) start() {
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		f.t.Fatalf("listen again on %s: %v", f.addr, err)
	}
	f.kill.Store(false)
	f.serve(ln)
}

// engineHandler is a worker whose one kind, llm, runs on an engine router: its capabilities are
// the router's, and every change of them asks the session for a heartbeat, as app.Worker does.
type engineHandler struct {
	r *engine.Router
}

func (h *engineHandler) Capabilities() protocol.Capabilities {
	c := protocol.Capabilities{MachineName: "m", AgentVersion: "test", MaxConcurrentJobs: 1, AutoAccept: true}
	h.r.Capabilities().Apply(&c)
	return c
}

func (h *engineHandler) Status() (protocol.WorkerState, bool, []protocol.GPUStat) {
	return protocol.StateIdle, true, nil
}

func (h *engineHandler) Offer(ctx context.Context, c protocol.Claim) (Lease, protocol.DeclineReason) {
	return engineLease{h.r}, ""
}

func (h *engineHandler) Event(Event) {}

type engineLease struct{ r *engine.Router }

func (l engineLease) Release() {}

func (l engineLease) Run(ctx context.Context, j Job, progress func(float64, string)) (Result, error) {
	res, err := l.r.Run(ctx, engine.Job{ID: j.Claim.JobID, Kind: j.Claim.Kind, Model: j.Claim.Model,
		Input: j.Claim.Input, InputFile: j.InputFile, SpoolDir: j.SpoolDir}, progress)
	if err != nil {
		return Result{}, err
	}
	return Result{JSON: res.JSON, File: res.File, Ext: res.Ext, Prompt: res.Prompt}, nil
}

// TestABackendKilledMidStreamIsWithdrawnAtOnceAndTheJobWaitsOutTheCoolOff: heartbeats are a
// minute apart, so only the heartbeat the withdrawal asks for can tell the hub within seconds
// that no worker offers llm; the job then waits, and once llama-server is back its kind is
// offered again within 5 s, yet the job is not offered to this worker during the cool-off.
func TestABackendKilledMidStreamIsWithdrawnAtOnceAndTheJobWaitsOutTheCoolOff(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	hcfg := hub.Config{
		DBPath: filepath.Join(dir, "hub.db"), OpenRegistration: true, AdminToken: "admin-token",
		HeartbeatInterval: time.Minute, LeaseGrace: 30 * time.Second, OfferTTL: 5 * time.Second,
		RetryCoolOff: time.Minute, Logger: log.With("side", "hub"),
	}
	hb, err := hub.Open(context.Background(), hcfg)
	if err != nil {
		t.Fatalf("hub.Open: %v", err)
	}
	rh := &realHub{t: t, h: hb, cfg: hcfg}
	rh.srv = httptest.NewServer(hb.Handler())
	rh.client = &hub.Client{BaseURL: rh.srv.URL, AdminToken: hb.AdminToken(), HTTP: rh.srv.Client()}
	t.Cleanup(rh.close)
	creds := rh.register(t)

	llama := newFakeLlamaServer(t)
	router, err := engine.New(engine.Config{protocol.KindLLM: {Backend: engine.BackendOpenAI, URL: llama.url(), TimeoutS: 30}},
		engine.Options{Logger: log.With("side", "worker")})
	if err != nil {
		t.Fatal(err)
	}
	h := &engineHandler{r: router}
	cfg := realConfig(t, rh.srv.URL, creds)
	s := newSession(t, cfg, h)
	router.OnChange(func(engine.Capabilities) { s.StatusChanged() })
	rctx, stop := context.WithCancel(context.Background())
	t.Cleanup(func() { stop(); router.Wait() })
	router.Start(rctx)
	startRun(t, s)

	ctx := context.Background()
	job := func(id string) protocol.JobInfo {
		t.Helper()
		info, err := rh.client.Job(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	// A first job shows the kind is offered and the stream read whole.
	first, err := rh.client.Submit(ctx, protocol.JobRequest{Kind: protocol.KindLLM, Model: "tiny.gguf", Input: protocol.Object(`{"prompt":"hi"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if info := rh.wait(t, first); info.Status != protocol.JobCompleted || !strings.Contains(string(info.Result), " t0 t1 t2 t3") {
		t.Fatalf("first job = %+v", info)
	}

	llama.kill.Store(true)
	id, err := rh.client.Submit(ctx, protocol.JobRequest{Kind: protocol.KindLLM, Model: "tiny.gguf", Input: protocol.Object(`{"prompt":"hi"}`)})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		what    string
		within  time.Duration
		before  func()
		waiting string
	}{
		{what: "the kind withdrawn in the next heartbeat", within: 10 * time.Second,
			waiting: "no connected worker offers kind llm"},
		{what: "the kind advertised again once the backend is back", within: 5 * time.Second, before: llama.start,
			waiting: "the only connected worker that can take it failed it (retryable); it is offered to it again after a cool-off"},
	} {
		if step.before != nil {
			step.before()
		}
		start := time.Now()
		var last protocol.JobInfo
		waitFor(t, step.what, func() bool {
			last = job(id)
			return strings.HasPrefix(last.Waiting, step.waiting)
		})
		if took := time.Since(start); took > step.within {
			t.Errorf("%s took %s, want at most %s", step.what, took.Round(time.Millisecond), step.within)
		}
		if last.Status != protocol.JobQueued || last.Attempts != 1 {
			t.Fatalf("%s: job = %+v, want queued after one failed attempt", step.what, last)
		}
	}
	if _, up := router.Capabilities().Models[protocol.KindLLM]; !up {
		t.Fatal("the router does not offer llm again")
	}
	// Within the cool-off the job stays off this worker, though it offers llm again.
	if info := job(id); info.Status != protocol.JobQueued || info.Attempts != 1 {
		t.Fatalf("job during the cool-off = %+v, want still queued", info)
	}
}
