// recovery_test.go: a restart on the same database keeps queued jobs queued and leased jobs
// leased for the grace, so a worker that comes back in time still delivers its result.

package hub

import (
	"context"
	"testing"
	"time"

	"studioworker/protocol"
)

func TestRestartKeepsQueuedAndLeasedJobs(t *testing.T) {
	logs := &lockedBuffer{}
	dir := t.TempDir()
	cfg := Config{OpenRegistration: true, AdminToken: "admin"}
	useTestDB(t, &cfg, dir)
	h, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, hub: h, cfg: cfg, logs: logs}
	e.srv = newServer(h)
	e.client = &Client{BaseURL: e.srv.URL, AdminToken: "admin"}
	creds := e.register("a")
	a := e.connect(creds, hello(llmCaps, nil, nil))
	leased := e.submit(llmJob("m1"))
	e.lease(a, leased)
	queued := e.submit(llmJob("other-model"))
	e.stop()
	a.drop()

	e2 := startHubWith(t, cfg, logs)
	if info := e2.waitJob(queued, "queued", statusIs(protocol.JobQueued)); info.Attempts != 0 {
		t.Fatalf("queued: %+v", info)
	}
	if info := e2.waitJob(leased, "running", statusIs(protocol.JobRunning)); info.WorkerID != creds.WorkerID {
		t.Fatalf("leased: %+v", info)
	}
	// The worker comes back within the grace and keeps its lease.
	a2 := e2.connect(creds, hello(llmCaps, []string{leased}, nil))
	if ack := a2.complete(leased, `{"text":"x"}`); ack.Status != protocol.AckStored {
		t.Fatalf("ack %+v", ack)
	}
}

// TestCancelAfterCloseAnswers: between Close and the HTTP server's shutdown an admin call can
// still arrive; it must get an error, not wait forever on the hub's lock (the closed store
// answered the callback on the caller's goroutine, which holds it).
func TestCancelAfterCloseAnswers(t *testing.T) {
	e := startHub(t, nil)
	id := e.submit(llmJob("m1"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.hub.Close(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := e.hub.Cancel(ctx, id); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("cancel after Close succeeded, want the store's error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Cancel after Close did not return: the hub is deadlocked")
	}
}
