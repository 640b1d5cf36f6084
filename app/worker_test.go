// worker_test.go: the worker against the real hub over real sockets, and the test env others use.

package app

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"studioworker/gpu"
	"studioworker/hub"
	"studioworker/protocol"
)

// testEnv is a real hub on a real socket and a real worker with the synthetic engine, its control
// socket and a client attached to it.
type testEnv struct {
	t      *testing.T
	hub    *hub.Hub
	srv    *httptest.Server
	admin  *hub.Client
	worker *Worker
	client *Client
	cfg    Config
	path   string
	cancel context.CancelFunc
	done   chan error
}

type envOption func(*Config)

func newTestEnv(t *testing.T, opts ...envOption) *testEnv {
	t.Helper()
	return newTestEnvSampled(t, nil, opts...)
}

// newTestEnvSampled is newTestEnv with the worker's GPU sampler given; nil is the config's own.
func newTestEnvSampled(t *testing.T, sampler gpu.Sampler, opts ...envOption) *testEnv {
	t.Helper()
	return newTestEnvWith(t, sampler, nil, opts...)
}

// newTestEnvWith is newTestEnvSampled with the hub's config changed by hubCfg (nil: as is).
func newTestEnvWith(t *testing.T, sampler gpu.Sampler, hubCfg func(*hub.Config), opts ...envOption) *testEnv {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: testLogLevel()}))
	ctx := context.Background()
	hc := hub.Config{
		DBPath: filepath.Join(dir, "hub.db"), OpenRegistration: true, AdminToken: "admin",
		HeartbeatInterval: 200 * time.Millisecond, OfferTTL: 3 * time.Second, Logger: logger,
	}
	if hubCfg != nil {
		hubCfg(&hc)
	}
	h, err := hub.Open(ctx, hc)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.Handler())
	admin := &hub.Client{BaseURL: srv.URL, AdminToken: "admin"}
	reg, err := admin.Register(ctx, "test worker", "any")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.ServerURL, cfg.WorkerID, cfg.AuthToken = srv.URL, reg.WorkerID, reg.AuthToken
	cfg.GPU.Simulated = &SimulatedGPU{Name: "Simulated test GPU", VRAMGB: 24}
	cfg.GPU.SampleIntervalS = 0.1
	for _, o := range opts {
		o(&cfg)
	}
	path := filepath.Join(dir, "worker", "config.json")
	if err := SaveConfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	w, err := NewWorker(Options{ConfigPath: path, Config: cfg, Logger: logger, AgentVersion: "test", Sampler: sampler})
	if err != nil {
		t.Fatal(err)
	}
	ln, token, err := ListenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	env := &testEnv{t: t, hub: h, srv: srv, admin: admin, worker: w, cfg: cfg, path: path, cancel: cancel, done: make(chan error, 1)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = NewControlServer(w, w, token, logger).Serve(wctx, ln) }()
	go func() { env.done <- w.Serve(wctx) }()
	cl, err := DialControl(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Follow(wctx); err != nil {
		t.Fatal(err)
	}
	env.client = cl
	t.Cleanup(func() {
		cl.Close()
		cancel()
		select {
		case <-env.done:
		case <-time.After(10 * time.Second):
			t.Error("worker did not stop within 10 s")
		}
		wg.Wait()
		srv.Close()
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		_ = h.Close(cctx)
	})
	env.waitState("connected", func(s State) bool { return s.Conn.State == "connected" })
	return env
}

// testLogLevel is Warn, or Debug with STUDIO_WORKER_TEST_DEBUG=1.
func testLogLevel() slog.Level {
	if os.Getenv("STUDIO_WORKER_TEST_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// waitState waits, through the control socket's event stream, for a state that satisfies ok.
func (e *testEnv) waitState(what string, ok func(State) bool) State {
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
			e.t.Fatalf("no state with %s within 20 s; last: conn=%s mode=%s", what, e.worker.Observers().Snapshot().Conn.State, e.worker.Observers().Snapshot().Mode)
		}
	}
}

func (e *testEnv) submit(kind protocol.Kind, input string) string {
	e.t.Helper()
	id, err := e.admin.Submit(context.Background(), protocol.JobRequest{Kind: kind, Model: "synthetic", Input: protocol.Object(input)})
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *testEnv) wait(id string) protocol.JobInfo {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := e.admin.WaitJob(ctx, id)
	if err != nil {
		e.t.Fatalf("job %s: %v", id, err)
	}
	return info
}

