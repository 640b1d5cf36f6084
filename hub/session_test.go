package hub

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"studioworker/protocol"
)

func TestJSONJobEndToEnd(t *testing.T) {
	e := startHub(t, nil)
	creds := e.register("gpu-1")
	w := e.connect(creds, hello(llmCaps, nil, nil))
	w.heartbeat(protocol.Status{State: protocol.StateIdle, Accepting: true})

	id := e.submit(llmJob("m1"))
	claim := w.offerFor(id)
	if claim.Kind != protocol.KindLLM || claim.Model != "m1" || string(claim.Input) != `{"prompt":"hi"}` {
		t.Fatalf("claim %+v", claim)
	}
	if claim.ExpiresAt.Location() != time.UTC || !claim.ExpiresAt.After(time.Now()) {
		t.Fatalf("expires_at %v: want a future UTC time", claim.ExpiresAt)
	}
	if info := e.waitJob(id, "offered", statusIs(protocol.JobOffered)); info.WorkerID != creds.WorkerID {
		t.Fatalf("offered to %q", info.WorkerID)
	}
	w.send(protocol.Accept{JobID: id})
	e.waitJob(id, "running", statusIs(protocol.JobRunning))
	w.send(protocol.Progress{JobID: id, Fraction: 0.5})
	if ack := w.complete(id, `{"text":"hello","finish_reason":"stop","usage":{"prompt_tokens":1,"completion_tokens":1}}`); ack.Status != protocol.AckStored {
		t.Fatalf("ack %+v", ack)
	}
	w.send(protocol.ReadyForMore{})
	info := e.waitJob(id, "completed", statusIs(protocol.JobCompleted))
	if info.WorkerID != creds.WorkerID || info.Attempts != 0 || info.Error != "" {
		t.Fatalf("info %+v", info)
	}
	var res protocol.LLMResult
	if err := json.Unmarshal(info.Result, &res); err != nil || res.Text != "hello" {
		t.Fatalf("result %s: %v", info.Result, err)
	}
	var sb strings.Builder
	ct, err := e.client.Result(context.Background(), id, &sb)
	if err != nil || ct != "application/json" || !strings.Contains(sb.String(), `"hello"`) {
		t.Fatalf("Result: %q %q %v", ct, sb.String(), err)
	}
	jobs, err := e.client.Jobs(context.Background())
	if err != nil || len(jobs) != 1 || jobs[0].JobID != id || jobs[0].Status != protocol.JobCompleted {
		t.Fatalf("Jobs: %+v %v", jobs, err)
	}
	workers, err := e.client.Workers(context.Background())
	if err != nil || len(workers) != 1 || !workers[0].Connected || workers[0].Name != "gpu-1" {
		t.Fatalf("Workers: %+v %v", workers, err)
	}
}

func TestOfferExpiryReoffersElsewhereAndLateAcceptIsCancelled(t *testing.T) {
	e := startHub(t, func(c *Config) { c.OfferTTL = 300 * time.Millisecond })
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	id := e.submit(llmJob("m1"))
	a.offerFor(id)
	b := e.connect(e.register("b"), hello(llmCaps, nil, nil))
	// a lets the offer expire; the hub offers it to b.
	b.offerFor(id)
	a.send(protocol.Accept{JobID: id})
	if c := expect[protocol.Cancel](a); c.JobID != id || c.Reason != protocol.CancelExpired {
		t.Fatalf("late accept answered with %+v", c)
	}
	b.send(protocol.Accept{JobID: id})
	if info := e.waitJob(id, "running", statusIs(protocol.JobRunning)); info.WorkerID != b.creds.WorkerID || info.Attempts != 0 {
		t.Fatalf("info %+v", info)
	}
}

func TestDeclinedAttemptIsNotOfferedAgain(t *testing.T) {
	e := startHub(t, nil)
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	first := e.submit(llmJob("m1"))
	a.offerFor(first)
	a.send(protocol.Decline{JobID: first, Reason: protocol.DeclineUser})
	e.waitJob(first, "queued", statusIs(protocol.JobQueued))
	// The next offer a gets is for a later job, never the one it declined.
	second := e.submit(llmJob("m1"))
	a.offerFor(second)
	// Another worker does get the declined one.
	b := e.connect(e.register("b"), hello(llmCaps, nil, nil))
	b.offerFor(first)
}

