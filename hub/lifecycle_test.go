// lifecycle_test.go: a job from its lease to its end: a lease kept across a reconnect and lost
// after the grace, taken back through hello, ended when heartbeats stop listing the job,
// cancelled through the API, retried up to max_attempts, and a result stored once, each driven by
// a worker over a real socket.

package hub

import (
	"context"
	"strings"
	"testing"
	"time"

	"studioworker/protocol"
)

func TestLeaseKeptAcrossReconnect(t *testing.T) {
	for _, tc := range []struct {
		name             string
		inFlight, outbox bool
	}{{"in_flight", true, false}, {"outbox", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := startHub(t, nil)
			creds := e.register("a")
			a := e.connect(creds, hello(llmCaps, nil, nil))
			id := e.submit(llmJob("m1"))
			e.lease(a, id)
			a.drop()
			var inFlight, outbox []string
			if tc.inFlight {
				inFlight = []string{id}
			} else {
				outbox = []string{id}
			}
			a2 := e.connect(creds, hello(llmCaps, inFlight, outbox))
			info := e.waitJob(id, "running", statusIs(protocol.JobRunning))
			if info.WorkerID != creds.WorkerID || info.Attempts != 0 {
				t.Fatalf("info %+v", info)
			}
			if ack := a2.complete(id, `{"text":"x","finish_reason":"stop","usage":{"prompt_tokens":1,"completion_tokens":1}}`); ack.Status != protocol.AckStored {
				t.Fatalf("ack %+v", ack)
			}
		})
	}
}

func TestReconnectWithoutTheJobRequeuesIt(t *testing.T) {
	// A short retry cool-off: a2 is offered the job again once it has passed (cooloff_test.go).
	e := startHub(t, func(c *Config) { c.RetryCoolOff = 50 * time.Millisecond })
	creds := e.register("a")
	a := e.connect(creds, hello(llmCaps, nil, nil))
	id := e.submit(llmJob("m1"))
	e.lease(a, id)
	a.drop()
	a2 := e.connect(creds, hello(llmCaps, nil, nil))
	// Lost with attempts+1, and offered again (to a2, the only worker, after its cool-off).
	a2.offerFor(id)
	if info := e.waitJob(id, "offered", statusIs(protocol.JobOffered)); info.Attempts != 1 {
		t.Fatalf("attempts %d, want 1", info.Attempts)
	}
}

func TestLeaseLostAfterGraceGoesToAnotherWorker(t *testing.T) {
	e := startHub(t, func(c *Config) { c.LeaseGrace = 200 * time.Millisecond })
	credsA := e.register("a")
	a := e.connect(credsA, hello(llmCaps, nil, nil))
	id := e.submit(llmJob("m1"))
	e.lease(a, id)
	a.drop()
	b := e.connect(e.register("b"), hello(llmCaps, nil, nil))
	b.offerFor(id)
	b.send(protocol.Accept{JobID: id})
	if info := e.waitJob(id, "running", statusIs(protocol.JobRunning)); info.Attempts != 1 || info.WorkerID != b.creds.WorkerID {
		t.Fatalf("info %+v", info)
	}
	// a comes back still running it: the job is b's now.
	a2 := e.connect(credsA, hello(llmCaps, []string{id}, nil))
	if c := expect[protocol.Cancel](a2); c.JobID != id || c.Reason != protocol.CancelReassigned {
		t.Fatalf("got %+v, want cancel reassigned", c)
	}
	// And a result it sends anyway is rejected.
	if ack := a2.complete(id, `{"text":"late"}`); ack.Status != protocol.AckRejected {
		t.Fatalf("ack %+v", ack)
	}
}

func TestInFlightTakesBackAQueuedJob(t *testing.T) {
	e := startHub(t, func(c *Config) { c.LeaseGrace = 100 * time.Millisecond })
	creds := e.register("a")
	a := e.connect(creds, hello(llmCaps, nil, nil))
	id := e.submit(llmJob("m1"))
	e.lease(a, id)
	a.drop()
	e.waitJob(id, "queued after the grace", func(i protocol.JobInfo) bool { return i.Status == protocol.JobQueued && i.Attempts == 1 })
	// The lost lease started a's retry cool-off (30 s by default); taking a lease back is not an
	// offer, so the cool-off does not stand in its way.
	a2 := e.connect(creds, hello(llmCaps, []string{id}, nil))
	if info := e.waitJob(id, "running", statusIs(protocol.JobRunning)); info.WorkerID != creds.WorkerID {
		t.Fatalf("info %+v", info)
	}
	if ack := a2.complete(id, `{"text":"x"}`); ack.Status != protocol.AckStored {
		t.Fatalf("ack %+v", ack)
	}
}

