// session_test.go: hello, heartbeats, offers decided by the handler, jobs completed, hub cancels.

package session

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"studioworker/protocol"
)

func TestHelloWelcomeAndHeartbeats(t *testing.T) {
	hub := newScriptHub(t)
	h := newTestHandler()
	s := newSession(t, testConfig(t, hub.srv.URL), h)
	startRun(t, s)
	c := hub.next(t)

	if !c.protocolOK {
		t.Error("the worker did not negotiate the studio-worker.v1 subprotocol")
	}
	if c.hello.Protocol != protocol.Version || c.hello.AgentVersion != "test" || c.hello.Capabilities.Engine != "synthetic" {
		t.Errorf("hello = %+v", c.hello)
	}
	if c.hello.InFlight == nil || c.hello.Outbox == nil || len(c.hello.InFlight)+len(c.hello.Outbox) != 0 {
		t.Errorf("hello lists = in_flight %v outbox %v, want [] and []", c.hello.InFlight, c.hello.Outbox)
	}
	h.waitEvent(t, "connected", connState(ConnConnected))

	hb := c.expect(t, protocol.TypeHeartbeat).(protocol.Heartbeat)
	if hb.Capabilities != nil {
		t.Error("a heartbeat repeated capabilities that did not change since hello")
	}
	if hb.Status.State != protocol.StateIdle || hb.Status.Running == nil || len(hb.Status.Running) != 0 || len(hb.GPUs) != 1 {
		t.Errorf("heartbeat = %+v", hb)
	}
	// Changed capabilities go out once, in the next heartbeat only.
	h.setCaps(func(c *protocol.Capabilities) { c.SupportedModels = append(c.SupportedModels, "new-model") })
	var withCaps, after int
	for range 6 {
		hb := c.expect(t, protocol.TypeHeartbeat).(protocol.Heartbeat)
		switch {
		case hb.Capabilities != nil && withCaps == 0:
			withCaps++
			if !slices.Contains(hb.Capabilities.SupportedModels, "new-model") {
				t.Errorf("heartbeat capabilities = %+v", hb.Capabilities)
			}
		case hb.Capabilities != nil:
			t.Fatal("capabilities sent twice for one change")
		case withCaps > 0:
			after++
		}
	}
	if withCaps != 1 || after == 0 {
		t.Fatalf("heartbeats with capabilities: %d, after: %d", withCaps, after)
	}
}

func TestAcceptedJSONJobIsCompletedThenReadyForMore(t *testing.T) {
	hub := newScriptHub(t)
	h := newTestHandler()
	release := make(chan struct{})
	h.setRun(func(ctx context.Context, j Job, progress func(float64, string)) (Result, error) {
		<-release
		return defaultRun(ctx, j, progress)
	})
	s := newSession(t, testConfig(t, hub.srv.URL), h)
	startRun(t, s)
	c := hub.next(t)

	c.send(protocol.Offer{Claim: claim("job-1", protocol.KindLLM)})
	if a := c.expect(t, protocol.TypeAccept, protocol.TypeDecline); a != (protocol.Accept{JobID: "job-1"}) {
		t.Fatalf("answer = %#v, want accept", a)
	}
	// While it runs, heartbeats list the real job id.
	for {
		hb := c.expect(t, protocol.TypeHeartbeat).(protocol.Heartbeat)
		if slices.Equal(hb.Status.Running, []string{"job-1"}) {
			break
		}
	}
	if got := s.Running(); !slices.Equal(got, []string{"job-1"}) {
		t.Fatalf("Running() = %v", got)
	}
	close(release)
	cj := c.expect(t, protocol.TypeCompleteJSON).(protocol.CompleteJSON)
	var res protocol.LLMResult
	if err := json.Unmarshal(cj.Result, &res); err != nil || cj.JobID != "job-1" || res.Text != "done job-1" {
		t.Fatalf("complete_json = %+v (%v)", cj, err)
	}
	c.expect(t, protocol.TypeReadyForMore)
	if s.OutboxLen() != 1 {
		t.Fatalf("OutboxLen = %d before the ack, want 1", s.OutboxLen())
	}
	c.send(protocol.CompleteAck{JobID: "job-1", Status: protocol.AckStored})
	h.waitEvent(t, "delivered", func(e Event) bool { d, ok := e.(DeliveredEvent); return ok && d.JobID == "job-1" })
	if s.OutboxLen() != 0 {
		t.Fatalf("OutboxLen = %d after the ack", s.OutboxLen())
	}
	// Every step reached the Handler, in order.
	var kinds []string
	for _, e := range h.eventsOf(func(e Event) bool { _, isConn := e.(ConnEvent); return !isConn }) {
		switch e := e.(type) {
		case OfferEvent:
			kinds = append(kinds, "offer")
		case OfferResolvedEvent:
			if e.Accepted {
				kinds = append(kinds, "accepted")
			}
		case JobStartedEvent:
			kinds = append(kinds, "started")
		case JobEndedEvent:
			if e.Err != nil {
				t.Errorf("job ended with %v", e.Err)
			}
			kinds = append(kinds, "ended")
		case DeliveredEvent:
			kinds = append(kinds, "delivered")
		}
	}
	if want := []string{"offer", "accepted", "started", "ended", "delivered"}; !slices.Equal(kinds, want) {
		t.Fatalf("events = %v, want %v", kinds, want)
	}
}

