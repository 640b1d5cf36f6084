// waiting.go says, in one sentence, why a queued job is not offered yet (contract §6, "Why a job
// waits"): it reads the connected workers' capabilities and heartbeat state against the job and
// names the first rule that holds it back. It runs on a GET, so it changes nothing it reads and
// costs one pass over the workers; it must not know how the scheduler orders jobs, only the rules
// it shares with it (hasRoom, takesVRAM, declineMark.holds, job.coolingOff).

package hub

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"studioworker/protocol"
)

// waitingFor is the `waiting` sentence of job id, "" when it is not queued (or not in memory:
// finished jobs do not wait) or when nothing holds it back (it is about to be offered).
func (h *Hub) waitingFor(ctx context.Context, id string) string {
	h.mu.Lock()
	j := h.jobs[id]
	h.mu.Unlock()
	if j == nil && h.cluster != nil {
		// A replica holds no queued job in memory: read it, and what keeps it from whom, from
		// the database; the sentence is about the workers connected to this replica.
		j = h.queuedElsewhere(ctx, id)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if j == nil || j.status != protocol.JobQueued {
		return ""
	}
	return h.waiting(j, h.now())
}

// holdBack is why one worker that could run a job is not offered it now.
type holdBack int

const (
	holdNone holdBack = iota // free: it is offered the job at the next scheduling pass
	holdBusy
	holdPaused
	holdDraining
	holdYielding
	holdCooling  // it declined this attempt for a reason that passes; offered again after a cool-off
	holdDeclined // it declined this attempt for good (unsupported, user)
	holdRetry    // its run of the job ended without a result; offered again after the retry cool-off
	holdKinds    // the number of kinds above
)

// waitTally gathers what one pass over the connected workers learns about a job.
type waitTally struct {
	connected   int
	runKind     int
	runModel    int
	bestLimitGB float64 // the highest vram_threshold_gb among the workers that run the model but are below the need
	anyGPU      bool    // one of those lists a GPU
	capable     int     // run the model and take the VRAM
	held        [holdKinds]int
	only        hold      // what holds the only capable worker, when it is a decline or a cool-off
	soonest     time.Time // the earliest end of a cool-off (after a decline or a run) among the capable workers
}

// hold is what keeps one capable worker from a job, with the decline or the retry cool-off behind
// it when there is one.
type hold struct {
	why     holdBack
	decline declineMark
	retry   retryMark
}

// until is when the hold ends, zero when nothing but the worker itself can end it.
func (d hold) until() time.Time {
	switch d.why {
	case holdCooling:
		return d.decline.until
	case holdRetry:
		return d.retry.until
	}
	return time.Time{}
}

// waiting explains why j (queued) waits; h.mu is held.
func (h *Hub) waiting(j *job, now time.Time) string {
	var t waitTally
	want := queueKey{j.kind, j.model}
	for _, w := range h.workers {
		if w.conn == nil {
			continue
		}
		t.connected++
		runsKind, runsModel := false, false
		for _, k := range w.keys {
			if k.kind == j.kind {
				runsKind = true
				if k == want {
					runsModel = true
					break
				}
			}
		}
		if !runsKind {
			continue
		}
		t.runKind++
		if !runsModel {
			continue
		}
		t.runModel++
		if !w.takesVRAM(j.vram) {
			t.bestLimitGB = max(t.bestLimitGB, w.caps.VRAMThresholdGB)
			t.anyGPU = t.anyGPU || len(w.caps.GPUs) > 0 || w.caps.VRAMTotalGB > 0 || len(w.gpus) > 0
			continue
		}
		t.capable++
		d := holdOf(j, w, now)
		t.held[d.why]++
		if u := d.until(); !u.IsZero() && (t.soonest.IsZero() || u.Before(t.soonest)) {
			t.soonest = u
		}
		t.only = d
	}
	return t.sentence(j, now)
}

// holdOf is what keeps a worker that runs j's model and takes its VRAM from being offered it:
// its state first (the reason it is not accepting), then a full slot, then its own decline of
// this attempt, then the retry cool-off after its run of an earlier one.
func holdOf(j *job, w *worker, now time.Time) hold {
	switch w.state {
	case protocol.StatePaused:
		return hold{why: holdPaused}
	case protocol.StateDraining:
		return hold{why: holdDraining}
	case protocol.StateYielding:
		return hold{why: holdYielding}
	}
	if !w.hasRoom() {
		return hold{why: holdBusy}
	}
	if mark, ok := j.declined[w.id]; ok && mark.holds(w, now) {
		if mark.until.Equal(farFuture) {
			return hold{why: holdDeclined, decline: mark}
		}
		return hold{why: holdCooling, decline: mark}
	}
	if m, ok := j.coolingOff(w.id, now); ok {
		return hold{why: holdRetry, retry: m}
	}
	return hold{why: holdNone}
}

func (t *waitTally) sentence(j *job, now time.Time) string {
	model := strconv.Quote(j.model)
	switch {
	case t.connected == 0:
		return "no worker is connected"
	case t.runKind == 0:
		return fmt.Sprintf("no connected worker offers kind %s", j.kind)
	case t.runModel == 0:
		return fmt.Sprintf("no connected worker offers model %s for kind %s", model, j.kind)
	case t.capable == 0:
		need := "needs " + gbUp(j.vram) + " GB of VRAM; "
		if !t.anyGPU && t.bestLimitGB <= 0 {
			return need + fmt.Sprintf("no connected worker that offers model %s for kind %s has a GPU", model, j.kind)
		}
		return need + fmt.Sprintf("the most any connected worker that offers model %s for kind %s takes is %s GB",
			model, j.kind, gbDown(t.bestLimitGB))
	case t.held[holdNone] > 0:
		return "" // a worker has room for it: the next scheduling pass offers it
	case t.capable == 1:
		return "the only connected worker that can take it " + t.onlyHold(now)
	}
	parts := make([]string, 0, holdKinds)
	for _, p := range []struct {
		why   holdBack
		words string
	}{
		{holdBusy, "busy"},
		{holdPaused, "paused"},
		{holdDraining, "finishing, then pausing"},
		{holdYielding, "yielding the GPU to their users"},
		{holdCooling, "declined it for now"},
		{holdDeclined, "declined it for this attempt"},
		{holdRetry, "cooling off after a failed run"},
	} {
		if n := t.held[p.why]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, p.words))
		}
	}
	s := fmt.Sprintf("none of the %d connected workers that can take it has room: %s", t.capable, strings.Join(parts, ", "))
	if !t.soonest.IsZero() {
		s += fmt.Sprintf("; it is offered again after a cool-off, in %s", secondsLeft(t.soonest.Sub(now)))
	}
	return s
}