// The contract: hello.in_flight naming a job that is still queued with no holder takes its lease
// back, even when the hub never read that worker's accept (lost with a restart of the hub).
func TestInFlightTakesBackAQueuedJobWithoutARecordedAccept(t *testing.T) {
	e := startHub(t, nil)
	id := e.submit(llmJob("m1"))
	e.waitJob(id, "queued", statusIs(protocol.JobQueued))
	creds := e.register("a")
	e.connect(creds, hello(llmCaps, []string{id}, nil))
	if info := e.waitJob(id, "running", statusIs(protocol.JobRunning)); info.WorkerID != creds.WorkerID {
		t.Fatalf("lease went to %q, want %q", info.WorkerID, creds.WorkerID)
	}
}

// hello.outbox naming a job the hub has queued (its accept was lost in a hub crash) takes the
// lease back, so the result that follows is stored instead of rejected.
func TestOutboxTakesBackAQueuedJobWithoutARecordedAccept(t *testing.T) {
	e := startHub(t, nil)
	id := e.submit(llmJob("m1"))
	e.waitJob(id, "queued", statusIs(protocol.JobQueued))
	creds := e.register("a")
	a := e.connect(creds, hello(llmCaps, nil, []string{id}))
	e.waitJob(id, "running", statusIs(protocol.JobRunning))
	if ack := a.complete(id, `{"text":"hi","finish_reason":"stop","usage":{"prompt_tokens":1,"completion_tokens":1}}`); ack.Status != protocol.AckStored {
		t.Fatalf("result after the take-back: %s, want stored", ack.Status)
	}
}

func TestInFlightCancelledMeanwhile(t *testing.T) {
	e := startHub(t, nil)
	creds := e.register("a")
	a := e.connect(creds, hello(llmCaps, nil, nil))
	id := e.submit(llmJob("m1"))
	e.lease(a, id)
	a.drop()
	if err := e.client.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	a2 := e.connect(creds, hello(llmCaps, []string{id}, nil))
	if c := expect[protocol.Cancel](a2); c.JobID != id || c.Reason != protocol.CancelCancelled {
		t.Fatalf("got %+v", c)
	}
}

// The contract: a job is leased while its worker lists it in running. A connected worker whose
// heartbeats stop listing a job it accepted has lost that run: the job goes back to the queue.
func TestLeaseEndsWhenHeartbeatsStopListingTheJob(t *testing.T) {
	e := startHub(t, nil)
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	id := e.submit(llmJob("m1"))
	e.lease(a, id)
	// Listed: the lease lives on however many heartbeats come.
	for range unlistedLimit + 1 {
		a.heartbeat(protocol.Status{State: protocol.StateBusy, Running: []string{id}})
	}
	if info := e.waitJob(id, "still running", statusIs(protocol.JobRunning)); info.Attempts != 0 {
		t.Fatalf("listed job lost its lease: %+v", info)
	}
	// Not listed: after unlistedLimit heartbeats the run is over, attempts+1.
	for range unlistedLimit {
		a.heartbeat(protocol.Status{State: protocol.StateIdle, Running: []string{}, Accepting: false})
	}
	info := e.waitJob(id, "requeued", func(i protocol.JobInfo) bool { return i.Attempts == 1 })
	if info.Status != protocol.JobQueued && info.Status != protocol.JobOffered {
		t.Fatalf("job after its lease ended: %+v", info)
	}
}

