// jobs.go takes each offer from the hub to its end: the Handler's decision, the accept or decline,
// the job's Lease run (or released), its result or fail put in the outbox before anything is sent,
// cancels from the hub, and the progress throttle shared by the wire and the Handler.

package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"studioworker/internal/durable"
	"studioworker/protocol"
)

// userCancelMessage is the fail error of a job the user cancelled on the worker.
const userCancelMessage = "cancelled by the user" // spec §6, word for word: a hub may match it

// offerD is an offer the Handler is deciding.
type offerD struct {
	conn         *conn
	cancel       context.CancelFunc
	hubCancelled bool // guarded by Session.mu
}

// job is an accepted job, from accept until its end is recorded.
type job struct {
	claim  protocol.Claim
	lease  Lease // called once: Run, or Release when the job does not run
	ctx    context.Context
	cancel context.CancelFunc
	dir    string

	hubCancelled  atomic.Bool // cancel frame: nothing more is reported
	userCancelled atomic.Bool // Session.CancelJob: reported as a retryable fail
	prog          *throttle
}

// silent reports whether nothing more may be sent for the job.
func (j *job) silent() bool { return j.hubCancelled.Load() }

func (s *Session) onOffer(c *conn, claim protocol.Claim) {
	s.emit(OfferEvent{Claim: claim})
	s.mu.Lock()
	if s.jobs[claim.JobID] != nil || s.offers[claim.JobID] != nil || s.runCtx == nil {
		s.mu.Unlock()
		s.log.Warn("offer for a job already taken or being decided: ignored", "job_id", claim.JobID)
		return
	}
	if !time.Now().Before(claim.ExpiresAt) {
		s.mu.Unlock()
		s.log.Info("offer arrived expired", "job_id", claim.JobID, "expires_at", claim.ExpiresAt)
		_ = c.write(protocol.Decline{JobID: claim.JobID, Reason: protocol.DeclineExpired})
		s.emit(OfferResolvedEvent{JobID: claim.JobID, Reason: protocol.DeclineExpired})
		return
	}
	octx, cancel := context.WithDeadline(c.ctx, claim.ExpiresAt)
	stop := context.AfterFunc(s.runCtx, cancel)
	o := &offerD{conn: c, cancel: func() { stop(); cancel() }}
	s.offers[claim.JobID] = o
	s.wg.Add(1)
	s.mu.Unlock()
	go s.decide(c, claim, octx, o)
}

// decide asks the Handler, answers the hub and, on accept, runs the job on the same goroutine:
// offer → Handler → accept → Lease.Run without another hop. A lease that will not run is
// released here, once.
func (s *Session) decide(c *conn, claim protocol.Claim, octx context.Context, o *offerD) {
	defer s.wg.Done()
	defer o.cancel()
	lease, reason := s.h.Offer(octx, claim)
	accept := lease != nil
	expired := !time.Now().Before(claim.ExpiresAt)

	s.mu.Lock()
	if s.offers[claim.JobID] == o {
		delete(s.offers, claim.JobID)
	}
	hubCancelled := o.hubCancelled
	var j *job
	if accept && !hubCancelled && !expired && octx.Err() == nil && s.runCtx.Err() == nil && s.jobs[claim.JobID] == nil {
		jctx, jcancel := context.WithCancel(s.runCtx)
		j = &job{claim: claim, lease: lease, ctx: jctx, cancel: jcancel, dir: filepath.Join(s.jobsDir, safeName(claim.JobID))}
		s.jobs[claim.JobID] = j
	}
	s.mu.Unlock()

	if j == nil {
		if accept {
			lease.Release()
		}
		sent := protocol.DeclineReason("")
		switch {
		case hubCancelled || c.ctx.Err() != nil:
			// Withdrawn by the hub, or the connection is gone: nothing to answer.
		case expired:
			sent = protocol.DeclineExpired
		case accept:
			sent = protocol.DeclineBusy // the session is stopping
		default:
			sent = validReason(reason)
		}
		if sent != "" {
			_ = c.write(protocol.Decline{JobID: claim.JobID, Reason: sent})
		}
		s.emit(OfferResolvedEvent{JobID: claim.JobID, Reason: sent})
		return
	}
	if err := c.write(protocol.Accept{JobID: claim.JobID}); err != nil {
		s.mu.Lock()
		delete(s.jobs, claim.JobID)
		s.mu.Unlock()
		j.cancel()
		lease.Release()
		s.log.Warn("accept not sent", "job_id", claim.JobID, "err", err)
		s.emit(OfferResolvedEvent{JobID: claim.JobID})
		return
	}
	s.emit(OfferResolvedEvent{JobID: claim.JobID, Accepted: true})
	s.runJob(j)
}