func TestSchedulingMatchesCapabilitiesVRAMAndSlots(t *testing.T) {
	e := startHub(t, nil)
	small := e.connect(e.register("small"), hello(caps(1, 8, map[protocol.Kind][]string{protocol.KindLLM: {"m1"}}), nil, nil))
	big := e.connect(e.register("big"), hello(caps(2, 48, map[protocol.Kind][]string{protocol.KindLLM: {"m1"}, protocol.KindImage: {"sd"}}), nil, nil))

	vram := 20.0
	heavy := llmJob("m1")
	heavy.VRAMGBEstimate = &vram
	hid := e.submit(heavy)
	big.offerFor(hid) // only big's threshold covers 20 GB
	iid := e.submit(imageJob("sd"))
	big.offerFor(iid) // only big serves image/sd; its second slot
	lid := e.submit(llmJob("m1"))
	small.offerFor(lid) // big has no free slot left (two open offers)
	other := e.submit(llmJob("unknown-model"))

	big.send(protocol.Accept{JobID: hid})
	big.send(protocol.Accept{JobID: iid})
	small.send(protocol.Accept{JobID: lid})
	e.waitJob(lid, "running", statusIs(protocol.JobRunning))
	// A fourth job waits: every slot is taken.
	fourth := e.submit(llmJob("m1"))
	if info := e.waitJob(fourth, "queued", statusIs(protocol.JobQueued)); info.WorkerID != "" {
		t.Fatalf("info %+v", info)
	}
	// small's job ends: its slot is free again and it gets the fourth.
	if ack := small.complete(lid, `{"text":"x","finish_reason":"stop","usage":{"prompt_tokens":1,"completion_tokens":1}}`); ack.Status != protocol.AckStored {
		t.Fatalf("ack %+v", ack)
	}
	small.send(protocol.ReadyForMore{})
	small.offerFor(fourth)
	if info := e.waitJob(other, "queued", statusIs(protocol.JobQueued)); info.Status != protocol.JobQueued {
		t.Fatal("a job for a model nobody serves was offered")
	}
}

func TestLongestIdleWorkerFirst(t *testing.T) {
	e := startHub(t, nil)
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	b := e.connect(e.register("b"), hello(llmCaps, nil, nil))
	// a has been idle longer (connected first): it gets the first job.
	j1 := e.submit(llmJob("m1"))
	a.offerFor(j1)
	a.send(protocol.Accept{JobID: j1})
	a.complete(j1, `{"text":"x","finish_reason":"stop","usage":{"prompt_tokens":1,"completion_tokens":1}}`)
	a.send(protocol.ReadyForMore{})
	e.waitJob(j1, "completed", statusIs(protocol.JobCompleted))
	// Now b has waited longest.
	j2 := e.submit(llmJob("m1"))
	b.offerFor(j2)
}