func TestCancelThroughTheAPIReachesTheWorker(t *testing.T) {
	e := startHub(t, nil)
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	id := e.submit(llmJob("m1"))
	e.lease(a, id)
	if err := e.client.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if c := expect[protocol.Cancel](a); c.JobID != id || c.Reason != protocol.CancelCancelled {
		t.Fatalf("got %+v", c)
	}
	if ack := a.complete(id, `{"text":"x"}`); ack.Status != protocol.AckRejected {
		t.Fatalf("result for a cancelled job: %+v", ack)
	}
	info := e.waitJob(id, "cancelled", statusIs(protocol.JobCancelled))
	if info.Result != nil {
		t.Fatalf("cancelled job has a result: %s", info.Result)
	}
	// Cancelling a finished job is refused; an unknown one is 404.
	if err := e.client.Cancel(context.Background(), "j-unknown"); apiStatus(t, err) != 404 {
		t.Fatalf("unknown: %v", err)
	}
	done := e.submit(llmJob("m1"))
	a.send(protocol.ReadyForMore{})
	a.offerFor(done)
	a.send(protocol.Accept{JobID: done})
	a.complete(done, `{"text":"x"}`)
	if err := e.client.Cancel(context.Background(), done); apiStatus(t, err) != 409 {
		t.Fatalf("completed: %v", err)
	}
}

func TestAttemptsGrowUntilMaxAttempts(t *testing.T) {
	// Each attempt's fail cools a off for a moment; the attempts count as without it.
	e := startHub(t, func(c *Config) { c.MaxAttempts, c.RetryCoolOff = 2, 50*time.Millisecond })
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	id := e.submit(llmJob("m1"))
	for attempt := 1; attempt <= 2; attempt++ {
		a.offerFor(id)
		a.send(protocol.Accept{JobID: id})
		a.send(protocol.Fail{JobID: id, Error: "backend down", Retryable: true})
		if ack := expect[protocol.FailAck](a); ack.JobID != id {
			t.Fatalf("fail_ack %+v", ack)
		}
		a.send(protocol.ReadyForMore{})
	}
	info := e.waitJob(id, "failed", statusIs(protocol.JobFailed))
	if info.Attempts != 2 || !strings.Contains(info.Error, "backend down") {
		t.Fatalf("info %+v", info)
	}
}

func TestNonRetryableFailEndsTheJob(t *testing.T) {
	e := startHub(t, nil)
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	id := e.submit(llmJob("m1"))
	a.offerFor(id)
	a.send(protocol.Accept{JobID: id})
	a.send(protocol.Fail{JobID: id, Error: "invalid input", Retryable: false})
	expect[protocol.FailAck](a)
	if info := e.waitJob(id, "failed", statusIs(protocol.JobFailed)); info.Attempts != 0 || info.Error != "invalid input" {
		t.Fatalf("info %+v", info)
	}
	// A fail for a job the worker does not hold is acked and changes nothing.
	a.send(protocol.Fail{JobID: "j-nothing", Error: "x", Retryable: true})
	if ack := expect[protocol.FailAck](a); ack.JobID != "j-nothing" {
		t.Fatalf("ack %+v", ack)
	}
}

func TestCompletionIsIdempotent(t *testing.T) {
	e := startHub(t, nil)
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	b := e.connect(e.register("b"), hello(caps(1, 24, map[protocol.Kind][]string{protocol.KindTTS: {"x"}}), nil, nil))
	id := e.submit(llmJob("m1"))
	a.offerFor(id)
	// b never accepted it.
	if ack := b.complete(id, `{"text":"forged"}`); ack.Status != protocol.AckRejected {
		t.Fatalf("b: %+v", ack)
	}
	a.send(protocol.Accept{JobID: id})
	if ack := a.complete(id, `{"text":"one"}`); ack.Status != protocol.AckStored {
		t.Fatalf("first: %+v", ack)
	}
	// The same result again, before and after the job left memory.
	for range 2 {
		if ack := a.complete(id, `{"text":"two"}`); ack.Status != protocol.AckDuplicate {
			t.Fatalf("again: %+v", ack)
		}
	}
	if info := e.waitJob(id, "completed", statusIs(protocol.JobCompleted)); string(info.Result) != `{"text":"one"}` {
		t.Fatalf("stored result changed: %s", info.Result)
	}
	if ack := a.complete("j-unknown", `{}`); ack.Status != protocol.AckRejected {
		t.Fatalf("unknown: %+v", ack)
	}
}