func validReason(r protocol.DeclineReason) protocol.DeclineReason {
	switch r {
	case protocol.DeclineBusy, protocol.DeclinePaused, protocol.DeclineVRAM, protocol.DeclineUnsupported,
		protocol.DeclineUser, protocol.DeclineExpired:
		return r
	}
	return protocol.DeclineBusy
}

// runJob downloads the input, runs the job and records its end.
func (s *Session) runJob(j *job) {
	claim := j.claim
	j.prog = &throttle{s: s, j: j, interval: s.cfg.ProgressInterval}
	start := time.Now()
	input := ""
	var err error
	// The job folder is made only where something is written into it for sure: a binary
	// result, a downloaded input. Making and removing it for every JSON job was two journaled
	// changes of the jobs folder per job; an engine that wants it then makes it (Job.SpoolDir).
	if claim.Kind.BinaryResult() || claim.InputURL != "" {
		if err = os.MkdirAll(j.dir, 0o700); err != nil {
			err = fmt.Errorf("job folder: %w", err)
		}
	}
	if err == nil && claim.InputURL != "" {
		input, err = s.download(j.ctx, j)
	}
	if err != nil {
		s.note(slog.LevelWarn, claim.JobID, "job not run", "err", err)
		j.lease.Release()
		s.finish(j, Result{}, err, start)
		return
	}
	s.emit(JobStartedEvent{Claim: claim})
	res, err := j.lease.Run(j.ctx, Job{Claim: claim, InputFile: input, SpoolDir: j.dir}, j.prog.report)
	s.finish(j, res, err, start)
}