func TestOffersAreDecidedByTheHandler(t *testing.T) {
	hub := newScriptHub(t)
	h := newTestHandler()
	h.setOffer(func(ctx context.Context, c protocol.Claim) (bool, protocol.DeclineReason) {
		switch c.JobID {
		case "vram":
			return false, protocol.DeclineVRAM
		case "busy":
			return false, protocol.DeclineBusy
		case "no-reason":
			return false, ""
		case "waits":
			<-ctx.Done() // the user never answers: the offer expires
			return false, protocol.DeclineUser
		case "late-accept":
			<-ctx.Done()
			return true, ""
		}
		return true, ""
	})
	s := newSession(t, testConfig(t, hub.srv.URL), h)
	startRun(t, s)
	c := hub.next(t)

	tests := []struct {
		id     string
		expiry time.Duration
		want   protocol.DeclineReason
	}{
		{"vram", 10 * time.Second, protocol.DeclineVRAM},
		{"busy", 10 * time.Second, protocol.DeclineBusy},
		{"no-reason", 10 * time.Second, protocol.DeclineBusy},
		{"waits", 100 * time.Millisecond, protocol.DeclineExpired},
		{"late-accept", 100 * time.Millisecond, protocol.DeclineExpired},
		{"already-expired", -time.Second, protocol.DeclineExpired},
	}
	for _, tt := range tests {
		cl := claim(tt.id, protocol.KindLLM)
		cl.ExpiresAt = time.Now().Add(tt.expiry).UTC()
		c.send(protocol.Offer{Claim: cl})
		got := c.expect(t, protocol.TypeAccept, protocol.TypeDecline)
		if got != (protocol.Decline{JobID: tt.id, Reason: tt.want}) {
			t.Errorf("%s: answer = %#v, want decline %s", tt.id, got, tt.want)
		}
	}
	offers, runs := h.counts()
	if offers != 5 {
		t.Errorf("the Handler was asked %d times, want 5 (not for the offer that arrived expired)", offers)
	}
	// The late accept's lease is released, not run: whatever it reserved is given back.
	if runs != 0 {
		t.Errorf("Run called %d times, want 0", runs)
	}
	if ends := h.leaseEnds(t); len(ends) != 1 || ends["late-accept"] != "released" {
		t.Errorf("leases = %v, want only late-accept, released", ends)
	}
	if len(s.Running()) != 0 {
		t.Errorf("Running = %v", s.Running())
	}
}

