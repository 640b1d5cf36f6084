// scheduler_test.go: which worker is offered which job, and when: capabilities, VRAM and slots,
// the least loaded and least recently served worker first, an offer that expires, and declines
// with and without a cool-off, against a real hub over real sockets.

package hub

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"studioworker/protocol"
)

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
