// lease.go is the worker's side of session.Lease: a job this worker took at an offer, owned from
// admission to its end. Its slot is taken in admit and given back in exactly one place, when the
// lease is run to its end or released. It must not know about the wire: the session decides which
// of the two happens.

package app

import (
	"context"
	"sync"

	"studioworker/engine"
	"studioworker/protocol"
	"studioworker/session"
)

// jobLease is an accepted offer's job; admit has already put its slot in w.slots.
type jobLease struct {
	w     *Worker
	claim protocol.Claim
	once  sync.Once
}

func (w *Worker) newLease(claim protocol.Claim) *jobLease { return &jobLease{w: w, claim: claim} }

// end gives the slot back, once, whichever way the job ended.
func (l *jobLease) end() { l.once.Do(func() { l.w.release(l.claim.JobID) }) }

// Release implements session.Lease: the job will not run after all.
func (l *jobLease) Release() { l.end() }

// Run implements session.Lease: the job runs on the engine router.
func (l *jobLease) Run(ctx context.Context, job session.Job, progress func(float64, string)) (session.Result, error) {
	defer l.end()
	w := l.w
	ej := engine.Job{
		ID: job.Claim.JobID, Kind: job.Claim.Kind, Model: job.Claim.Model,
		Input: job.Claim.Input, InputFile: job.InputFile, SpoolDir: job.SpoolDir,
	}
	res, err := w.engines().Run(ctx, ej, progress)
	if err != nil {
		return session.Result{}, err
	}
	if res.File != "" {
		// Before the session has the file: once the hub acknowledges it, it is gone.
		if kept := w.keepResult(job.Claim, res.File); kept != (keptResult{}) {
			w.mu.Lock()
			w.thumbs[job.Claim.JobID] = kept
			w.mu.Unlock()
		}
	}
	return session.Result{JSON: res.JSON, File: res.File, Ext: res.Ext, Prompt: res.Prompt, SHA256: res.SHA256}, nil
}

// keepResult keeps what the window shows of a result: a thumbnail and a preview of an image, a
// copy of speech to be played. What cannot be kept is only logged: the job goes on.
func (w *Worker) keepResult(c protocol.Claim, file string) keptResult {
	var k keptResult
	var err error
	switch c.Kind {
	case protocol.KindImage:
		if k.Thumb, err = makeThumbnail(file, w.thumbDir(), c.JobID); err == nil {
			k.Preview, err = makePreview(file, w.thumbDir(), c.JobID)
		}
	case protocol.KindTTS:
		k.Media, err = keepMedia(file, w.thumbDir(), c.JobID)
	}
	if err != nil {
		w.log.Debug("the window keeps no copy of this result", "source", "worker", "job_id", c.JobID, "err", err)
	}
	return k
}
