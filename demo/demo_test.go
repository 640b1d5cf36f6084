// Tests of the demo on the real reference hub over real sockets: `studio-worker demo --headless`
// end to end, and the window's demo (StartDemo, StopDemo) on a worker reached through its control
// socket, as the window reaches it. Moved here from app's tests with the demo hub they need.

package demo

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"studioworker/app"
	"studioworker/engine"
)

func TestDemoHeadless(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs 12 jobs end to end (about 15 s); skipped with -short")
	}
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	var out, errb syncBuffer
	cli := &app.CLI{Stdout: &out, Stderr: &errb, DemoHub: Start}
	code := cli.Run([]string{"demo", "--headless", "--jobs", "12"})
	if code != 0 {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	s := out.String()
	for _, want := range []string{"All 12 jobs ended as expected", "Summary", "failed", "cancelled", "image/png"} {
		if !strings.Contains(s, want) {
			t.Errorf("demo output lacks %q:\n%s", want, s)
		}
	}
}

func TestDemoFromTheWindow(t *testing.T) {
	e := newWindowEnv(t)
	ctx := context.Background()
	if err := e.client.StopDemo(ctx); err == nil || !strings.Contains(err.Error(), app.ErrNoDemo.Error()) {
		t.Fatalf("StopDemo with none running: %v", err)
	}
	if err := e.client.StartDemo(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.client.StartDemo(ctx); err == nil || !strings.Contains(err.Error(), app.ErrDemoRunning.Error()) {
		t.Fatalf("a second StartDemo: %v", err)
	}
	st := e.waitState("demo jobs done", func(s app.State) bool { return s.Demo && s.Registered && s.Counters.Done >= 2 })
	if st.Conn.State != "connected" || !strings.HasPrefix(st.ServerURL, "http://127.0.0.1:") {
		t.Fatalf("during the demo: conn %+v server %q", st.Conn, st.ServerURL)
	}
	// The demo's jobs show, but are not this computer's work: not in today's tally, and marked
	// so that the history file never keeps them.
	if len(st.Days) != 0 {
		t.Errorf("the demo's jobs were counted as work: %+v", st.Days)
	}
	for _, r := range st.Recent {
		if !r.Demo {
			t.Errorf("a demo job is not marked as one: %+v", r)
		}
	}
	// A setting changed during the demo is saved, without the demo's hub or credentials.
	if err := e.client.SetAutoAccept(ctx, true); err != nil {
		t.Fatal(err)
	}
	saved, err := app.LoadConfig(e.path)
	if err != nil {
		t.Fatal(err)
	}
	if saved.Registered() || saved.ServerURL != "" || !reflect.DeepEqual(saved.Engines, engine.DefaultConfig()) {
		t.Fatalf("the demo leaked into the config file: %+v", saved)
	}

	if err := e.client.StopDemo(ctx); err != nil {
		t.Fatal(err)
	}
	st = e.waitState("back to first run", func(s app.State) bool { return !s.Demo && !s.Registered && s.Conn.State == "unregistered" })
	if cfg := e.worker.Config(); cfg.Registered() {
		t.Fatal("the worker kept the demo's credentials")
	}
	// And a demo can run again.
	if err := e.client.StartDemo(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitState("connected again", func(s app.State) bool { return s.Demo && s.Conn.State == "connected" })
}

// windowEnv is a worker with no registration, as the window starts it on a first run, given this
// package's demo hub, with its control socket and a client following it.
type windowEnv struct {
	t      *testing.T
	worker *app.Worker
	client *app.Client
	path   string
}

func newWindowEnv(t *testing.T) *windowEnv {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	level := slog.LevelWarn
	if os.Getenv("STUDIO_WORKER_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
	ctx := context.Background()
	cfg := app.DefaultConfig()
	cfg.GPU.Simulated = &app.SimulatedGPU{Name: "Simulated test GPU", VRAMGB: 24}
	cfg.GPU.SampleIntervalS = 0.1
	path := filepath.Join(dir, "worker", "config.json")
	w, err := app.NewWorker(app.Options{ConfigPath: path, Config: cfg, Logger: logger, AgentVersion: "test", KeepRunning: true, DemoHub: Start})
	if err != nil {
		t.Fatal(err)
	}
	ln, token, err := app.ListenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	done := make(chan error, 1)
	wg.Add(1)
	go func() { defer wg.Done(); _ = app.NewControlServer(w, w, token, logger).Serve(wctx, ln) }()
	go func() { done <- w.Serve(wctx) }()
	cl, err := app.DialControl(ctx, path)
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
	})
	e := &windowEnv{t: t, worker: w, client: cl, path: path}
	e.waitState("unregistered", func(s app.State) bool { return s.Conn.State == "unregistered" && !s.Registered })
	return e
}

// waitState waits, through the control socket's event stream, for a state that satisfies ok.
func (e *windowEnv) waitState(what string, ok func(app.State) bool) app.State {
	e.t.Helper()
	snap, sub := e.client.Subscribe()
	defer sub.Close()
	if ok(snap) {
		return snap
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case s, open := <-sub.States():
			if !open {
				e.t.Fatalf("state stream closed waiting for %s", what)
			}
			if ok(s) {
				return s
			}
		case <-deadline:
			last := e.worker.Observers().Snapshot()
			e.t.Fatalf("no state with %s within 20 s; last: conn=%s mode=%s", what, last.Conn.State, last.Mode)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// syncBuffer is a bytes.Buffer the demo's goroutines may write to at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
