// ledger.go is the worker's book of jobs: the slot each taken job holds from admission to its
// end (given back only by its lease, lease.go), the offers waiting for the creator, and the
// thumbnails of image results until their end is recorded. It must not know about the wire.

package app

import (
	"os"
	"path/filepath"
	"time"

	"studioworker/protocol"
)

// ledger is the Worker's book of jobs. Its fields are guarded by Worker.mu, because admission
// reads them together with the mode's flags in one step.
type ledger struct {
	slots   map[string]*slot         // job id -> a job taken at an offer, until its lease ends
	pending map[string]*pendingOffer // job id -> an offer waiting for the creator, until its deadline
	thumbs  map[string]keptResult    // job id -> what is kept of its result (thumbs.go), until its end is recorded
	// cancelled is the jobs the creator cancelled here, declined when offered again; the
	// oldest are forgotten past maxCancelledKept.
	cancelled map[string]time.Time
	// lastRelease is when a slot was last given back: an older GPU sample still counts the
	// memory its job held.
	lastRelease time.Time
}

func newLedger() ledger {
	return ledger{slots: map[string]*slot{}, pending: map[string]*pendingOffer{}, thumbs: map[string]keptResult{},
		cancelled: map[string]time.Time{}}
}

// maxCancelledKept bounds the jobs remembered as cancelled by the creator. A job the Studio
// still has comes back within minutes; one that old is long gone.
const maxCancelledKept = 256

// noteCancelled remembers that the creator cancelled a job here. Caller holds Worker.mu.
func (l *ledger) noteCancelled(jobID string, now time.Time) {
	if len(l.cancelled) >= maxCancelledKept {
		oldest, at := "", now
		for id, t := range l.cancelled {
			if t.Before(at) || oldest == "" {
				oldest, at = id, t
			}
		}
		delete(l.cancelled, oldest)
	}
	l.cancelled[jobID] = now
}

// slot is a job the worker has taken: accepted and not yet ended.
type slot struct {
	claim protocol.Claim
	gpu   int
	// vramMB is what admission counted the job as needing on gpu (AdmissionNeedMB): its
	// estimate, less what its model held already in its backend.
	vramMB  int64
	started time.Time
}

// pendingOffer is an offer waiting for the user.
type pendingOffer struct {
	claim  protocol.Claim
	decide chan bool // true = accept; buffered 1
}

func (w *Worker) thumbDir() string {
	if w.opts.ConfigPath == "" {
		return filepath.Join(os.TempDir(), "studio-worker-thumbs")
	}
	return filepath.Join(filepath.Dir(w.opts.ConfigPath), "thumbs")
}

// release frees a job's slot and finishes a drain when it was the last one. The caller publishes
// the new mode together with its own change (the job's end, the offer's outcome).
func (w *Worker) release(jobID string) {
	w.mu.Lock()
	if _, ok := w.slots[jobID]; ok {
		w.lastRelease = w.now()
	}
	delete(w.slots, jobID)
	finishDrain := w.drainReq && len(w.slots) == 0
	if finishDrain {
		w.drainReq = false
		w.cfg.Paused = true
	}
	w.mu.Unlock()
	if finishDrain {
		w.log.Info("the last job finished: paused", "source", "worker")
		_ = w.persist() // persist logs a failure; the pause holds in memory regardless
	}
	w.updateSimulatedUse()
}

// jobProgress shows a running job's progress; the session has throttled it already.
func (w *Worker) jobProgress(jobID string, f float64, msg string) {
	w.update(func(s *State) {
		for i := range s.Running {
			if s.Running[i].JobID == jobID {
				s.Running[i].Fraction, s.Running[i].Message = f, msg
			}
		}
	})
}
