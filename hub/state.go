package hub

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"studioworker/internal/durable"
	"studioworker/protocol"
)

// ---- transitions; every one below runs under h.mu ----

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

func (h *Hub) setStatus(j *job, s protocol.JobStatus) {
	h.met.jobStatus(j.status, -1)
	j.status = s
	h.met.jobStatus(s, +1)
}

// sendTo queues a frame for a worker if it is connected.
func (h *Hub) sendTo(workerID string, f protocol.Frame) {
	if w := h.workers[workerID]; w != nil && w.conn != nil {
		w.conn.send(f)
	}
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

// requeue ends a leased run without a result: attempts+1, then the queue or, at max_attempts,
// failure.
func (h *Hub) requeue(j *job, why string, after func(error)) {
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
	h.enqueueJob(j)
	h.persistJob(j, after)
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
	j.graceUntil = time.Time{}
	j.leaseGen++
	h.persistJob(j, func(err error) {
		h.forget(j)
		if after != nil {
			after(err)
		}
	})
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
	status, holder := j.status, j.holder
	if status == protocol.JobOffered || status == protocol.JobQueued {
		status, holder = protocol.JobQueued, ""
	}
	attempts, accepted, errText := j.attempts, strings.Join(j.acceptedBy, ","), j.errText
	id, now := j.id, fmtTime(h.now())
	h.db.enqueue(func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE jobs SET status=?, worker_id=?, attempts=?, accepted_by=?, error=?, updated_at=? WHERE id=?`,
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
	j.graceUntil = time.Time{}
	j.leaseGen++
	j.result, j.resultFile, j.resultExt = result, file, ext
	id, wid, now := j.id, w.id, fmtTime(h.now())
	accepted := strings.Join(j.acceptedBy, ",")
	var res any
	if result != nil {
		res = string(result)
	}
	h.db.enqueue(func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE jobs SET status='completed', worker_id=?, accepted_by=?, error='', result=?, result_file=?,
			result_ext=?, result_sha256=?, result_size=?, prompt=?, updated_at=? WHERE id=?`,
			wid, accepted, res, file, ext, sum, size, prompt, now, id)
		return err
	}, func(err error) {
		if err == nil {
			h.forget(j)
		}
		after(err)
	})
}

// ---- startup ----

func (h *Hub) load(ctx context.Context) error {
	db := h.db.db
	rows, err := db.QueryContext(ctx, `SELECT id, name, token_hash, last_seen FROM workers`)
	if err != nil {
		return fmt.Errorf("hub: load workers: %w", err)
	}
	for rows.Next() {
		var id, name, lastSeen string
		var hash []byte
		if err := rows.Scan(&id, &name, &hash, &lastSeen); err != nil {
			rows.Close()
			return fmt.Errorf("hub: load workers: %w", err)
		}
		w := &worker{id: id, name: name, lastSeen: parseTime(lastSeen), held: map[string]*job{}}
		copy(w.tokenHash[:], hash)
		h.workers[id] = w
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("hub: load workers: %w", err)
	}

	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM jobs`).Scan(&h.nextSeq); err != nil {
		return fmt.Errorf("hub: load jobs: %w", err)
	}
	// Counting finished jobs once at startup keeps the jobs-by-status gauge exact without a
	// query per scrape.
	crows, err := db.QueryContext(ctx, `SELECT status, COUNT(*) FROM jobs WHERE status IN ('completed','failed','cancelled') GROUP BY status`)
	if err != nil {
		return fmt.Errorf("hub: count jobs: %w", err)
	}
	for crows.Next() {
		var s string
		var n int64
		if err := crows.Scan(&s, &n); err != nil {
			crows.Close()
			return fmt.Errorf("hub: count jobs: %w", err)
		}
		h.met.jobStatus(protocol.JobStatus(s), n)
	}
	crows.Close()

	jrows, err := db.QueryContext(ctx, `SELECT id, seq, kind, model, vram_gb, input, input_file, input_type, status,
		worker_id, attempts, accepted_by, error, created_at FROM jobs WHERE status IN ('queued','offered','running') ORDER BY seq`)
	if err != nil {
		return fmt.Errorf("hub: load jobs: %w", err)
	}
	defer jrows.Close()
	now := h.now()
	for jrows.Next() {
		j := &job{}
		var kind, status, accepted, created, input string
		if err := jrows.Scan(&j.id, &j.seq, &kind, &j.model, &j.vram, &input, &j.inputFile, &j.inputType, &status,
			&j.holder, &j.attempts, &accepted, &j.errText, &created); err != nil {
			return fmt.Errorf("hub: load jobs: %w", err)
		}
		j.kind, j.input, j.created = protocol.Kind(kind), json.RawMessage(input), parseTime(created)
		if accepted != "" {
			j.acceptedBy = strings.Split(accepted, ",")
		}
		h.jobs[j.id] = j
		holder := j.holder
		j.holder = ""
		if protocol.JobStatus(status) == protocol.JobRunning && h.workers[holder] != nil {
			h.setStatus(j, protocol.JobRunning)
			h.setHolder(j, holder)
			h.startGrace(j, now)
			continue
		}
		h.enqueueJob(j)
	}
	return jrows.Err()
}

// cleanFiles removes what a crash can leave behind: partial uploads in tmp/, and complete files
// that no committed row points to (a crash between the rename and the commit).
func (h *Hub) cleanFiles(ctx context.Context) error {
	ents, err := os.ReadDir(h.dirs.tmp)
	if err != nil {
		return fmt.Errorf("hub: clean %s: %w", h.dirs.tmp, err)
	}
	for _, e := range ents {
		if err := durable.RemoveAll(filepath.Join(h.dirs.tmp, e.Name())); err != nil {
			return fmt.Errorf("hub: clean %s: %w", h.dirs.tmp, err)
		}
	}
	for _, c := range []struct {
		dir, query string
	}{
		{h.dirs.results, `SELECT 1 FROM jobs WHERE id=? AND result_file=?`},
		{h.dirs.inputs, `SELECT 1 FROM jobs WHERE id=? AND input_file=? AND status IN ('queued','offered','running')`},
	} {
		ents, err := os.ReadDir(c.dir)
		if err != nil {
			return fmt.Errorf("hub: clean %s: %w", c.dir, err)
		}
		for _, e := range ents {
			id, _, _ := strings.Cut(e.Name(), ".")
			var one int
			err := h.db.db.QueryRowContext(ctx, c.query, id, e.Name()).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				h.log.Info("removing a file no job refers to", "file", filepath.Join(c.dir, e.Name()))
				if err := os.Remove(filepath.Join(c.dir, e.Name())); err != nil {
					return fmt.Errorf("hub: clean %s: %w", c.dir, err)
				}
			} else if err != nil {
				return fmt.Errorf("hub: clean %s: %w", c.dir, err)
			}
		}
	}
	return nil
}