func TestResultFromAnEarlierAttemptWithdrawsTheOpenOffer(t *testing.T) {
	// With the job in hello.outbox the hub takes the lease back at once; without it, the result
	// itself withdraws the open offer. Either way b is told, and a's result is stored.
	for _, listed := range []bool{true, false} {
		t.Run(map[bool]string{true: "listed in outbox", false: "not listed"}[listed], func(t *testing.T) {
			e := startHub(t, func(c *Config) { c.LeaseGrace = 100 * time.Millisecond })
			credsA := e.register("a")
			a := e.connect(credsA, hello(llmCaps, nil, nil))
			id := e.submit(llmJob("m1"))
			e.lease(a, id)
			a.drop()
			e.waitJob(id, "requeued", func(i protocol.JobInfo) bool { return i.Status == protocol.JobQueued && i.Attempts == 1 })
			b := e.connect(e.register("b"), hello(llmCaps, nil, nil))
			b.offerFor(id) // an open offer is not holding
			var outbox []string
			if listed {
				outbox = []string{id}
			}
			// a comes back (serving nothing, so it is offered nothing) and delivers its result.
			a2 := e.connect(credsA, hello(caps(1, 24, map[protocol.Kind][]string{protocol.KindTTS: {"x"}}), nil, outbox))
			if ack := a2.complete(id, `{"text":"from a"}`); ack.Status != protocol.AckStored {
				t.Fatalf("ack %+v", ack)
			}
			if c := expect[protocol.Cancel](b); c.JobID != id || c.Reason != protocol.CancelCancelled {
				t.Fatalf("b got %+v", c)
			}
			b.send(protocol.Accept{JobID: id})
			if c := expect[protocol.Cancel](b); c.Reason != protocol.CancelExpired {
				t.Fatalf("late accept answered %+v", c)
			}
			if info := e.waitJob(id, "completed", statusIs(protocol.JobCompleted)); info.WorkerID != credsA.WorkerID || string(info.Result) != `{"text":"from a"}` {
				t.Fatalf("info %+v", info)
			}
		})
	}
}

// TestASubmitWhoseClientHangsUpIsStillOffered: the caller gives up while the write waits (issue
// 17: the row committed as queued, and the job was offered only after a restart, once 8 minutes
// later). Once its row commits, the job is in the queue whatever became of the caller.
func TestASubmitWhoseClientHangsUpIsStillOffered(t *testing.T) {
	e := startHub(t, nil)
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	a.heartbeat(protocol.Status{State: protocol.StateIdle, Accepting: true})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // gone before the commit
	_, _ = e.hub.submit(ctx, "j-hangup", llmJob("m1"), "", "")
	if c := a.offerFor("j-hangup"); c.JobID != "j-hangup" {
		t.Fatalf("offer %+v", c)
	}
}

// TestAJobRunsAtMostMaxAttemptsTimes: with the default max_attempts (3), a job whose every run
// fails retryably is offered and run exactly 3 times (contract §4: attempts grows with each run
// that ends without a result, the job fails when it reaches max_attempts), then reads failed with
// attempts 3 and is never offered again: the next offer is of a later job.
func TestAJobRunsAtMostMaxAttemptsTimes(t *testing.T) {
	e := startHub(t, func(c *Config) { c.RetryCoolOff = 20 * time.Millisecond })
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	id := e.submit(llmJob("m1"))
	for run := 1; run <= DefaultMaxAttempts; run++ {
		a.offerFor(id)
		a.send(protocol.Accept{JobID: id})
		a.send(protocol.Fail{JobID: id, Error: "out of memory", Retryable: true})
		expect[protocol.FailAck](a)
		a.send(protocol.ReadyForMore{})
		if run < DefaultMaxAttempts {
			e.waitJob(id, "queued again", func(i protocol.JobInfo) bool { return i.Attempts == run && !i.Status.Done() })
		}
	}
	info := e.waitJob(id, "failed", statusIs(protocol.JobFailed))
	if info.Attempts != DefaultMaxAttempts || !strings.Contains(info.Error, "out of memory") {
		t.Fatalf("info %+v", info)
	}
	later := e.submit(llmJob("m1"))
	a.offerFor(later) // not id: a failed job is offered to nobody
}
