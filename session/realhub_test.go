// realhub_test.go: the session against the real hub over real sockets.

package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"studioworker/hub"
	"studioworker/protocol"
)

// These tests run the worker against the real hub (hub/), in-process over real sockets.

// TestMain lets the test binary act as a worker process for the SIGKILL test.
func TestMain(m *testing.M) {
	if os.Getenv("SESSION_TEST_WORKER") == "1" {
		os.Exit(workerProcess())
	}
	os.Exit(m.Run())
}

// workerProcess is a whole worker in a child process: it accepts every offer and answers image
// jobs with a small png. It runs until it is killed.
func workerProcess() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(Config{
		ServerURL: os.Getenv("SESSION_TEST_URL"), WorkerID: os.Getenv("SESSION_TEST_ID"),
		AuthToken: os.Getenv("SESSION_TEST_TOKEN"), SpoolDir: os.Getenv("SESSION_TEST_SPOOL"),
		AgentVersion: "child", Logger: log,
		Backoff: Backoff{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond},
	}, newTestHandler())
	if err != nil {
		log.Error("new", "err", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := s.Run(ctx); err != nil {
		log.Error("run", "err", err)
		return 1
	}
	return 0
}

type realHub struct {
	t      *testing.T
	h      *hub.Hub
	srv    *httptest.Server
	client *hub.Client
	cfg    hub.Config
	// refuseUploads makes the hub's front answer 503 to result uploads, as an overloaded proxy
	// would; refused counts those answers.
	refuseUploads atomic.Bool
	refused       atomic.Int32
}

func startRealHub(t *testing.T, dir string) *realHub {
	t.Helper()
	cfg := hub.Config{
		DBPath: filepath.Join(dir, "hub.db"), OpenRegistration: true, AdminToken: "admin-token",
		HeartbeatInterval: 100 * time.Millisecond, LeaseGrace: 30 * time.Second, OfferTTL: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("side", "hub"),
	}
	h, err := hub.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("hub.Open: %v", err)
	}
	rh := &realHub{t: t, h: h, cfg: cfg}
	inner := h.Handler()
	rh.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rh.refuseUploads.Load() && r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/result") {
			rh.refused.Add(1)
			http.Error(w, "upstream overloaded", http.StatusServiceUnavailable)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	rh.client = &hub.Client{BaseURL: rh.srv.URL, AdminToken: h.AdminToken(), HTTP: rh.srv.Client()}
	t.Cleanup(rh.close)
	return rh
}

func (rh *realHub) close() {
	if rh.h == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rh.h.Close(ctx); err != nil {
		rh.t.Errorf("hub Close: %v", err)
	}
	rh.srv.Close()
	rh.h = nil
}

func (rh *realHub) register(t *testing.T) protocol.RegisterResponse {
	t.Helper()
	code, err := rh.client.PairingCode(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := Register(context.Background(), nil, rh.srv.URL, false, "test-machine", code)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	return creds
}

func (rh *realHub) wait(t *testing.T, id string) protocol.JobInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	info, err := rh.client.WaitJob(ctx, id)
	if err != nil {
		t.Fatalf("WaitJob(%s): %v", id, err)
	}
	return info
}

func realConfig(t *testing.T, url string, creds protocol.RegisterResponse) Config {
	cfg := testConfig(t, url)
	cfg.WorkerID, cfg.AuthToken = creds.WorkerID, creds.AuthToken
	cfg.HTTPClient = nil
	return cfg
}

func sttHandler() *testHandler {
	h := newTestHandler()
	h.setCaps(func(c *protocol.Capabilities) {
		c.TaskKinds = append(c.TaskKinds, protocol.KindSTT)
		c.SupportedModelsPerKind[protocol.KindSTT] = protocol.List[string]{"synthetic"}
	})
	return h
}

