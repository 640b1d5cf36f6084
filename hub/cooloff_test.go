// cooloff_test.go checks the retry cool-off (contract §6): a worker whose run of a job ended
// without a result — a retryable fail, a user's cancel, a lost lease — is not offered that job
// again for RetryCoolOff; another worker that can take it gets it, and with none the same worker
// gets it once the cool-off has passed. Everything is driven over real sockets.

package hub

import (
	"strings"
	"testing"
	"time"

	"studioworker/protocol"
)

// twoSlots lets a worker that still counts its failed run (no ready_for_more read yet) have room,
// so the hub could offer it the job at once: the cool-off, not a full slot, is what stops it.
var twoSlots = caps(2, 24, map[protocol.Kind][]string{protocol.KindLLM: {"m1"}})

// endRun ends worker a's run of job id the way one case says, and returns the connection of a's
// worker afterwards (a new one when the case reconnects).
type endRun func(e *env, a *testWorker, id string) *testWorker

func failWith(msg string) endRun {
	return func(e *env, a *testWorker, id string) *testWorker {
		a.send(protocol.Fail{JobID: id, Error: msg, Retryable: true})
		if ack := expect[protocol.FailAck](a); ack.JobID != id {
			e.t.Fatalf("fail_ack %+v", ack)
		}
		a.send(protocol.ReadyForMore{})
		return a
	}
}

var runEnds = []struct {
	name  string
	grace time.Duration // LeaseGrace of the hub
	end   endRun
}{
	{"retryable fail", time.Minute, failWith("backend down")},
	{"cancelled by the user", time.Minute, failWith("cancelled by the user")},
	{"lease lost after the grace", 100 * time.Millisecond, func(e *env, a *testWorker, id string) *testWorker {
		a.drop()
		e.waitJob(id, "requeued after the grace", func(i protocol.JobInfo) bool { return i.Attempts == 1 })
		return e.connect(a.creds, hello(twoSlots, nil, nil))
	}},
	{"came back without it", time.Minute, func(e *env, a *testWorker, id string) *testWorker {
		a.drop()
		return e.connect(a.creds, hello(twoSlots, nil, nil))
	}},
	{"heartbeats stop listing it", time.Minute, func(e *env, a *testWorker, id string) *testWorker {
		for range unlistedLimit {
			a.heartbeat(protocol.Status{State: protocol.StateIdle, Running: []string{}, Accepting: true})
		}
		return a
	}},
}

// TestRetryCoolOffPrefersAnotherWorker: within the cool-off the job goes to the other worker that
// can take it; once that one turns it down too, it waits for the cool-off instead of going back.
func TestRetryCoolOffPrefersAnotherWorker(t *testing.T) {
	for _, tc := range runEnds {
		t.Run(tc.name, func(t *testing.T) {
			e := startHub(t, func(c *Config) { c.RetryCoolOff, c.LeaseGrace = time.Minute, tc.grace })
			a := e.connect(e.register("a"), hello(twoSlots, nil, nil))
			id := e.submit(llmJob("m1"))
			e.lease(a, id)
			// b runs a job of its own too, so a (one run, served longer ago) would be the
			// scheduler's first choice for the job without the cool-off.
			b := e.connect(e.register("b"), hello(twoSlots, nil, nil))
			e.lease(b, e.submit(llmJob("m1")))

			a = tc.end(e, a, id)
			b.offerFor(id)
			if info := e.waitJob(id, "offered to b", statusIs(protocol.JobOffered)); info.Attempts != 1 {
				t.Fatalf("attempts %d after one lost run, want 1", info.Attempts)
			}
			// b turns it down for this attempt: a is the only worker left, and it still cools off.
			b.send(protocol.Decline{JobID: id, Reason: protocol.DeclineUser})
			e.waitJob(id, "waiting for a's cool-off", func(i protocol.JobInfo) bool {
				return i.Status == protocol.JobQueued && strings.Contains(i.Waiting, "1 cooling off after a failed run")
			})
			a.heartbeat(protocol.Status{State: protocol.StateIdle, Running: []string{}, Accepting: true})
			select {
			case f := <-a.frames:
				t.Fatalf("a got %T %+v within its cool-off", f, f)
			default:
			}
		})
	}
}

// TestRetryCoolOffThenTheSameWorker: with no other worker, the job goes back to the one whose run
// ended, once the cool-off has passed and not before; the heartbeat interval is long, so only the
// cool-off's own timer can have offered it that soon.
func TestRetryCoolOffThenTheSameWorker(t *testing.T) {
	const coolOff = 400 * time.Millisecond
	for _, tc := range runEnds {
		t.Run(tc.name, func(t *testing.T) {
			e := startHub(t, func(c *Config) {
				c.RetryCoolOff, c.LeaseGrace, c.HeartbeatInterval = coolOff, tc.grace, time.Minute
			})
			a := e.connect(e.register("a"), hello(twoSlots, nil, nil))
			id := e.submit(llmJob("m1"))
			e.lease(a, id)
			start := time.Now()
			a = tc.end(e, a, id)
			a.offerFor(id)
			if d := time.Since(start); d < coolOff {
				t.Fatalf("offered again %s after the run ended, within the %s cool-off", d, coolOff)
			}
			if info := e.waitJob(id, "offered", statusIs(protocol.JobOffered)); info.Attempts != 1 {
				t.Fatalf("attempts %d after one lost run, want 1", info.Attempts)
			}
		})
	}
}

// TestRetryCoolOffSpansAttempts: a worker that failed the job is kept from it while another one
// runs the next attempt, and both cool-offs hold at once; the attempts still end the job.
func TestRetryCoolOffSpansAttempts(t *testing.T) {
	e := startHub(t, func(c *Config) { c.RetryCoolOff, c.MaxAttempts = time.Minute, 3 })
	a := e.connect(e.register("a"), hello(twoSlots, nil, nil))
	id := e.submit(llmJob("m1"))
	e.lease(a, id)
	b := e.connect(e.register("b"), hello(twoSlots, nil, nil))
	e.lease(b, e.submit(llmJob("m1")))
	failWith("backend down")(e, a, id)
	e.lease(b, id)
	failWith("backend down")(e, b, id)
	info := e.waitJob(id, "waiting for two cool-offs", func(i protocol.JobInfo) bool {
		return i.Status == protocol.JobQueued && strings.Contains(i.Waiting, "2 cooling off after a failed run")
	})
	if info.Attempts != 2 {
		t.Fatalf("attempts %d, want 2", info.Attempts)
	}
	// A third worker takes the last attempt; its fail ends the job as before.
	c := e.connect(e.register("c"), hello(twoSlots, nil, nil))
	e.lease(c, id)
	c.send(protocol.Fail{JobID: id, Error: "backend down", Retryable: true})
	expect[protocol.FailAck](c)
	if info := e.waitJob(id, "failed", statusIs(protocol.JobFailed)); info.Attempts != 3 {
		t.Fatalf("attempts %d, want 3", info.Attempts)
	}
}
