// lifecycle.go: a job's life once a worker holds it (lease, requeue, completion, failure,
// cancellation) and the database writes that make each step durable. Every change of a live job's
// status or holder, here or elsewhere, goes through setStatus and setHolder, so the jobs-by-status
// gauge and each worker's held set cannot drift from the jobs. Everything here but forget runs
// under Hub.mu. It must not know why a step happens (a frame, a timer, the API) nor how jobs are
// matched to workers.

package hub

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"studioworker/protocol"
)

// setHolder moves j between the workers' held sets with its holder, so that a disconnect finds
// every offer and lease of its worker in one map.
func (h *Hub) setHolder(j *job, workerID string) {
	if j.holder != "" {
		if w := h.workers[j.holder]; w != nil {
			delete(w.held, j.id)
		}
	}
	j.holder = workerID
	if workerID != "" {
		if w := h.workers[workerID]; w != nil {
			w.held[j.id] = j
		}
	}
}

// setStatus moves j between the jobs-by-status gauges with its status, so that a scrape never has
// to count jobs.
func (h *Hub) setStatus(j *job, s protocol.JobStatus) {
	h.met.jobStatus(j.status, -1)
	j.status = s
	h.met.jobStatus(s, +1)
}

// lease gives the job to w (accept, or a lease taken back from hello).
func (h *Hub) lease(j *job, w *worker) {
	h.setStatus(j, protocol.JobRunning)
	h.setHolder(j, w.id)
	if !j.accepted(w.id) {
		j.acceptedBy = append(j.acceptedBy, w.id)
	}
	j.leaseGen++
	j.graceUntil = time.Time{}
	j.unlisted = 0
	h.persistJob(j, nil)
}

// runEnd says how a leased run ended without a result; both start the retry cool-off, and only
// the waiting sentence tells them apart.
type runEnd int

const (
	runFailed runEnd = iota // a retryable fail (a user's cancel too), or a result the hub refused
	leaseLost               // the grace ran out, or the worker no longer has the job
)

// requeue ends a leased run without a result: attempts+1, then the queue or, at max_attempts,
// failure. The holder whose run it was is kept from the job for RetryCoolOff (contract §6), so
// a dead backend cannot use up the attempts in milliseconds.
func (h *Hub) requeue(j *job, how runEnd, why string, after func(error)) {
	j.attempts++
	j.declined = nil
	j.graceUntil = time.Time{}
	j.leaseGen++
	if j.attempts >= h.cfg.MaxAttempts {
		h.finish(j, protocol.JobFailed, fmt.Sprintf("%s (attempt %d of %d)", why, j.attempts, h.cfg.MaxAttempts), after)
		return
	}
	h.met.requeues.Add(1)
	j.errText = why
	h.startCoolOff(j, retryMark{worker: j.holder, until: h.now().Add(h.cfg.RetryCoolOff), lost: how == leaseLost})
	if h.cluster != nil {
		h.markCoolOff(j, j.holder, h.now().Add(h.cfg.RetryCoolOff), how == leaseLost)
	}
	h.enqueueJob(j)
	h.persistJob(j, after)
}

// startCoolOff records m on j, replacing an earlier mark of the same worker and dropping those
// that have passed (which keeps the list bounded), and arms a timer for its end: the job is
// offered again the moment the cool-off passes, not at some later heartbeat. The marks live in
// memory only; a restart forgets them, and at worst a worker is offered its job again early.
func (h *Hub) startCoolOff(j *job, m retryMark) {
	now := h.now()
	j.coolOffs = slices.DeleteFunc(j.coolOffs, func(o retryMark) bool {
		return o.worker == m.worker || !now.Before(o.until)
	})
	j.coolOffs = append(j.coolOffs, m)
	h.timeCoolOff(j, m.until)
}

// finish makes a job final (failed or cancelled; completions go through complete), persists it,
// and forgets it once committed.
func (h *Hub) finish(j *job, s protocol.JobStatus, errText string, after func(error)) {
	switch j.status {
	case protocol.JobOffered:
		if ow := h.workers[j.holder]; ow != nil {
			ow.offers = max(0, ow.offers-1)
		}
		h.setHolder(j, "")
		h.kickScheduler()
	case protocol.JobRunning:
		if w := h.workers[j.holder]; w != nil {
			delete(w.held, j.id) // holder stays as the job's worker_id, but it holds nothing now
		}
	default:
		h.setHolder(j, "")
	}
	h.setStatus(j, s)
	j.errText = errText
	j.coolOffs = nil // a finished job is offered to nobody
	j.graceUntil = time.Time{}
	j.leaseGen++
	h.persistJob(j, func(err error) {
		// A write that failed keeps the job in memory, final, until resync writes it: forgotten,
		// the database's older row would bring it back at the next start.
		if err == nil {
			h.forget(j)
		}
		if after != nil {
			after(err)
		}
	})
}

// resync writes the state of every job in memory again, for the writes that failed while the
// database could not be reached (the store refuses them then rather than queue them). A
// completion is left to its own write, which either commits or gives the lease back.
func (h *Hub) resync() {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, j := range h.jobs {
		switch {
		case j.status == protocol.JobCompleted:
			continue
		case j.status.Done():
			h.persistJob(j, func(err error) {
				if err == nil {
					h.forget(j)
				}
			})
		default:
			h.persistJob(j, nil)
		}
		n++
	}
	h.log.Warn("the database can be reached again: the state of every job in memory is written again", "jobs", n)
}