func TestNotAcceptingWorkerGetsNoOffers(t *testing.T) {
	e := startHub(t, nil)
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	a.heartbeat(protocol.Status{State: protocol.StatePaused, Accepting: false})
	id := e.submit(llmJob("m1"))
	e.waitJob(id, "queued", statusIs(protocol.JobQueued))
	a.heartbeat(protocol.Status{State: protocol.StatePaused, Accepting: false})
	select {
	case f := <-a.frames:
		t.Fatalf("a paused worker got %T %+v", f, f)
	default:
	}
	if info := e.waitJob(id, "queued", statusIs(protocol.JobQueued)); info.WorkerID != "" {
		t.Fatalf("info %+v", info)
	}
	a.heartbeat(protocol.Status{State: protocol.StateIdle, Accepting: true})
	a.offerFor(id)
}

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
	e := startHub(t, nil)
	creds := e.register("a")
	a := e.connect(creds, hello(llmCaps, nil, nil))
	id := e.submit(llmJob("m1"))
	e.lease(a, id)
	a.drop()
	a2 := e.connect(creds, hello(llmCaps, nil, nil))
	// Lost with attempts+1, and offered again (to a2, the only worker).
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
	a2 := e.connect(creds, hello(llmCaps, []string{id}, nil))
	if info := e.waitJob(id, "running", statusIs(protocol.JobRunning)); info.WorkerID != creds.WorkerID {
		t.Fatalf("info %+v", info)
	}
	if ack := a2.complete(id, `{"text":"x"}`); ack.Status != protocol.AckStored {
		t.Fatalf("ack %+v", ack)
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
	e := startHub(t, func(c *Config) { c.MaxAttempts = 2 })
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

func TestSecondConnectionSupersedesTheFirst(t *testing.T) {
	e := startHub(t, nil)
	creds := e.register("a")
	first := e.connect(creds, hello(llmCaps, nil, nil))
	id := e.submit(llmJob("m1"))
	e.lease(first, id)
	second := e.connect(creds, hello(llmCaps, []string{id}, nil))
	if er := expect[protocol.Error](first); er.Code != protocol.ErrCodeSuperseded {
		t.Fatalf("got %+v", er)
	}
	if code := first.closeStatus(); code != protocol.CloseSuperseded {
		t.Fatalf("close %d, want 4002", code)
	}
	// The lease moved to the new session, untouched.
	if info := e.waitJob(id, "running", statusIs(protocol.JobRunning)); info.Attempts != 0 {
		t.Fatalf("info %+v", info)
	}
	if ack := second.complete(id, `{"text":"x"}`); ack.Status != protocol.AckStored {
		t.Fatalf("ack %+v", ack)
	}
}

func TestLogBatchIsAcked(t *testing.T) {
	e := startHub(t, nil)
	creds := e.register("a")
	a := e.connect(creds, hello(llmCaps, nil, nil))
	a.send(protocol.LogBatch{Seq: 7, Entries: protocol.List[protocol.LogEntry]{
		{TS: time.Now().UTC(), Level: protocol.LevelInfo, Source: "engine", Message: "loaded model"},
	}})
	if ack := expect[protocol.LogAck](a); ack.Seq != 7 {
		t.Fatalf("ack %+v", ack)
	}
	req, _ := e.client.send(context.Background(), "GET", "/v1/workers/"+creds.WorkerID+"/logs", "", nil)
	defer req.Body.Close()
	var entries []protocol.LogEntry
	if err := json.NewDecoder(req.Body).Decode(&entries); err != nil || len(entries) != 1 || entries[0].Message != "loaded model" {
		t.Fatalf("logs %+v %v", entries, err)
	}
}

func TestUnknownFrameTypeIsIgnored(t *testing.T) {
	e := startHub(t, nil)
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	a.sendRaw([]byte(`{"type":"from_the_future","x":1}`))
	a.heartbeat(protocol.Status{State: protocol.StateIdle, Accepting: true})
	e.waitMetric("studio_hub_unknown_frames_total 1")
}

func TestMalformedFramesGetProtocolErrorAndClose(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame string
	}{
		{"not json", `{"type":`},
		{"missing field", `{"type":"accept"}`},
		{"null list", `{"type":"heartbeat","status":{"state":"idle","running":null,"accepting":true},"gpus":[]}`},
		{"hub frame from a worker", `{"type":"welcome","worker_id":"x","server_version":"y"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startHub(t, nil)
			a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
			a.sendRaw([]byte(tc.frame))
			if er := expect[protocol.Error](a); er.Code != protocol.ErrCodeProtocolError || er.Message == "" {
				t.Fatalf("got %+v", er)
			}
			if code := a.closeStatus(); code != websocket.StatusProtocolError {
				t.Fatalf("close %d, want 1002", code)
			}
		})
	}
	t.Run("first frame not hello", func(t *testing.T) {
		e := startHub(t, nil)
		a := e.connectRaw(e.register("a"))
		a.send(protocol.Heartbeat{Status: protocol.Status{State: protocol.StateIdle}})
		if er := expect[protocol.Error](a); er.Code != protocol.ErrCodeProtocolError {
			t.Fatalf("got %+v", er)
		}
		if code := a.closeStatus(); code != websocket.StatusProtocolError {
			t.Fatalf("close %d", code)
		}
	})
}

func TestOversizedFrameClosesWith1009(t *testing.T) {
	e := startHub(t, nil)
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	big := `{"type":"progress","job_id":"x","fraction":0.1,"message":"` + strings.Repeat("a", protocol.MaxFrameBytes) + `"}`
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	_ = a.ws.Write(ctx, websocket.MessageText, []byte(big)) // the hub may close before it is all written
	if code := a.closeStatus(); code != websocket.StatusMessageTooBig {
		t.Fatalf("close %d, want 1009", code)
	}
	e.waitMetric("studio_hub_frame_errors_total 1")
}

func TestWrongCredentialsAre401BeforeTheUpgrade(t *testing.T) {
	e := startHub(t, nil)
	creds := e.register("a")
	for _, tc := range []struct {
		name  string
		creds protocol.RegisterResponse
	}{
		{"unknown worker", protocol.RegisterResponse{WorkerID: "w-nobody", AuthToken: creds.AuthToken}},
		{"wrong token", protocol.RegisterResponse{WorkerID: creds.WorkerID, AuthToken: "wrong-token-value"}},
		{"no token", protocol.RegisterResponse{WorkerID: creds.WorkerID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, resp, err := e.dial(tc.creds)
			if err == nil || resp == nil || resp.StatusCode != 401 {
				t.Fatalf("dial: %v %v", err, resp)
			}
		})
	}
	if strings.Contains(e.logs.String(), creds.AuthToken) || strings.Contains(e.logs.String(), "wrong-token-value") {
		t.Fatal("a token appears in the log")
	}
}

func TestCloseSendsShuttingDown(t *testing.T) {
	e := startHub(t, nil)
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- e.hub.Close(ctx) }()
	if er := expect[protocol.Error](a); er.Code != protocol.ErrCodeShuttingDown {
		t.Fatalf("got %+v", er)
	}
	if code := a.closeStatus(); code != websocket.StatusServiceRestart {
		t.Fatalf("close %d, want 1012", code)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// A decline for a reason that passes (busy, paused, vram) keeps the job from that worker only for
// a cool-off: the only suitable worker gets it again after its next heartbeat, instead of the job
// waiting forever.
func TestBusyDeclineIsOfferedAgainAfterCoolOff(t *testing.T) {
	e := startHub(t, func(c *Config) { c.OfferTTL = 300 * time.Millisecond })
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	id := e.submit(llmJob("m1"))
	a.offerFor(id)
	a.send(protocol.Decline{JobID: id, Reason: protocol.DeclineBusy})
	e.waitJob(id, "queued", statusIs(protocol.JobQueued))
	// Heartbeats until the cool-off has passed; the hub then offers the same attempt again.
	// The heartbeats come from a goroutine (offerFor reads meanwhile), which ends before the test
	// does and writes directly: t.Fatal belongs to the test's own goroutine.
	hb, err := protocol.Encode(protocol.Heartbeat{Status: protocol.Status{State: protocol.StateIdle, Accepting: true}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	defer func() { close(done); wg.Wait() }()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if a.ws.Write(context.Background(), websocket.MessageText, hb) != nil {
					return
				}
			}
		}
	}()
	if c := a.offerFor(id); c.JobID != id {
		t.Fatalf("offer for %s, want %s", c.JobID, id)
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

// A job declined as `paused` goes back to that worker as soon as its heartbeats say it accepts
// again, without waiting for the cool-off.
func TestPausedDeclineEndsWhenTheWorkerResumes(t *testing.T) {
	e := startHub(t, func(c *Config) { c.OfferTTL = time.Minute })
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	id := e.submit(llmJob("m1"))
	a.offerFor(id)
	a.send(protocol.Decline{JobID: id, Reason: protocol.DeclinePaused})
	a.heartbeat(protocol.Status{State: protocol.StatePaused, Running: []string{}, Accepting: false})
	e.waitJob(id, "queued", statusIs(protocol.JobQueued))
	a.send(protocol.Heartbeat{Status: protocol.Status{State: protocol.StateIdle, Running: []string{}, Accepting: true}})
	if c := a.offerFor(id); c.JobID != id {
		t.Fatalf("offer for %s, want %s", c.JobID, id)
	}
}
