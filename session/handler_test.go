// handler_test.go: a test Handler that records what the session asks of it.

package session

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"studioworker/protocol"
)

// testHandler is the app side in tests: a Handler whose decisions and runs the test scripts, and
// which records every event.
type testHandler struct {
	mu      sync.Mutex
	caps    protocol.Capabilities
	state   protocol.WorkerState
	offerFn func(ctx context.Context, c protocol.Claim) (bool, protocol.DeclineReason)
	runFn   func(ctx context.Context, j Job, progress func(float64, string)) (Result, error)
	events  []Event
	offers  int
	runs    int
	leases  []*testLease
	notify  chan struct{}
}

func newTestHandler() *testHandler {
	return &testHandler{
		caps: protocol.Capabilities{MachineName: "m", AgentVersion: "test", Engine: "synthetic", MaxConcurrentJobs: 1,
			TaskKinds:              protocol.List[protocol.Kind]{protocol.KindLLM, protocol.KindImage},
			SupportedModels:        protocol.List[string]{"synthetic"},
			SupportedModelsPerKind: protocol.ModelsPerKind{protocol.KindLLM: {"synthetic"}, protocol.KindImage: {"synthetic"}}},
		state:  protocol.StateIdle,
		notify: make(chan struct{}),
	}
}

func (h *testHandler) setCaps(f func(c *protocol.Capabilities)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(&h.caps)
	h.caps.SupportedModels = append(protocol.List[string](nil), h.caps.SupportedModels...)
}

func (h *testHandler) setOffer(f func(ctx context.Context, c protocol.Claim) (bool, protocol.DeclineReason)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.offerFn = f
}

func (h *testHandler) setRun(f func(ctx context.Context, j Job, progress func(float64, string)) (Result, error)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.runFn = f
}

func (h *testHandler) Capabilities() protocol.Capabilities {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.caps
}

func (h *testHandler) Status() (protocol.WorkerState, bool, []protocol.GPUStat) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state, true, []protocol.GPUStat{{Index: 0, VRAMTotalMB: 24000, VRAMUsedMB: 1000}}
}

func (h *testHandler) Offer(ctx context.Context, c protocol.Claim) (Lease, protocol.DeclineReason) {
	h.mu.Lock()
	h.offers++
	fn := h.offerFn
	h.mu.Unlock()
	if fn != nil {
		if ok, reason := fn(ctx, c); !ok {
			return nil, reason
		}
	}
	l := &testLease{h: h, claim: c}
	h.mu.Lock()
	h.leases = append(h.leases, l)
	h.mu.Unlock()
	return l, ""
}

// testLease records how its job ended; a second call is the bug the Lease contract rules out.
type testLease struct {
	h     *testHandler
	claim protocol.Claim
	ended string // "run" or "released", guarded by h.mu
	twice string // the call that came after the first, guarded by h.mu
}

func (l *testLease) end(how string) {
	l.h.mu.Lock()
	defer l.h.mu.Unlock()
	if l.ended != "" {
		l.twice = how
		return
	}
	l.ended = how
}

func (l *testLease) Release() { l.end("released") }

func (l *testLease) Run(ctx context.Context, j Job, progress func(float64, string)) (Result, error) {
	l.end("run")
	h := l.h
	h.mu.Lock()
	h.runs++
	fn := h.runFn
	h.mu.Unlock()
	if fn != nil {
		return fn(ctx, j, progress)
	}
	return defaultRun(ctx, j, progress)
}

// leaseEnds reports, per job id, how each lease ended ("run", "released" or "" while it is
// open), and fails the test if any lease was used twice.
func (h *testHandler) leaseEnds(t *testing.T) map[string]string {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]string{}
	for _, l := range h.leases {
		if l.twice != "" {
			t.Errorf("the lease of %s was %s, then %s: the session must call exactly one, once", l.claim.JobID, l.ended, l.twice)
		}
		out[l.claim.JobID] = l.ended
	}
	return out
}

// defaultRun answers a JSON kind with a small object and a binary kind with a small png file.
func defaultRun(_ context.Context, j Job, _ func(float64, string)) (Result, error) {
	if j.Claim.Kind.BinaryResult() {
		p := filepath.Join(j.SpoolDir, "out.png")
		if err := os.WriteFile(p, []byte("PNG:"+j.Claim.JobID), 0o600); err != nil {
			return Result{}, err
		}
		return Result{File: p, Ext: "png", Prompt: "p"}, nil
	}
	b, _ := json.Marshal(protocol.LLMResult{Text: "done " + j.Claim.JobID, FinishReason: "stop"})
	return Result{JSON: b}, nil
}

func (h *testHandler) Event(e Event) {
	h.mu.Lock()
	h.events = append(h.events, e)
	ch := h.notify
	h.notify = make(chan struct{})
	h.mu.Unlock()
	close(ch)
}

// waitEvent waits for an event matching match (looking at all events so far, then new ones).
func (h *testHandler) waitEvent(t *testing.T, what string, match func(Event) bool) Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	seen := 0
	for {
		h.mu.Lock()
		evs := h.events[seen:]
		seen = len(h.events)
		ch := h.notify
		h.mu.Unlock()
		for _, e := range evs {
			if match(e) {
				return e
			}
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no event: %s", what)
			return nil
		}
	}
}

func (h *testHandler) eventsOf(match func(Event) bool) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Event
	for _, e := range h.events {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

func (h *testHandler) counts() (offers, runs int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.offers, h.runs
}

func connState(st ConnState) func(Event) bool {
	return func(e Event) bool { ce, ok := e.(ConnEvent); return ok && ce.State == st }
}

// testConfig is a fast configuration against serverURL with its own spool folder.
func testConfig(t *testing.T, serverURL string) Config {
	return Config{
		ServerURL: serverURL, WorkerID: "w1", AuthToken: "tok", SpoolDir: t.TempDir(), AgentVersion: "test",
		Logger:           slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Backoff:          Backoff{Base: time.Millisecond, Max: 20 * time.Millisecond, HealthyAfter: time.Hour},
		PingInterval:     time.Second,
		PingTimeout:      2 * time.Second,
		LogFlushInterval: 20 * time.Millisecond,
		ProgressInterval: 50 * time.Millisecond,
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Logf("%s", p)
	return len(p), nil
}

func newSession(t *testing.T, cfg Config, h Handler) *Session {
	t.Helper()
	s, err := New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claim(id string, kind protocol.Kind) protocol.Claim {
	return protocol.Claim{JobID: id, Kind: kind, Model: "synthetic", Input: json.RawMessage(`{"prompt":"hi"}`),
		ExpiresAt: time.Now().Add(10 * time.Second).UTC()}
}

// retryErr is an engine error that says whether it is retryable.
type retryErr struct{ retryable bool }

func (e retryErr) Error() string   { return fmt.Sprintf("engine error (retryable=%v)", e.retryable) }
func (e retryErr) Retryable() bool { return e.retryable }