// forget drops a finished job from memory once its row is committed, and its input file.
func (h *Hub) forget(j *job) {
	h.mu.Lock()
	if h.jobs[j.id] == j && j.status.Done() {
		delete(h.jobs, j.id)
	}
	h.mu.Unlock()
	if j.inputFile != "" {
		if err := os.Remove(filepath.Join(h.dirs.inputs, j.inputFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			h.log.Warn("remove input file", "job_id", j.id, "err", err)
		}
	}
}

// persistJob writes the job's state (not its result) in the next batch. An open offer is not
// durable: it is written as queued, so after a restart the job is simply offered again.
func (h *Hub) persistJob(j *job, after func(error)) {
	if h.cluster != nil {
		h.persistCluster(j, after)
		return
	}
	status, holder := j.status, j.holder
	if status == protocol.JobOffered || status == protocol.JobQueued {
		status, holder = protocol.JobQueued, ""
	}
	attempts, accepted, errText := j.attempts, strings.Join(j.acceptedBy, ","), j.errText
	id, now := j.id, fmtTime(h.now())
	h.db.enqueue(func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE jobs SET status=$1, worker_id=$2, attempts=$3, accepted_by=$4, error=$5, updated_at=$6 WHERE id=$7`,
			string(status), holder, attempts, accepted, errText, now, id)
		return err
	}, after)
}

// verdict is the answer to a result from w for j (nil: not in memory, so finished or unknown).
func verdict(w *worker, j *job) protocol.AckStatus {
	switch {
	case j == nil:
		return protocol.AckRejected
	case j.status == protocol.JobCompleted:
		return protocol.AckDuplicate
	case j.status.Done():
		return protocol.AckRejected
	case !j.accepted(w.id):
		return protocol.AckRejected
	case j.status == protocol.JobRunning && j.holder != w.id:
		return protocol.AckRejected
	}
	return protocol.AckStored
}

// complete stores a result from w (verdict must be stored): JSON in result, or a file already in
// place under dirs.results. after runs once the result is committed.
func (h *Hub) complete(j *job, w *worker, result json.RawMessage, file, ext, sum string, size int64, prompt string, after func(error)) {
	if j.status == protocol.JobOffered {
		// An open offer elsewhere is withdrawn: the job is done.
		other := j.holder
		if ow := h.workers[other]; ow != nil {
			ow.offers = max(0, ow.offers-1)
		}
		h.sendTo(other, protocol.Cancel{JobID: j.id, Reason: protocol.CancelCancelled})
		h.kickScheduler()
	}
	h.setHolder(j, w.id)
	delete(w.held, j.id)
	h.setStatus(j, protocol.JobCompleted)
	j.errText = ""
	j.coolOffs = nil
	j.graceUntil = time.Time{}
	j.leaseGen++
	j.result, j.resultFile, j.resultExt = result, file, ext
	gen := j.leaseGen
	id, wid, now := j.id, w.id, fmtTime(h.now())
	accepted := strings.Join(j.acceptedBy, ",")
	var res any
	if result != nil {
		res = string(result)
	}
	fence, me := "", ""
	if h.cluster != nil {
		fence, me = ", owner='', grace_until_ms=0 WHERE id=$10 AND status IN ('queued','running') AND owner IN ($11, '')", h.cluster.id
	}
	h.db.enqueue(func(tx *sql.Tx) error {
		q := `UPDATE jobs SET status='completed', worker_id=$1, accepted_by=$2, error='', result=$3, result_file=$4,
			result_ext=$5, result_sha256=$6, result_size=$7, prompt=$8, updated_at=$9 WHERE id=$10`
		args := []any{wid, accepted, res, file, ext, sum, size, prompt, now, id}
		if fence != "" {
			q = strings.Replace(q, " WHERE id=$10", fence, 1)
			args = append(args, me)
		}
		r, err := tx.Exec(q, args...)
		if err == nil && fence != "" {
			if n, _ := r.RowsAffected(); n == 0 {
				return errNotOwner
			}
		}
		return err
	}, func(err error) {
		if err == nil {
			h.forget(j)
		} else if errors.Is(err, errNotOwner) {
			h.mu.Lock()
			h.dropJob(j, "", "")
			h.mu.Unlock()
		} else {
			h.uncomplete(j, w, gen)
		}
		after(err)
	})
}

// uncomplete gives a job whose completion did not commit back to the worker that sent it, as a
// running lease (in its grace when the worker has gone), unless something moved the job on since:
// left completed, the result sent again would be answered `duplicate`, and the worker would drop a
// result that no database holds.
func (h *Hub) uncomplete(j *job, w *worker, gen uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.jobs[j.id] != j || j.status != protocol.JobCompleted || j.leaseGen != gen {
		return
	}
	j.result, j.resultFile, j.resultExt = nil, "", ""
	h.setStatus(j, protocol.JobRunning)
	h.setHolder(j, w.id)
	j.leaseGen++
	if w.conn == nil {
		h.startGrace(j, h.now())
	}
}
