// waiting_test.go checks the `waiting` sentence of GET /v1/jobs/{id} (contract §6) for each reason
// a queued job really waits, against a real hub over real HTTP and WebSocket; it must not reach
// into the hub's state to build a situation that a worker could not create over the wire.
package hub

import (
	"testing"
	"time"

	"studioworker/protocol"
)

func TestWaitingSaysWhyAJobWaits(t *testing.T) {
	m1 := map[protocol.Kind][]string{protocol.KindLLM: {"m1"}}
	vramJob := func(model string, gb float64) protocol.JobRequest {
		r := llmJob(model)
		r.VRAMGBEstimate = &gb
		return r
	}
	paused := protocol.Status{State: protocol.StatePaused, Running: []string{}, Accepting: false}
	for _, tc := range []struct {
		name string
		// setup connects workers and submits the job whose waiting sentence is checked.
		setup func(e *env) string
		want  string
	}{
		{"no worker connected", func(e *env) string {
			return e.submit(llmJob("m1"))
		}, "no worker is connected"},
		{"a worker that left is not connected", func(e *env) string {
			w := e.connect(e.register("gone"), hello(llmCaps, nil, nil))
			w.close()
			e.waitWorkers("the worker to leave", func(ws []protocol.WorkerInfo) bool { return len(ws) == 1 && !ws[0].Connected })
			return e.submit(llmJob("m1"))
		}, "no worker is connected"},
		{"no worker runs the kind", func(e *env) string {
			e.connect(e.register("a"), hello(llmCaps, nil, nil))
			return e.submit(protocol.JobRequest{Kind: protocol.KindTTS, Model: "m1", Input: protocol.Object(`{"text":"hi"}`)})
		}, "no connected worker offers kind tts"},
		{"no worker offers the model", func(e *env) string {
			e.connect(e.register("a"), hello(llmCaps, nil, nil))
			return e.submit(llmJob("x"))
		}, `no connected worker offers model "x" for kind llm`},
		{"VRAM, and no worker has a GPU", func(e *env) string {
			e.connect(e.register("cpu-only"), hello(caps(1, 0, m1), nil, nil))
			return e.submit(vramJob("m1", 8))
		}, `needs 8 GB of VRAM; no connected worker that offers model "m1" for kind llm has a GPU`},
		{"VRAM: the most any worker takes", func(e *env) string {
			e.connect(e.register("small"), hello(caps(1, 4, m1), nil, nil))
			e.connect(e.register("medium"), hello(caps(1, 7.96, m1), nil, nil))
			big := caps(1, 48, map[protocol.Kind][]string{protocol.KindLLM: {"other"}}) // not this model: not counted
			e.connect(e.register("big"), hello(big, nil, nil))
			return e.submit(vramJob("m1", 23.41))
		}, `needs 23.5 GB of VRAM; the most any connected worker that offers model "m1" for kind llm takes is 7.9 GB`},
		{"VRAM: a creator's limit without a GPU seen counts", func(e *env) string {
			c := caps(1, 0, m1)
			c.VRAMThresholdGB = 6
			e.connect(e.register("rocm"), hello(c, nil, nil))
			return e.submit(vramJob("m1", 8))
		}, `needs 8 GB of VRAM; the most any connected worker that offers model "m1" for kind llm takes is 6 GB`},
		{"the only capable worker is busy", func(e *env) string {
			w := e.connect(e.register("a"), hello(llmCaps, nil, nil))
			e.lease(w, e.submit(llmJob("m1")))
			return e.submit(llmJob("m1"))
		}, "the only connected worker that can take it is busy"},
		{"the only capable worker is paused", func(e *env) string {
			w := e.connect(e.register("a"), hello(llmCaps, nil, nil))
			w.heartbeat(paused)
			return e.submit(llmJob("m1"))
		}, "the only connected worker that can take it is paused"},
		{"the only capable worker is draining", func(e *env) string {
			w := e.connect(e.register("a"), hello(llmCaps, nil, nil))
			w.heartbeat(protocol.Status{State: protocol.StateDraining, Running: []string{}, Accepting: false})
			return e.submit(llmJob("m1"))
		}, "the only connected worker that can take it is finishing its jobs, then pausing"},
		{"the only capable worker is yielding", func(e *env) string {
			w := e.connect(e.register("a"), hello(llmCaps, nil, nil))
			w.heartbeat(protocol.Status{State: protocol.StateYielding, Running: []string{}, Accepting: false})
			return e.submit(llmJob("m1"))
		}, "the only connected worker that can take it is yielding the GPU to its user"},
		{"the only capable worker declined it: cool-off", func(e *env) string {
			w := e.connect(e.register("a"), hello(llmCaps, nil, nil))
			id := e.submit(llmJob("m1"))
			w.offerFor(id)
			w.send(protocol.Decline{JobID: id, Reason: protocol.DeclineVRAM})
			return id
		}, "the only connected worker that can take it declined it (vram); it is offered again after a cool-off, in 10 s"},
		{"the only capable worker declined it for this attempt", func(e *env) string {
			w := e.connect(e.register("a"), hello(llmCaps, nil, nil))
			id := e.submit(llmJob("m1"))
			w.offerFor(id)
			w.send(protocol.Decline{JobID: id, Reason: protocol.DeclineUser})
			return id
		}, "the only connected worker that can take it declined it (user) and is not offered it again in this attempt"},
		{"the only capable worker failed it: retry cool-off", func(e *env) string {
			w := e.connect(e.register("a"), hello(llmCaps, nil, nil))
			id := e.submit(llmJob("m1"))
			e.lease(w, id)
			failWith("cancelled by the user")(e, w, id)
			return id
		}, "the only connected worker that can take it failed it (retryable); it is offered to it again after a cool-off, in 30 s"},
		{"the only capable worker lost its lease: retry cool-off", func(e *env) string {
			creds := e.register("a")
			w := e.connect(creds, hello(llmCaps, nil, nil))
			id := e.submit(llmJob("m1"))
			e.lease(w, id)
			w.drop()
			e.connect(creds, hello(llmCaps, nil, nil)) // without the job: its lease is lost
			return id
		}, "the only connected worker that can take it lost its lease on it; it is offered to it again after a cool-off, in 30 s"},
		{"several capable workers, one cooling off after a failed run", func(e *env) string {
			a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
			id := e.submit(llmJob("m1"))
			e.lease(a, id)
			b := e.connect(e.register("b"), hello(llmCaps, nil, nil))
			e.lease(b, e.submit(llmJob("m1")))
			failWith("backend down")(e, a, id)
			return id
		}, "none of the 2 connected workers that can take it has room: 1 busy, 1 cooling off after a failed run; it is offered again after a cool-off, in 30 s"},
		{"several capable workers, none with room", func(e *env) string {
			a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
			a.heartbeat(paused)
			b := e.connect(e.register("b"), hello(llmCaps, nil, nil))
			e.lease(b, e.submit(llmJob("m1")))
			c := e.connect(e.register("c"), hello(llmCaps, nil, nil))
			id := e.submit(llmJob("m1"))
			c.offerFor(id)
			c.send(protocol.Decline{JobID: id, Reason: protocol.DeclineExpired})
			return id
		}, "none of the 3 connected workers that can take it has room: 1 busy, 1 paused, 1 declined it for now; it is offered again after a cool-off, in 10 s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A clock that stands still: cool-offs never end and the seconds left are exact.
			frozen := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
			e := startHub(t, func(c *Config) { c.Now = func() time.Time { return frozen } })
			id := tc.setup(e)
			got := e.waitJob(id, "waiting "+tc.want, func(i protocol.JobInfo) bool {
				return i.Status == protocol.JobQueued && i.Waiting == tc.want
			})
			if got.WorkerID != "" {
				t.Errorf("a waiting job names worker %q", got.WorkerID)
			}
		})
	}
}

// TestWaitingGoesOnceTheJobMoves: the sentence is for a queued job only; once a worker that can
// take it arrives, the job is offered and no longer says it waits.
func TestWaitingGoesOnceTheJobMoves(t *testing.T) {
	e := startHub(t, nil)
	id := e.submit(llmJob("m1"))
	e.waitJob(id, "waiting for a worker", func(i protocol.JobInfo) bool { return i.Waiting == "no worker is connected" })
	w := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	e.lease(w, id)
	if info, err := e.client.Job(t.Context(), id); err != nil || info.Waiting != "" {
		t.Fatalf("a running job: waiting %q (err %v), want none", info.Waiting, err)
	}
}

// waitWorkers polls GET /v1/workers until ok accepts the list.
func (e *env) waitWorkers(what string, ok func([]protocol.WorkerInfo) bool) {
	e.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		ws, err := e.client.Workers(e.t.Context())
		if err != nil {
			e.t.Fatalf("Workers: %v", err)
		}
		if ok(ws) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("never saw %s; last: %+v", what, ws)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for an event
	}
}