func TestControlPauseResumeThroughSocket(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	if err := env.client.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	env.waitState("paused", func(s State) bool { return s.Mode == protocol.StatePaused && s.Paused })
	// The pause is remembered across restarts.
	saved, err := LoadConfig(env.path)
	if err != nil || !saved.Paused {
		t.Fatalf("pause not persisted: %v %+v", err, saved.Paused)
	}
	id := env.submit(protocol.KindLLM, `{"prompt":"hi"}`)
	if err := env.client.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	env.waitState("idle", func(s State) bool { return s.Mode == protocol.StateIdle || s.Mode == protocol.StateBusy })
	info := env.wait(id)
	if info.Status != protocol.JobCompleted {
		t.Fatalf("job after resume: %+v", info)
	}
	// An offer that raced the Resume may have been declined "paused" first: it is in the recent
	// list too, as a decline; the run that completed is the one that counts.
	st := env.waitState("one done", func(s State) bool { return s.Counters.Done == 1 && len(s.Recent) >= 1 })
	if r := st.Recent[0]; r.JobID != id || r.Status != "done" {
		t.Fatalf("recent = %+v", st.Recent)
	}
	for _, r := range st.Recent[1:] {
		if r.Status != "declined" || r.JobID != id {
			t.Fatalf("recent beside the run: %+v", st.Recent)
		}
	}
}