func TestRealHubRunsJSONBinaryAndInputJobs(t *testing.T) {
	rh := startRealHub(t, t.TempDir())
	creds := rh.register(t)
	h := sttHandler()
	h.setRun(func(ctx context.Context, j Job, p func(float64, string)) (Result, error) {
		if j.Claim.Kind == protocol.KindSTT {
			b, err := os.ReadFile(j.InputFile)
			if err != nil {
				return Result{}, err
			}
			res, _ := json.Marshal(protocol.STTResult{Text: string(b), Language: "en"})
			return Result{JSON: res}, nil
		}
		p(0.5, "half")
		return defaultRun(ctx, j, p)
	})
	s := newSession(t, realConfig(t, rh.srv.URL, creds), h)
	startRun(t, s)
	s.Log(protocol.LogEntry{Level: protocol.LevelInfo, Source: "app", Message: "hello hub"})

	ctx := context.Background()
	llm, err := rh.client.Submit(ctx, protocol.JobRequest{Kind: protocol.KindLLM, Model: "synthetic", Input: protocol.Object(`{"prompt":"hi"}`)})
	if err != nil {
		t.Fatal(err)
	}
	img, err := rh.client.Submit(ctx, protocol.JobRequest{Kind: protocol.KindImage, Model: "synthetic", Input: protocol.Object(`{"prompt":"a cat","width":64,"height":64}`)})
	if err != nil {
		t.Fatal(err)
	}
	stt, err := rh.client.SubmitWithFile(ctx, protocol.JobRequest{Kind: protocol.KindSTT, Model: "synthetic", Input: protocol.Object(`{}`)}, "speech.wav", strings.NewReader("spoken words"))
	if err != nil {
		t.Fatal(err)
	}
	if info := rh.wait(t, llm); info.Status != protocol.JobCompleted || !strings.Contains(string(info.Result), "done "+llm) {
		t.Fatalf("llm job = %+v", info)
	}
	if info := rh.wait(t, img); info.Status != protocol.JobCompleted || info.ResultURL == "" {
		t.Fatalf("image job = %+v", info)
	}
	var buf bytes.Buffer
	if _, err := rh.client.Result(ctx, img, &buf); err != nil || buf.String() != "PNG:"+img {
		t.Fatalf("image result = %q (%v)", buf.String(), err)
	}
	if info := rh.wait(t, stt); info.Status != protocol.JobCompleted || !strings.Contains(string(info.Result), "spoken words") {
		t.Fatalf("stt job = %+v", info)
	}
	waitFor(t, "outbox drained by acks", func() bool { return s.OutboxLen() == 0 })
	waitFor(t, "logs acked", func() bool { b, p, _ := s.logs.stats(); return b == 0 && p == 0 })
}

func TestRealHubRestartInTheMiddleOfAJobDeliversTheResultOnce(t *testing.T) {
	dir := t.TempDir()
	rh := startRealHub(t, dir)
	creds := rh.register(t)
	proxy := newTCPProxy(t, strings.TrimPrefix(rh.srv.URL, "http://"))
	h := newTestHandler()
	started := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	h.setRun(func(ctx context.Context, j Job, p func(float64, string)) (Result, error) {
		once.Do(func() { close(started) })
		<-release
		return defaultRun(ctx, j, p)
	})
	s := newSession(t, realConfig(t, proxy.url(), creds), h)
	startRun(t, s)
	id, err := rh.client.Submit(context.Background(), protocol.JobRequest{Kind: protocol.KindImage, Model: "synthetic", Input: protocol.Object(`{"prompt":"x","width":8,"height":8}`)})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	// The hub has taken the accept (the job is leased) before it goes down: a restart in the
	// middle of a running job.
	waitFor(t, "job running on the hub", func() bool {
		info, err := rh.client.Job(context.Background(), id)
		return err == nil && info.Status == protocol.JobRunning
	})
	rh.close() // shutting_down, 1012; the job keeps running on the worker
	h.waitEvent(t, "reconnecting after the hub went away", connState(ConnReconnecting))

	rh2 := startRealHub(t, dir)
	proxy.setTarget(strings.TrimPrefix(rh2.srv.URL, "http://"))
	n := len(h.eventsOf(connState(ConnConnected)))
	waitFor(t, "reconnected to the restarted hub", func() bool { return len(h.eventsOf(connState(ConnConnected))) > n })
	close(release)

	info := rh2.wait(t, id)
	if info.Status != protocol.JobCompleted || info.Attempts != 0 {
		t.Fatalf("job after the restart = %+v, want completed on its first attempt", info)
	}
	waitFor(t, "outbox empty", func() bool { return s.OutboxLen() == 0 })
	if _, runs := h.counts(); runs != 1 {
		t.Fatalf("the job ran %d times", runs)
	}
	delivered := h.eventsOf(func(e Event) bool { d, ok := e.(DeliveredEvent); return ok && d.JobID == id })
	if len(delivered) != 1 || delivered[0].(DeliveredEvent).Status != protocol.AckStored {
		t.Fatalf("deliveries = %+v, want one, stored", delivered)
	}
}

