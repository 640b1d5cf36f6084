// cancel_test.go: a job the creator cancels here goes back to the Studio and is not taken here
// again when the hub offers it anew (issue 18 finding 3: on Resume the same worker took it back).

package app

import (
	"context"
	"testing"
	"time"

	"studioworker/hub"
	"studioworker/protocol"
)

func TestJobCancelledHereIsDeclinedWhenOfferedAgain(t *testing.T) {
	// A short cool-off: with no other worker, the hub offers the job back here soon after.
	env := newTestEnvWith(t, nil, func(c *hub.Config) { c.RetryCoolOff = 100 * time.Millisecond })
	id := env.submit(protocol.KindVideo, `{"prompt":"p","width":32,"height":32,"frames":4,"fps":4,"duration_ms":20000}`)
	env.waitState("running", func(s State) bool { return len(s.Running) == 1 })
	if err := env.client.CancelJob(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	env.waitState("the cancel recorded", func(s State) bool {
		return len(s.Recent) == 1 && s.Recent[0].Status == "cancelled" && len(s.Running) == 0
	})
	// The hub offers it again (it still has attempts left); this worker says no, with the reason
	// that says the creator chose, and takes nothing.
	st := env.waitState("the re-offer declined", func(s State) bool { return s.Counters.Declined[string(DeclineUser)] > 0 })
	if len(st.Running) != 0 {
		t.Fatalf("the cancelled job runs here again: %+v", st.Running)
	}
	info, err := env.admin.Job(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if info.Status == protocol.JobRunning || info.Attempts != 1 {
		t.Fatalf("job after the re-offer: %+v, want it back in the queue with its one attempt", info)
	}

	// Another job is still taken: only the cancelled one is refused.
	other := env.submit(protocol.KindLLM, `{"prompt":"hi"}`)
	if got := env.wait(other); got.Status != protocol.JobCompleted {
		t.Fatalf("the next job: %+v", got)
	}
}

func TestAdmitDeclinesAJobCancelledHere(t *testing.T) {
	got := Admit(AdmissionInput{CancelledHere: true, AutoAccept: true, MaxConcurrent: 1, Kind: "llm",
		Supported: map[string][]string{"llm": {"*"}}})
	if got.Decision != DeclineUser {
		t.Fatalf("Admit = %+v, want %q", got, DeclineUser)
	}
}
