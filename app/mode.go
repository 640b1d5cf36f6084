// mode.go derives what the worker is doing (idle, busy, paused, draining, yielding) and its
// words from the flags, and is the State's one writer: every change goes through update, which
// publishes it with the mode derived in the same step.

package app

import (
	"fmt"
	"sort"

	"studioworker/gpu"
	"studioworker/protocol"
)

func (w *Worker) maxJobsLocked(snap gpu.Snapshot) int {
	if w.cfg.MaxConcurrentJobs > 0 {
		return w.cfg.MaxConcurrentJobs
	}
	if n := len(snap.Devices); n > 0 {
		return n
	}
	return 1
}

// acceptingLocked says whether the worker takes offers in mode: working or idle with a slot free;
// w.mu is held.
func (w *Worker) acceptingLocked(mode protocol.WorkerState, snap gpu.Snapshot) bool {
	return (mode == protocol.StateIdle || mode == protocol.StateBusy) && len(w.slots) < w.maxJobsLocked(snap)
}

// modeLocked derives the worker state and its reason in words from the flags; w.mu is held.
func (w *Worker) modeLocked() (protocol.WorkerState, string) {
	switch {
	case w.cfg.Paused:
		if n := len(w.slots); n > 0 {
			return protocol.StatePaused, fmt.Sprintf("Paused: finishing %d running job(s), taking no new ones", n)
		}
		return protocol.StatePaused, "Paused by you"
	case w.shuttingDown || w.drainReq:
		return protocol.StateDraining, w.drainReasonLocked()
	case w.yield.Yielding:
		return protocol.StateYielding, fmt.Sprintf("Paused while %s uses the GPU — resumes by itself", w.yield.Process)
	case len(w.slots) > 0:
		return protocol.StateBusy, "Working for the Studio"
	}
	return protocol.StateIdle, w.idleReasonLocked()
}

func (w *Worker) drainReasonLocked() string {
	ids := make([]string, 0, len(w.slots))
	for id := range w.slots {
		ids = append(ids, shortID(id))
	}
	sort.Strings(ids)
	verb := "pausing"
	if w.shuttingDown {
		verb = "stopping"
	}
	if len(ids) == 0 {
		return "Finishing, then " + verb
	}
	return fmt.Sprintf("Finishing job %s, then %s", joinWords(ids), verb)
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8] + "…"
	}
	return id
}

func joinWords(ws []string) string {
	switch len(ws) {
	case 0:
		return ""
	case 1:
		return ws[0]
	}
	return fmt.Sprintf("%s and %d more", ws[0], len(ws)-1)
}

// applyMode copies the derived mode into a State; w.mu is held or the worker is not shared yet.
func (w *Worker) applyMode(s *State) {
	s.Mode, s.ModeReason = w.modeLocked()
	s.Paused = w.cfg.Paused
	s.Draining = w.drainReq || w.shuttingDown
	s.AutoAccept = w.cfg.AutoAccept
	s.YieldedTo = ""
	if w.yield.Yielding {
		s.YieldedTo = w.yield.Process
	}
}

// publishMode recomputes the mode into the State.
func (w *Worker) publishMode() { w.update(nil) }

// update changes the State with fn (may be nil) and the derived mode in one publication, so that a
// window never sees a job listed under the wrong mode ("Idle" with a job running).
func (w *Worker) update(fn func(*State)) {
	snap := w.mon.Latest()
	w.publish.Lock()
	defer w.publish.Unlock()
	w.mu.Lock()
	var tmp State
	w.applyMode(&tmp)
	accepting := w.acceptingLocked(tmp.Mode, snap)
	changed := tmp.Mode != w.lastMode || accepting != w.lastAccepting
	w.lastMode, w.lastAccepting = tmp.Mode, accepting
	sess := w.sess
	w.mu.Unlock()
	if changed && sess != nil {
		sess.StatusChanged() // the hub should know now whether to offer, not at the next heartbeat
	}
	w.obs.Update(func(s *State) { // the one call: see publish
		if fn != nil {
			fn(s)
		}
		s.Mode, s.ModeReason, s.Paused, s.Draining, s.AutoAccept, s.YieldedTo = tmp.Mode, tmp.ModeReason, tmp.Paused, tmp.Draining, tmp.AutoAccept, tmp.YieldedTo
	})
}
