// cluster_test.go: replicas on one real PostgreSQL database, in this process, each on its own
// listener: a job submitted to one runs on a worker of another; a worker's newer connection on
// another replica supersedes the older one and keeps its lease; a cancel and a result reach the
// job wherever it is driven; a result is stored once; a decline holds on every replica. Processes
// killed mid-load are cmd/studio-hub's test.

package hub

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"studioworker/internal/pgtest"
	"studioworker/protocol"
)

// startReplicas runs n hubs on one fresh database and one data folder.
func startReplicas(t *testing.T, n int, mutate func(*Config)) []*env {
	t.Helper()
	pg := testPG
	if pg == nil {
		pg = pgtest.Start(t)
	}
	url := pg.NewDatabase(t)
	data := filepath.Join(t.TempDir(), "data")
	var out []*env
	for i := range n {
		logs := &lockedBuffer{}
		cfg := Config{
			PostgresURL:      url,
			DataDir:          data,
			OpenRegistration: true,
			AdminToken:       "admin-secret-token",
			Logger:           slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("replica", i),
		}
		if mutate != nil {
			mutate(&cfg)
		}
		out = append(out, startHubWith(t, cfg, logs))
	}
	return out
}

func TestAJobSubmittedToOneReplicaRunsOnAWorkerOfAnother(t *testing.T) {
	r := startReplicas(t, 3, nil)
	creds := r[0].register("w")
	w := r[2].connect(creds, hello(llmCaps, nil, nil))
	id := r[1].submit(llmJob("m1"))
	c := w.offerFor(id)
	w.send(protocol.Accept{JobID: c.JobID})
	if ack := w.complete(id, `{"text":"across"}`); ack.Status != protocol.AckStored {
		t.Fatalf("ack %+v", ack)
	}
	for _, e := range r {
		if info := e.waitJob(id, "completed", statusIs(protocol.JobCompleted)); string(info.Result) != `{"text":"across"}` || info.WorkerID != creds.WorkerID {
			t.Fatalf("replica sees %+v", info)
		}
	}
	// The same result again, through another replica: answered duplicate, stored once.
	w2 := r[0].connect(creds, hello(llmCaps, nil, []string{id}))
	if ack := w2.complete(id, `{"text":"again"}`); ack.Status != protocol.AckDuplicate {
		t.Fatalf("the second send through another replica: %+v, want duplicate", ack)
	}
	if info := r[1].waitJob(id, "completed", statusIs(protocol.JobCompleted)); string(info.Result) != `{"text":"across"}` {
		t.Fatalf("stored twice: %+v", info)
	}
}

func TestANewerConnectionOnAnotherReplicaSupersedesAndKeepsTheLease(t *testing.T) {
	r := startReplicas(t, 2, nil)
	creds := r[0].register("w")
	a := r[0].connect(creds, hello(llmCaps, nil, nil))
	id := r[0].submit(llmJob("m1"))
	r[0].lease(a, id)

	b := r[1].connect(creds, hello(llmCaps, []string{id}, nil))
	if e := expect[protocol.Error](a); e.Code != protocol.ErrCodeSuperseded {
		t.Fatalf("the older session on the other replica got %+v, want superseded", e)
	}
	if code := a.closeStatus(); code != protocol.CloseSuperseded {
		t.Fatalf("close %d, want %d", code, protocol.CloseSuperseded)
	}
	if ack := b.complete(id, `{"text":"kept"}`); ack.Status != protocol.AckStored {
		t.Fatalf("the lease did not follow the worker to the other replica: %+v", ack)
	}
	if info := r[0].waitJob(id, "completed", statusIs(protocol.JobCompleted)); info.Attempts != 0 {
		t.Fatalf("%+v", info)
	}
}

func TestACancelReachesTheWorkerOnAnotherReplica(t *testing.T) {
	r := startReplicas(t, 2, nil)
	creds := r[0].register("w")
	w := r[1].connect(creds, hello(llmCaps, nil, nil))
	id := r[1].submit(llmJob("m1"))
	r[1].lease(w, id)
	if err := r[0].client.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if c := expect[protocol.Cancel](w); c.JobID != id || c.Reason != protocol.CancelCancelled {
		t.Fatalf("%+v", c)
	}
	if ack := w.complete(id, `{"text":"late"}`); ack.Status != protocol.AckRejected {
		t.Fatalf("a result after the cancel: %+v, want rejected", ack)
	}
	r[1].waitJob(id, "cancelled", statusIs(protocol.JobCancelled))
}

// TestADeclineHoldsOnEveryReplica: a worker that declined a job for good is not offered it again
// when it connects to another replica, and another worker there gets it.
func TestADeclineHoldsOnEveryReplica(t *testing.T) {
	r := startReplicas(t, 2, nil)
	ca, cb := r[0].register("a"), r[0].register("b")
	a := r[0].connect(ca, hello(llmCaps, nil, nil))
	id := r[0].submit(llmJob("m1"))
	a.offerFor(id)
	a.send(protocol.Decline{JobID: id, Reason: protocol.DeclineUnsupported})
	a.close()
	a2 := r[1].connect(ca, hello(llmCaps, nil, nil))
	b := r[1].connect(cb, hello(llmCaps, nil, nil))
	if c := b.offerFor(id); c.JobID != id {
		t.Fatal(c)
	}
	select {
	case f := <-a2.frames:
		if o, ok := f.(protocol.Offer); ok && o.Claim.JobID == id {
			t.Fatalf("the worker that declined it for good was offered it again on the other replica")
		}
	case <-time.After(300 * time.Millisecond): // nothing for it: what the decline says
	}
}

// TestAResultUploadedToAnotherReplicaIsStored: the upload lands on a replica that does not drive
// the job (a load balancer sends each request anywhere).
func TestAResultUploadedToAnotherReplicaIsStored(t *testing.T) {
	r := startReplicas(t, 2, nil)
	creds := r[0].register("w")
	w := r[0].connect(creds, hello(llmCaps, nil, nil))
	id := r[0].submit(imageJob("sd"))
	r[0].lease(w, id)
	png := []byte("an image")
	if code, body := r[1].upload(creds, id, uploadParts{ext: "png", sha: sha(png), file: png}); code != 200 || !strings.Contains(body, `"stored"`) {
		t.Fatalf("upload through the other replica: %d %s", code, body)
	}
	if info := r[0].waitJob(id, "completed", statusIs(protocol.JobCompleted)); info.ResultURL == "" {
		t.Fatalf("%+v", info)
	}
	if code, body := r[0].upload(creds, id, uploadParts{ext: "png", sha: sha(png), file: png}); code != 200 || !strings.Contains(body, `"duplicate"`) {
		t.Fatalf("the same upload again through the first replica: %d %s, want duplicate", code, body)
	}
}