func TestRealHubWorkerKilledWithItsResultSpooledDeliversAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	rh := startRealHub(t, t.TempDir())
	creds := rh.register(t)
	rh.refuseUploads.Store(true)
	spool := t.TempDir()
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "SESSION_TEST_WORKER=1", "SESSION_TEST_URL="+rh.srv.URL,
			"SESSION_TEST_ID="+creds.WorkerID, "SESSION_TEST_TOKEN="+creds.AuthToken, "SESSION_TEST_SPOOL="+spool)
		cmd.Stderr = testWriter{t}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	id, err := rh.client.Submit(context.Background(), protocol.JobRequest{Kind: protocol.KindImage, Model: "synthetic", Input: protocol.Object(`{"prompt":"x","width":8,"height":8}`)})
	if err != nil {
		t.Fatal(err)
	}
	first := start()
	waitFor(t, "an upload refused with 503", func() bool { return rh.refused.Load() > 0 })
	metas, _ := filepath.Glob(filepath.Join(spool, "outbox", "*.json"))
	if len(metas) != 1 {
		t.Fatalf("outbox entries on disk = %v, want the spooled result", metas)
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	rh.refuseUploads.Store(false)

	start()
	info := rh.wait(t, id)
	if info.Status != protocol.JobCompleted {
		t.Fatalf("job = %+v, want completed by the restarted worker", info)
	}
	var buf bytes.Buffer
	if _, err := rh.client.Result(context.Background(), id, &buf); err != nil || buf.String() != "PNG:"+id {
		t.Fatalf("result = %q (%v)", buf.String(), err)
	}
	waitFor(t, "spool emptied", func() bool {
		entries, _ := os.ReadDir(filepath.Join(spool, "outbox"))
		return len(entries) == 0
	})
}

func TestRealHubCancelOfARunningJob(t *testing.T) {
	rh := startRealHub(t, t.TempDir())
	creds := rh.register(t)
	h := newTestHandler()
	started := make(chan struct{})
	stopped := make(chan error, 1)
	h.setRun(func(ctx context.Context, j Job, p func(float64, string)) (Result, error) {
		close(started)
		<-ctx.Done()
		stopped <- ctx.Err()
		return Result{}, ctx.Err()
	})
	s := newSession(t, realConfig(t, rh.srv.URL, creds), h)
	startRun(t, s)
	id, err := rh.client.Submit(context.Background(), protocol.JobRequest{Kind: protocol.KindLLM, Model: "synthetic", Input: protocol.Object(`{"prompt":"x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	if err := rh.client.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-stopped:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("job ctx ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the hub's cancel did not reach the job")
	}
	if info := rh.wait(t, id); info.Status != protocol.JobCancelled {
		t.Fatalf("job = %+v", info)
	}
	waitFor(t, "job gone", func() bool { return len(s.Running()) == 0 && s.OutboxLen() == 0 })
}

func TestRealHubSupersededAndRejectedCredentials(t *testing.T) {
	rh := startRealHub(t, t.TempDir())
	creds := rh.register(t)
	h1 := newTestHandler()
	s1 := newSession(t, realConfig(t, rh.srv.URL, creds), h1)
	r1 := startRun(t, s1)
	h1.waitEvent(t, "first connected", connState(ConnConnected))
	h2 := newTestHandler()
	s2 := newSession(t, realConfig(t, rh.srv.URL, creds), h2)
	startRun(t, s2)
	if err := r1.wait(t); !errors.Is(err, ErrSuperseded) {
		t.Fatalf("first session Run = %v, want ErrSuperseded", err)
	}
	h2.waitEvent(t, "second connected", connState(ConnConnected))

	bad := creds
	bad.AuthToken = "wrong"
	s3 := newSession(t, realConfig(t, rh.srv.URL, bad), newTestHandler())
	if err := startRun(t, s3).wait(t); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("wrong token: Run = %v, want ErrAuthFailed", err)
	}
}

func TestRegister(t *testing.T) {
	rh := startRealHub(t, t.TempDir())
	creds := rh.register(t)
	if creds.WorkerID == "" || creds.AuthToken == "" {
		t.Fatalf("creds = %+v", creds)
	}
	// A hub without open registration refuses a wrong code with 403.
	closed := hub.Config{DBPath: filepath.Join(t.TempDir(), "hub.db"), AdminToken: "a"}
	h, err := hub.Open(context.Background(), closed)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(func() { h.Close(context.Background()); srv.Close() })
	if _, err := Register(context.Background(), nil, srv.URL, false, "m", "WRONG-CODE"); !errors.Is(err, ErrPairingRejected) {
		t.Fatalf("Register with a wrong code = %v, want ErrPairingRejected", err)
	}
	if _, err := Register(context.Background(), nil, "http://studio.example.com", false, "m", "x"); !errors.Is(err, ErrInsecureURL) {
		t.Fatalf("Register over plain http to a remote host = %v, want ErrInsecureURL", err)
	}
}