// onlyHold finishes "the only connected worker that can take it …".
func (t *waitTally) onlyHold(now time.Time) string {
	switch {
	case t.held[holdBusy] > 0:
		return "is busy"
	case t.held[holdPaused] > 0:
		return "is paused"
	case t.held[holdDraining] > 0:
		return "is finishing its jobs, then pausing"
	case t.held[holdYielding] > 0:
		return "is yielding the GPU to its user"
	case t.held[holdRetry] > 0:
		did := "failed it (retryable)"
		if t.only.retry.lost {
			did = "lost its lease on it"
		}
		return did + fmt.Sprintf("; it is offered to it again after a cool-off, in %s", secondsLeft(t.only.until().Sub(now)))
	}
	did := fmt.Sprintf("declined it (%s)", t.only.decline.reason)
	if t.only.decline.reason == protocol.DeclineExpired {
		did = "let the offer expire"
	}
	if t.held[holdDeclined] > 0 {
		return did + " and is not offered it again in this attempt"
	}
	return did + fmt.Sprintf("; it is offered again after a cool-off, in %s", secondsLeft(t.only.until().Sub(now)))
}

// gbUp and gbDown write GB with at most one decimal, rounding a need up and a limit down, so that
// a sentence never reads "needs 24 GB; the most … takes is 24 GB". The slack keeps a figure that
// is already one decimal (0.7 is 7.000000000000001 tenths) from moving.
func gbUp(gb float64) string {
	return strconv.FormatFloat(math.Ceil(gb*10-1e-9)/10, 'f', -1, 64)
}

func gbDown(gb float64) string {
	return strconv.FormatFloat(math.Floor(gb*10+1e-9)/10, 'f', -1, 64)
}

// secondsLeft is a cool-off's remainder, "8 s", never below 1 s while one holds.
func secondsLeft(d time.Duration) string {
	return fmt.Sprintf("%d s", max(1, int(math.Ceil(d.Seconds()))))
}
