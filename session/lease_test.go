// lease_test.go: every lease is run or released exactly once.

package session

import (
	"context"
	"testing"
	"time"

	"studioworker/protocol"
)

// TestEveryLeaseEndsOnce: a job the Handler took is run, or released when it cannot run — the hub
// withdrew the offer while the Handler decided, the session stopped meanwhile — and never both,
// never twice, never a Run with a dead context.
func TestEveryLeaseEndsOnce(t *testing.T) {
	hub := newScriptHub(t)
	h := newTestHandler()
	deciding := make(chan string, 4)
	answer := make(chan struct{})
	h.setOffer(func(ctx context.Context, c protocol.Claim) (bool, protocol.DeclineReason) {
		if c.JobID == "runs" {
			return true, ""
		}
		deciding <- c.JobID
		<-answer // the user takes their time
		return true, ""
	})
	h.setRun(func(ctx context.Context, j Job, progress func(float64, string)) (Result, error) {
		if ctx.Err() != nil {
			t.Errorf("Run of %s with a dead context", j.Claim.JobID)
		}
		return defaultRun(ctx, j, progress)
	})
	s := newSession(t, testConfig(t, hub.srv.URL), h)
	r := startRun(t, s)
	c := hub.next(t)

	c.send(protocol.Offer{Claim: claim("runs", protocol.KindLLM)})
	c.expect(t, protocol.TypeAccept)
	c.expect(t, protocol.TypeCompleteJSON)

	c.send(protocol.Offer{Claim: claim("withdrawn", protocol.KindLLM)})
	if id := <-deciding; id != "withdrawn" {
		t.Fatalf("deciding %s", id)
	}
	c.send(protocol.Cancel{JobID: "withdrawn", Reason: protocol.CancelCancelled})
	h.waitEvent(t, "the cancel", func(e Event) bool { ce, ok := e.(CancelEvent); return ok && ce.JobID == "withdrawn" })
	answer <- struct{}{}
	h.waitEvent(t, "the withdrawn offer resolved", func(e Event) bool {
		o, ok := e.(OfferResolvedEvent)
		return ok && o.JobID == "withdrawn" && !o.Accepted
	})

	c.send(protocol.Offer{Claim: claim("stopping", protocol.KindLLM)})
	if id := <-deciding; id != "stopping" {
		t.Fatalf("deciding %s", id)
	}
	r.cancel() // the session stops while the user looks at the offer
	close(answer)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}

	want := map[string]string{"runs": "run", "withdrawn": "released", "stopping": "released"}
	got := h.leaseEnds(t)
	for id, how := range want {
		if got[id] != how {
			t.Errorf("lease of %s ended %q, want %q (all: %v)", id, got[id], how, got)
		}
	}
}