func TestHubCancelStopsTheJobAndNothingMoreIsReported(t *testing.T) {
	hub := newScriptHub(t)
	h := newTestHandler()
	started := make(chan struct{})
	h.setRun(func(ctx context.Context, j Job, progress func(float64, string)) (Result, error) {
		close(started)
		progress(0.1, "working")
		<-ctx.Done()
		progress(0.9, "still working?") // after cancel: must not reach the hub
		return Result{}, ctx.Err()
	})
	s := newSession(t, testConfig(t, hub.srv.URL), h)
	startRun(t, s)
	c := hub.next(t)
	c.send(protocol.Offer{Claim: claim("job-c", protocol.KindLLM)})
	c.expect(t, protocol.TypeAccept)
	<-started
	c.expect(t, protocol.TypeProgress)
	c.send(protocol.Cancel{JobID: "job-c", Reason: protocol.CancelCancelled})
	c.expect(t, protocol.TypeReadyForMore)
	ended := h.waitEvent(t, "job ended", func(e Event) bool { _, ok := e.(JobEndedEvent); return ok }).(JobEndedEvent)
	if !ended.Cancelled {
		t.Errorf("JobEndedEvent = %+v, want Cancelled", ended)
	}
	h.waitEvent(t, "cancel event", func(e Event) bool {
		ce, ok := e.(CancelEvent)
		return ok && ce.JobID == "job-c" && ce.Reason == protocol.CancelCancelled
	})
	// A heartbeat after ready_for_more shows the job gone; nothing else was sent for it.
	for {
		hb := c.expect(t, protocol.TypeHeartbeat).(protocol.Heartbeat)
		if len(hb.Status.Running) == 0 {
			break
		}
	}
	progressSeen := 0
	for _, f := range c.all() {
		switch f := f.(type) {
		case protocol.Fail, protocol.CompleteJSON:
			t.Errorf("sent %#v for a cancelled job", f)
		case protocol.Progress:
			progressSeen++
			if f.Fraction > 0.5 {
				t.Errorf("progress after cancel: %+v", f)
			}
		}
	}
	if s.OutboxLen() != 0 {
		t.Errorf("OutboxLen = %d", s.OutboxLen())
	}
}

func TestHubCancelWhileTheOfferIsBeingDecided(t *testing.T) {
	hub := newScriptHub(t)
	h := newTestHandler()
	asked := make(chan struct{})
	decided := make(chan error, 1)
	h.setOffer(func(ctx context.Context, c protocol.Claim) (bool, protocol.DeclineReason) {
		close(asked)
		<-ctx.Done()
		decided <- ctx.Err()
		return true, ""
	})
	s := newSession(t, testConfig(t, hub.srv.URL), h)
	startRun(t, s)
	c := hub.next(t)
	c.send(protocol.Offer{Claim: claim("job-d", protocol.KindLLM)})
	<-asked
	c.send(protocol.Cancel{JobID: "job-d", Reason: protocol.CancelCancelled})
	select {
	case err := <-decided:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("offer ctx ended with %v, want cancelled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the hub's cancel did not cancel the offer's context")
	}
	h.waitEvent(t, "offer resolved", func(e Event) bool { _, ok := e.(OfferResolvedEvent); return ok })
	// Prove the read loop is still serving, then check that nothing was answered for the offer.
	h.setOffer(nil)
	c.send(protocol.Offer{Claim: claim("job-e", protocol.KindLLM)})
	if a := c.expect(t, protocol.TypeAccept, protocol.TypeDecline); a != (protocol.Accept{JobID: "job-e"}) {
		t.Fatalf("answer = %#v, want accept of job-e", a)
	}
	for _, f := range c.all() {
		switch f := f.(type) {
		case protocol.Accept, protocol.Decline:
			if f != (protocol.Accept{JobID: "job-e"}) {
				t.Errorf("answered a withdrawn offer: %#v", f)
			}
		}
	}
}