// finish records a job's end: its result or fail is written to the outbox before anything is
// sent, then it is delivered and ready_for_more tells the hub the slot is free, then the entry is
// flushed to disk (a file result is flushed before its upload).
func (s *Session) finish(j *job, res Result, runErr error, start time.Time) {
	id, claim := j.claim.JobID, j.claim
	ended := JobEndedEvent{JobID: id, Kind: claim.Kind, Model: claim.Model, Duration: time.Since(start)}

	var entry *outboxMeta
	file := ""
	switch {
	case j.silent():
		ended.Cancelled, ended.Err = true, runErr
	case runErr != nil:
		msg, retryable := runErr.Error(), retryableOf(runErr)
		switch {
		case j.userCancelled.Load():
			msg, retryable, ended.Cancelled = userCancelMessage, true, true
		case s.stopping() && j.ctx.Err() != nil:
			msg, retryable = "the worker shut down during the job: "+msg, true
		}
		ended.Err, ended.Retryable = runErr, retryable
		m := failMeta(id, claim.Kind, msg, retryable)
		entry = &m
	case claim.Kind.BinaryResult():
		f, ext, err := s.checkResultFile(j, res)
		if err != nil {
			ended.Err, ended.Retryable = err, true
			m := failMeta(id, claim.Kind, err.Error(), true)
			entry = &m
		} else {
			file = f
			entry = &outboxMeta{JobID: id, Kind: claim.Kind, Type: itemFile, Ext: ext, Prompt: res.Prompt, SHA256: res.SHA256}
		}
	default:
		if err := checkJSONResult(res.JSON); err != nil {
			ended.Err, ended.Retryable = err, true
			m := failMeta(id, claim.Kind, err.Error(), true)
			entry = &m
		} else {
			entry = &outboxMeta{JobID: id, Kind: claim.Kind, Type: itemJSON, Result: res.JSON, Prompt: res.Prompt}
		}
	}

	// Completion goes last: the job's progress and log lines are on the wire before it.
	j.prog.stop(!j.silent())
	c := s.currentConn()
	if !j.silent() {
		_ = s.flushLogs(c)
	}

	var it *outboxItem
	var st *staged           // a frame entry, written but not yet flushed: committed once its frame is out
	var stagedIt *outboxItem // its item, committed even when the job was cancelled meanwhile
	if entry != nil {
		var err error
		if entry.Type == itemFile {
			it, err = s.out.putFile(id, claim.Kind, file, entry.Ext, entry.Prompt, entry.SHA256)
		} else {
			it, st, err = s.out.stage(*entry)
			stagedIt = it
		}
		if err != nil {
			// The spool is broken (disk full?): the result cannot be kept, so say so at once
			// rather than leave the hub waiting for the lease to run out.
			s.note(slog.LevelError, id, "could not spool the job's end", "err", err)
			if c != nil {
				_ = c.write(protocol.Fail{JobID: id, Error: "the worker could not store the result: " + err.Error(), Retryable: true})
			}
		} else if it.meta.Type == itemFile {
			ended.File = filepath.Join(s.out.dir, it.meta.File)
		}
	}

	s.mu.Lock()
	delete(s.jobs, id)
	s.mu.Unlock()
	j.cancel()
	if it != nil && j.silent() {
		// Cancelled by the hub while the entry was being written.
		s.out.remove(id)
		it = nil
	}
	if _, err := os.Lstat(j.dir); err == nil {
		if err := durable.RemoveAll(j.dir); err != nil {
			s.log.Warn("remove job folder", "job_id", id, "err", err)
		}
	}
	s.emit(ended) // before delivery, so the UI sees "ended" before "delivered"
	if it != nil {
		if it.meta.Type == itemFile {
			s.kick()
		} else {
			s.sendFrames(c, id)
		}
	}
	if c != nil {
		_ = c.write(protocol.ReadyForMore{})
	}
	// The flush comes after the frame, and only when no ack came soon (stage and settle say why
	// that loses nothing): the hub stores the result meanwhile, instead of after.
	if st != nil {
		var connDone <-chan struct{}
		if c != nil {
			connDone = c.ctx.Done()
		}
		if err := s.out.settle(stagedIt, st, connDone, s.stopped()); err != nil {
			s.note(slog.LevelError, id, "could not spool the job's end; it is delivered from memory", "err", err)
		}
	}
}

// stopped is closed when the Run in progress ends (already closed when none runs).
func (s *Session) stopped() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runCtx == nil {
		done := make(chan struct{})
		close(done)
		return done
	}
	return s.runCtx.Done()
}

func (s *Session) stopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runCtx == nil || s.runCtx.Err() != nil
}

// retryableOf reads the retryable flag from an error chain; errors say nothing are retryable.
func retryableOf(err error) bool {
	var r interface{ Retryable() bool }
	if errors.As(err, &r) {
		return r.Retryable()
	}
	return true
}

// checkResultFile makes sure a binary result is a regular file inside the job's folder with an
// extension the contract allows for the kind.
func (s *Session) checkResultFile(j *job, res Result) (path, ext string, err error) {
	ext = strings.ToLower(strings.TrimPrefix(res.Ext, "."))
	if ext == "" {
		ext = strings.ToLower(strings.TrimPrefix(filepath.Ext(res.File), "."))
	}
	if !j.claim.Kind.AllowedExt(ext) {
		return "", "", fmt.Errorf("the engine produced a %q file, not one of %v for %s", ext, j.claim.Kind.ResultExts(), j.claim.Kind)
	}
	if res.File == "" {
		return "", "", errors.New("the engine returned no result file")
	}
	abs, err := filepath.Abs(res.File)
	if err != nil {
		return "", "", fmt.Errorf("result file: %w", err)
	}
	rel, err := filepath.Rel(j.dir, abs)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
		return "", "", fmt.Errorf("the result file %s is not inside the job folder %s", abs, j.dir)
	}
	st, err := os.Lstat(abs)
	if err != nil {
		return "", "", fmt.Errorf("result file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return "", "", fmt.Errorf("the result %s is not a regular file", abs)
	}
	return abs, ext, nil
}