func TestControlAcceptWaitingOffer(t *testing.T) {
	env := newTestEnv(t, func(c *Config) { c.AutoAccept = false })
	id := env.submit(protocol.KindImage, `{"prompt":"p","width":64,"height":64}`)
	st := env.waitState("an offer waiting", func(s State) bool {
		return len(s.Offers) == 1 && s.Offers[0].WaitingForUser
	})
	if st.Offers[0].JobID != id || st.Offers[0].Kind != protocol.KindImage {
		t.Fatalf("offer = %+v", st.Offers[0])
	}
	if err := env.client.AcceptOffer(context.Background(), "nope"); !errors.Is(err, ErrNoSuchOffer) {
		t.Fatalf("accept of an unknown offer: %v", err)
	}
	if err := env.client.AcceptOffer(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if info := env.wait(id); info.Status != protocol.JobCompleted {
		t.Fatalf("job = %+v", info)
	}
	// The image's thumbnail outlives the result file, which left the spool once delivered.
	st = env.waitState("a recent job", func(s State) bool { return len(s.Recent) == 1 })
	if _, err := os.Stat(st.Recent[0].File); err != nil {
		t.Fatalf("recent image job has no thumbnail on disk: %q %v", st.Recent[0].File, err)
	}
}

func TestControlDeclineWaitingOffer(t *testing.T) {
	env := newTestEnv(t, func(c *Config) { c.AutoAccept = false })
	id := env.submit(protocol.KindLLM, `{"prompt":"p"}`)
	env.waitState("an offer waiting", func(s State) bool { return len(s.Offers) == 1 && s.Offers[0].WaitingForUser })
	if err := env.client.DeclineOffer(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	st := env.waitState("declined by user", func(s State) bool { return s.Counters.Declined["user"] == 1 })
	if len(st.Offers) != 0 {
		t.Fatalf("offer still listed: %+v", st.Offers)
	}
}

func TestDrainFinishesThenPauses(t *testing.T) {
	env := newTestEnv(t)
	id := env.submit(protocol.KindLLM, `{"prompt":"slow","duration_ms":1500}`)
	env.waitState("busy", func(s State) bool { return len(s.Running) == 1 })
	if err := env.client.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := env.waitState("draining", func(s State) bool { return s.Mode == protocol.StateDraining })
	if !strings.Contains(st.ModeReason, "then pausing") {
		t.Errorf("draining reason = %q", st.ModeReason)
	}
	if info := env.wait(id); info.Status != protocol.JobCompleted {
		t.Fatalf("drained job = %+v", info)
	}
	env.waitState("paused after drain", func(s State) bool { return s.Mode == protocol.StatePaused && s.Paused })
}

func TestCancelRunningJobIsRetryable(t *testing.T) {
	env := newTestEnv(t)
	id := env.submit(protocol.KindVideo, `{"prompt":"p","width":32,"height":32,"frames":4,"fps":4,"duration_ms":20000}`)
	env.waitState("running", func(s State) bool { return len(s.Running) == 1 })
	if err := env.client.Pause(context.Background()); err != nil { // so the retry does not come back here at once
		t.Fatal(err)
	}
	if err := env.client.CancelJob(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	env.waitState("cancelled", func(s State) bool { return len(s.Recent) == 1 && len(s.Running) == 0 })
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := env.admin.Job(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if info.Attempts == 1 && info.Status == protocol.JobQueued {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cancelled job not requeued as retryable: %+v", info)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := env.client.CancelJob(context.Background(), id); !errors.Is(err, ErrNoSuchJob) {
		t.Fatalf("cancel of a job not running: %v", err)
	}
}

func TestSingleInstance(t *testing.T) {
	env := newTestEnv(t)
	_, _, err := ListenControl(env.path)
	if !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("second ListenControl: %v, want ErrAlreadyRunning", err)
	}
	var out, errb strings.Builder
	cli := &CLI{Stdout: &out, Stderr: &errb}
	if code := cli.Run([]string{"run", "--config", env.path}); code != ExitError {
		t.Fatalf("second run exit %d, want 1 (stderr %s)", code, errb.String())
	}
	if !strings.Contains(errb.String(), "already running") {
		t.Fatalf("stderr = %q", errb.String())
	}
}

func TestStatusJSONHasNoToken(t *testing.T) {
	env := newTestEnv(t)
	var out, errb strings.Builder
	cli := &CLI{Stdout: &out, Stderr: &errb}
	if code := cli.Run([]string{"status", "--json", "--config", env.path}); code != 0 {
		t.Fatalf("status exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), `"state": "connected"`) {
		t.Fatalf("status --json = %s", out.String())
	}
	if strings.Contains(out.String(), env.cfg.AuthToken) {
		t.Fatal("status output contains the auth token")
	}
	out.Reset()
	if code := cli.Run([]string{"status", "--config", env.path}); code != 0 || !strings.Contains(out.String(), "connected to") {
		t.Fatalf("status = %d %s", code, out.String())
	}
}

func TestAdmissionDeclinesForLiveVRAM(t *testing.T) {
	env := newTestEnv(t)
	sim := env.worker.sim
	if sim == nil {
		t.Fatal("no simulated GPU")
	}
	env.worker.opts.SimulatedBaseMB = 20 * 1024
	sim.SetUsedMB(20 * 1024)
	env.waitState("20 GB used", func(s State) bool { return len(s.GPU.Cards) == 1 && s.GPU.Cards[0].UsedMB == 20*1024 })
	est := 8.0
	_, err := env.admin.Submit(context.Background(), protocol.JobRequest{Kind: protocol.KindImage, Model: "synthetic",
		Input: protocol.Object(`{"prompt":"p","width":64,"height":64}`), VRAMGBEstimate: &est})
	if err != nil {
		t.Fatal(err)
	}
	env.waitState("declined for vram", func(s State) bool { return s.Counters.Declined["vram"] == 1 })
}

func TestRunWithoutRegistrationSaysRegisterFirst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	var out, errb strings.Builder
	cli := &CLI{Stdout: &out, Stderr: &errb}
	if code := cli.Run([]string{"run", "--config", path}); code != ExitUsage || !strings.Contains(errb.String(), "register first") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	if err := SaveConfig(path, DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	if code := cli.Run([]string{"run", "--config", path}); code != ExitUsage || !strings.Contains(errb.String(), "register") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

func TestRunExitsThreeWhenCredentialsRejected(t *testing.T) {
	env := newTestEnv(t)
	path := filepath.Join(t.TempDir(), "other", "config.json")
	cfg := env.cfg
	cfg.WorkerID, cfg.AuthToken = env.cfg.WorkerID, "wrong-token"
	if err := SaveConfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	cli := &CLI{Stdout: &out, Stderr: &errb}
	if code := cli.Run([]string{"run", "--config", path}); code != ExitAuthFailed {
		t.Fatalf("exit %d, want 3; stderr %s", code, errb.String())
	}
}

func TestRunInsecureURLExitsTwo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(`{"server_url":"http://studio.example.com","worker_id":"w","auth_token":"t"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	cli := &CLI{Stdout: &out, Stderr: &errb}
	if code := cli.Run([]string{"run", "--config", path}); code != ExitUsage || !strings.Contains(errb.String(), "http://") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

func TestFirstSignalDrainsSecondStops(t *testing.T) {
	tests := []struct {
		name string
		kind protocol.Kind
		in   string
	}{
		{"json result", protocol.KindLLM, `{"prompt":"p","duration_ms":1500}`},
		// A big file takes a while to hash and sync into the outbox after the engine has returned
		// and freed its slot: the drain must wait for it rather than see nothing left to do.
		{"file result being spooled", protocol.KindImage, `{"prompt":"p","width":64,"height":64,"duration_ms":500,"pad_bytes":201326592}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { testFirstSignalDrains(t, tc.kind, tc.in) })
	}
}

func testFirstSignalDrains(t *testing.T, kind protocol.Kind, input string) {
	env := newTestEnv(t)
	// A second worker, run by the CLI with a signal channel, on its own registration.
	reg, err := env.admin.Register(context.Background(), "cli worker", "x")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cli", "config.json")
	cfg := env.cfg
	cfg.WorkerID, cfg.AuthToken = reg.WorkerID, reg.AuthToken
	if err := SaveConfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	if err := env.client.Pause(context.Background()); err != nil { // jobs go to the CLI worker
		t.Fatal(err)
	}
	env.waitState("paused", func(s State) bool { return s.Mode == protocol.StatePaused })
	sigs := make(chan os.Signal, 2)
	var out, errb syncBuffer
	cli := &CLI{Stdout: &out, Stderr: &errb, Signals: sigs}
	exit := make(chan int, 1)
	go func() { exit <- cli.Run([]string{"run", "--config", path}) }()
	id := env.submit(kind, input)
	waitFor(t, "the CLI worker to run the job", func() bool {
		info, _ := env.admin.Job(context.Background(), id)
		return info.Status == protocol.JobRunning
	})
	sigs <- os.Interrupt
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit %d after drain; stderr %s", code, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not stop after the first signal")
	}
	if info := env.wait(id); info.Status != protocol.JobCompleted {
		t.Fatalf("the running job was not finished before stopping: %+v", info)
	}
}

// waitFor polls a condition that has no event to wait on (the hub's job status) with a deadline.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

func TestYieldToAGraphicsProgramAndComeBack(t *testing.T) {
	env := newTestEnv(t, func(c *Config) { c.GPU.Yield.ResumeAfterS = 0.3 })
	sim := env.worker.sim
	sim.SetProcesses([]gpu.Process{{PID: 999999, Name: "game.exe", UsedMB: 3000, Graphics: true}})
	st := env.waitState("yielding", func(s State) bool { return s.Mode == protocol.StateYielding })
	if st.YieldedTo != "game.exe" || !strings.Contains(st.ModeReason, "game.exe") {
		t.Fatalf("yield names %q / %q, want game.exe", st.YieldedTo, st.ModeReason)
	}
	// The hub hears it at once (a heartbeat on the change) and offers nothing meanwhile.
	waitFor(t, "the hub to see the worker yielding", func() bool {
		ws, err := env.admin.Workers(context.Background())
		return err == nil && len(ws) == 1 && ws[0].State == protocol.StateYielding
	})
	id := env.submit(protocol.KindLLM, `{"prompt":"p"}`)
	if info, _ := env.admin.Job(context.Background(), id); info.Status != protocol.JobQueued {
		t.Fatalf("job offered to a yielding worker: %+v", info)
	}
	sim.SetProcesses(nil)
	env.waitState("back after the program ended", func(s State) bool { return s.Mode == protocol.StateIdle || s.Mode == protocol.StateBusy })
	if info := env.wait(id); info.Status != protocol.JobCompleted {
		t.Fatalf("job after the yield: %+v", info)
	}
}

func TestRegisterThroughTheControlSocket(t *testing.T) {
	env := newTestEnv(t)
	// A second worker with no credentials yet, as on a first run in the window.
	dir := t.TempDir()
	path := filepath.Join(dir, "new", "config.json")
	cfg := DefaultConfig()
	cfg.GPU.Simulated = &SimulatedGPU{Name: "sim", VRAMGB: 8}
	w, err := NewWorker(Options{ConfigPath: path, Config: cfg, KeepRunning: true})
	if err != nil {
		t.Fatal(err)
	}
	ln, token, err := ListenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = NewControlServer(w, w, token, nil).Serve(ctx, ln); done <- struct{}{} }()
	go func() { _ = w.Serve(ctx); done <- struct{}{} }()
	defer func() { cancel(); <-done; <-done }()
	cl, err := DialControl(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if st, _ := cl.State(ctx); st.Registered || st.Conn.State != "unregistered" {
		t.Fatalf("first run state: registered=%v conn=%s", st.Registered, st.Conn.State)
	}
	env.hub.Close(ctx) // reopen with a closed registration below
	h2, err := hub.Open(ctx, hub.Config{DBPath: filepath.Join(dir, "hub2.db"), AdminToken: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h2.Handler())
	defer srv.Close()
	defer h2.Close(context.Background())
	err = cl.Register(ctx, RegisterRequest{ServerURL: srv.URL, PairingCode: "WRONG-CODE"})
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Fields["pairing_code"] == "" {
		t.Fatalf("wrong code: %v, want a ValidationError on pairing_code", err)
	}
	code, err := (&hub.Client{BaseURL: srv.URL, AdminToken: "admin"}).PairingCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Register(ctx, RegisterRequest{ServerURL: srv.URL, PairingCode: code, Name: "new one"}); err != nil {
		t.Fatal(err)
	}
	saved, err := LoadConfig(path)
	if err != nil || !saved.Registered() || saved.Name != "new one" {
		t.Fatalf("credentials not saved: %v %+v", err, saved.Redacted())
	}
	waitFor(t, "the new worker to connect", func() bool { return w.Observers().Snapshot().Conn.State == "connected" })
}

func TestSaveSettingsValidatesAndPersists(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	s, err := env.client.Settings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bad := s
	bad.VRAMThresholdGB = -2
	err = env.client.SaveSettings(ctx, bad)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Fields["vram_threshold_gb"] == "" {
		t.Fatalf("negative cap: %v, want a ValidationError on vram_threshold_gb", err)
	}
	if saved, _ := LoadConfig(env.path); saved.VRAMThresholdGB != env.cfg.VRAMThresholdGB {
		t.Fatal("an invalid setting was saved")
	}
	good := s
	good.VRAMThresholdGB = 12
	if err := env.client.SaveSettings(ctx, good); err != nil {
		t.Fatal(err)
	}
	saved, err := LoadConfig(env.path)
	if err != nil || saved.VRAMThresholdGB != 12 || saved.AuthToken != env.cfg.AuthToken {
		t.Fatalf("saved %v cap=%v token kept=%v", err, saved.VRAMThresholdGB, saved.AuthToken == env.cfg.AuthToken)
	}
	env.waitState("cap in the state", func(s State) bool { return s.GPU.CapGB == 12 })
	if got := env.worker.Capabilities().VRAMThresholdGB; got != 12 {
		t.Fatalf("capabilities threshold %v, want 12", got)
	}
}

// TestRunExitsThreeWhenRevoked: the Studio revokes a worker whose `run` is connected; the live
// session ends with 4001 and run exits 3, so a service manager stops restarting it (spec §6).
func TestRunExitsThreeWhenRevoked(t *testing.T) {
	env := newTestEnv(t)
	path := filepath.Join(t.TempDir(), "revoked", "config.json")
	reg, err := env.admin.Register(context.Background(), "to be revoked", "any")
	if err != nil {
		t.Fatal(err)
	}
	cfg := env.cfg
	cfg.WorkerID, cfg.AuthToken = reg.WorkerID, reg.AuthToken
	if err := SaveConfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	var out, errb syncBuffer
	code := make(chan int, 1)
	go func() { code <- (&CLI{Stdout: &out, Stderr: &errb}).Run([]string{"run", "--config", path}) }()
	waitFor(t, "the second worker to connect", func() bool {
		for _, w := range env.hub.Workers() {
			if w.WorkerID == reg.WorkerID && w.Connected {
				return true
			}
		}
		return false
	})
	if err := env.hub.Revoke(context.Background(), reg.WorkerID); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-code:
		if c != ExitAuthFailed {
			t.Fatalf("exit %d, want 3; stderr %s", c, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not exit after the revocation")
	}
}