func checkJSONResult(obj protocol.Object) error {
	t := bytes.TrimSpace(obj)
	if len(t) == 0 || t[0] != '{' {
		return errors.New("the engine returned no JSON object as the result")
	}
	if !json.Valid(t) {
		return errors.New("the engine returned a result that is not valid JSON")
	}
	return nil
}

func (s *Session) onCancel(f protocol.Cancel) {
	s.emit(CancelEvent{JobID: f.JobID, Reason: f.Reason})
	s.mu.Lock()
	if o := s.offers[f.JobID]; o != nil {
		o.hubCancelled = true
		o.cancel()
	}
	if j := s.jobs[f.JobID]; j != nil {
		j.hubCancelled.Store(true)
		j.cancel()
	}
	s.mu.Unlock()
	if s.out.remove(f.JobID) {
		s.log.Info("cancelled job dropped from the outbox", "job_id", f.JobID, "reason", f.Reason)
	}
}

// throttle sends a job's progress at most once per interval: the latest value wins, earlier ones
// not yet sent are replaced. The engine's callback never waits for the socket.
type throttle struct {
	s        *Session
	j        *job
	interval time.Duration

	mu      sync.Mutex
	pending protocol.Progress // the latest value not yet sent, when has is set
	has     bool
	last    time.Time
	timer   *time.Timer
	done    bool

	sendMu sync.Mutex // held while a progress frame is written, so stop can order after it
}

func (t *throttle) report(fraction float64, message string) {
	fraction = min(max(fraction, 0), 1)
	if fraction != fraction { // NaN
		fraction = 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return
	}
	// A value, not a pointer: the engine calls this once per token, and nothing is allocated.
	t.pending, t.has = protocol.Progress{JobID: t.j.claim.JobID, Fraction: fraction, Message: message}, true
	if t.timer == nil {
		t.timer = time.AfterFunc(max(0, t.interval-time.Since(t.last)), t.fire)
	}
}

func (t *throttle) fire() {
	t.sendMu.Lock()
	defer t.sendMu.Unlock()
	t.mu.Lock()
	p, has := t.pending, t.has
	t.pending, t.has, t.timer = protocol.Progress{}, false, nil
	if t.done || !has {
		t.mu.Unlock()
		return
	}
	t.last = time.Now()
	t.mu.Unlock()
	t.send(p)
}

// send hands the value to the Handler and to the hub: both see the same throttled stream.
func (t *throttle) send(p protocol.Progress) {
	if t.j.silent() {
		return
	}
	t.s.emit(JobProgressEvent{JobID: p.JobID, Fraction: p.Fraction, Message: p.Message})
	if c := t.s.currentConn(); c != nil {
		_ = c.write(p)
	}
}

// stop ends progress for the job. With flush, a value still pending is sent when the rate
// allows; otherwise it is dropped, since the completion that follows supersedes it. Either way no
// progress frame for the job follows stop's return.
func (t *throttle) stop(flush bool) {
	t.mu.Lock()
	t.done = true
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	p, has := t.pending, t.has
	t.pending, t.has = protocol.Progress{}, false
	due := time.Since(t.last) >= t.interval
	t.mu.Unlock()
	t.sendMu.Lock() // waits for a write in progress
	defer t.sendMu.Unlock()
	if flush && has && due {
		t.send(p)
	}
}
