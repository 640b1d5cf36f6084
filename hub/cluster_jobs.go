// cluster_jobs.go: how a replica gets, keeps and gives up the jobs it drives. It claims a queued
// job for one of its workers (FOR UPDATE SKIP LOCKED, so replicas never wait for each other), takes
// a job over when its worker or its result arrives here, writes every change fenced on owning the
// job, gives a queued job back to the database the moment it stops being offered, and cancels a
// job another replica drives through the database. It must not know how a frame or a request
// arrived, nor the order workers are served in (scheduler.go).

package hub

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"

	"studioworker/protocol"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// keySep joins a kind and a model into one word for the claim's ANY($n): models have slashes and
// colons, never a unit separator.
const keySep = "\x1f"

// claimColumns are what a replica loads of a job it takes: all that the in-memory job keeps.
const claimColumns = `id, seq, kind, model, vram_gb, input, input_file, input_type, status, worker_id, attempts, accepted_by, error, created_at`

func scanClaimed(sc interface{ Scan(...any) error }) (*job, error) {
	j := &job{}
	var kind, status, input, accepted, created string
	if err := sc.Scan(&j.id, &j.seq, &kind, &j.model, &j.vram, &input, &j.inputFile, &j.inputType, &status,
		&j.holder, &j.attempts, &accepted, &j.errText, &created); err != nil {
		return nil, err
	}
	j.kind, j.status, j.input, j.created = protocol.Kind(kind), protocol.JobStatus(status), json.RawMessage(input), parseTime(created)
	if accepted != "" {
		j.acceptedBy = strings.Split(accepted, ",")
	}
	return j, nil
}

// claimer is one local worker with room, as the scheduler saw it under the lock.
type claimer struct {
	w    *worker
	keys []string
	vram float64
	load int
	last time.Time
	// share is the key whose queued jobs this claim was counted against.
	share string
}

// scheduleCluster is the replica's scheduling pass: for each local worker with room, least loaded
// and least recently served first, one round at a time, it claims the oldest queued job the worker
// may take (its models, its VRAM limit, no decline or retry cool-off of its own) and offers it.
// The claims of a round share one commit. It runs on the scheduler loop, outside Hub.mu.
func (h *Hub) scheduleCluster(ctx context.Context) {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return
	}
	var cands []claimer
	for _, w := range h.workers {
		if len(w.keys) == 0 || !w.hasRoom() {
			continue
		}
		c := claimer{w: w, vram: w.caps.VRAMThresholdGB, load: w.offers + w.active, last: w.lastOffer}
		for _, k := range w.keys {
			c.keys = append(c.keys, string(k.kind)+keySep+k.model)
		}
		cands = append(cands, c)
	}
	h.mu.Unlock()
	if len(cands) == 0 {
		return
	}
	avail, err := h.claimableKeys(ctx)
	if err != nil || len(avail) == 0 {
		return
	}
	sort.Slice(cands, func(a, b int) bool {
		if cands[a].load != cands[b].load {
			return cands[a].load < cands[b].load
		}
		return cands[a].last.Before(cands[b].last)
	})
	for len(cands) > 0 && ctx.Err() == nil {
		// As many claims as there are jobs to claim: a job posted to an idle fleet costs one
		// claim, not one per idle worker. A worker whose claim finds nothing (its declines, its
		// cool-offs, another replica first) is done for this pass and gives its share back to
		// the workers after it.
		var round, rest []claimer
		for _, c := range cands {
			var keys []string
			for _, k := range c.keys {
				if avail[k] > 0 {
					keys = append(keys, k)
				}
			}
			if len(keys) == 0 {
				rest = append(rest, c)
				continue
			}
			avail[keys[0]]--
			c.keys, c.share = keys, keys[0]
			round = append(round, c)
		}
		if len(round) == 0 {
			return
		}
		claimed := h.claim(ctx, round)
		var again []claimer
		h.mu.Lock()
		now := h.now()
		for i, j := range claimed {
			if j == nil {
				avail[round[i].share]++
				continue
			}
			w := round[i].w
			j.status, j.holder = "", ""
			if h.jobs[j.id] != nil {
				continue // cannot be: a job this replica drives is not claimable
			}
			h.jobs[j.id] = j
			h.setStatus(j, protocol.JobQueued)
			if h.closing || !w.hasRoom() {
				// The worker went, or filled up, while the claim committed: the job goes back.
				h.persistJob(j, nil)
				continue
			}
			h.offer(j, w, now)
			if w.conn != nil && w.hasRoom() {
				again = append(again, round[i])
			}
		}
		h.mu.Unlock()
		cands = append(rest, again...)
	}
}

// claimableKeys counts the queued jobs nobody owns by kind and model: a pass with nothing to claim
// costs this one query, not one per worker.
func (h *Hub) claimableKeys(ctx context.Context) (map[string]int, error) {
	rows, err := h.db.db.QueryContext(ctx, `SELECT kind, model, COUNT(*) FROM jobs WHERE status='queued' AND owner='' GROUP BY kind, model`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k, m string
		var n int
		if err := rows.Scan(&k, &m, &n); err != nil {
			return nil, err
		}
		out[k+keySep+m] = n
	}
	return out, rows.Err()
}

// claim takes, for each claimer, the oldest queued job nobody owns that it may run; nil where there
// was none. SKIP LOCKED: a job another replica is claiming this instant is passed over, not waited
// for. Each claim is one statement on the scheduler's own connection, whose commits do not wait for
// the disk (synchronous_commit off for that session): a claim lost with a crash of the database
// leaves the job as it was, queued for anyone, and the worker's accept of its offer is then refused
// by the fence — a claim never makes an acknowledged fact depend on it. Runs on the scheduler loop.
func (h *Hub) claim(ctx context.Context, cs []claimer) []*job {
	out := make([]*job, len(cs))
	if len(cs) == 0 {
		return out
	}
	me, now := h.cluster.id, h.now()
	tctx, cancel := context.WithTimeout(ctx, pgWriteTimeout)
	defer cancel()
	conn := h.cluster.claims
	if conn == nil {
		c, err := h.db.db.Conn(tctx)
		if err != nil {
			return out
		}
		if _, err := c.ExecContext(tctx, `SET synchronous_commit TO OFF`); err != nil {
			_ = c.Close()
			return out
		}
		conn, h.cluster.claims = c, c
	}
	for i, c := range cs {
		row := conn.QueryRowContext(tctx, `UPDATE jobs SET owner=$1, updated_at=$2 WHERE id = (
			SELECT id FROM jobs
			WHERE status='queued' AND owner='' AND (kind || $3 || model) = ANY($4) AND vram_gb <= $5
				AND NOT EXISTS (SELECT 1 FROM job_marks m WHERE m.job_id = jobs.id AND m.worker_id = $6 AND m.until_ms > $7)
			ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
			RETURNING `+claimColumns, me, fmtTime(now), keySep, c.keys, c.vram, c.w.id, now.UnixMilli())
		j, err := scanClaimed(row)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			// The connection may be the broken part: the next pass takes another. What this
			// round claimed stays in out and is offered; what it did not is claimed again later.
			_ = conn.Close()
			h.cluster.claims = nil
			return out
		}
		out[i] = j
	}
	return out
}

// persistCluster is persistJob on a replica: the write is fenced on the job being unfinished and
// owned by this replica or by nobody — nobody, because a job given back here a moment ago (its
// release still committing) may be taken again at once, by a hello that brings it back, and no
// other replica claimed it meanwhile — and a queued or finished job is owned by nobody once
// written. A job given back (queued) is
// forgotten here when the write commits, with a wake-up for the replicas; a write another replica's
// takeover refused drops the job here, and after is told nil (the new owner decides).
func (h *Hub) persistCluster(j *job, after func(error)) {
	status, holder := j.status, j.holder
	if status == protocol.JobOffered {
		status, holder = protocol.JobQueued, ""
	}
	owner := h.cluster.id
	if status == protocol.JobQueued || status.Done() {
		owner = ""
	}
	if status.Done() && status != protocol.JobCompleted {
		holder = j.holder
	}
	attempts, accepted, errText := j.attempts, strings.Join(j.acceptedBy, ","), j.errText
	id, now, me := j.id, fmtTime(h.now()), h.cluster.id
	release := status == protocol.JobQueued
	h.db.enqueue(func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE jobs SET status=$1, worker_id=$2, attempts=$3, accepted_by=$4, error=$5, updated_at=$6,
			owner=$7, grace_until_ms=0 WHERE id=$8 AND status IN ('queued','running') AND owner IN ($9, '')`,
			string(status), holder, attempts, accepted, errText, now, owner, id, me)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return errNotOwner
		}
		if release {
			return notify(tx, "wake")
		}
		return nil
	}, func(err error) {
		if errors.Is(err, errNotOwner) {
			h.mu.Lock()
			h.dropJob(j, "", "")
			h.mu.Unlock()
			err = nil
		} else if err == nil && release {
			h.mu.Lock()
			if h.jobs[j.id] == j && j.status == protocol.JobQueued {
				h.dropJob(j, "", "")
			}
			h.mu.Unlock()
		}
		if after != nil {
			after(err)
		}
	})
}

// dropJob forgets j here without writing: another replica owns it now, or the database holds it
// queued for anyone. An open offer of it is withdrawn from its worker (told offerReason, when
// given); a running worker is told runReason when given (the job was cancelled), else it goes on
// and its result is answered by whoever owns the job. Under Hub.mu.
func (h *Hub) dropJob(j *job, offerReason, runReason protocol.CancelReason) {
	if h.jobs[j.id] != j {
		return
	}
	switch j.status {
	case protocol.JobOffered:
		if ow := h.workers[j.holder]; ow != nil {
			ow.offers = max(0, ow.offers-1)
			if offerReason != "" {
				h.sendTo(ow.id, protocol.Cancel{JobID: j.id, Reason: offerReason})
			}
		}
		h.kickScheduler()
	case protocol.JobRunning:
		if runReason != "" {
			h.sendTo(j.holder, protocol.Cancel{JobID: j.id, Reason: runReason})
		}
	}
	if w := h.workers[j.holder]; w != nil {
		delete(w.held, j.id)
	}
	delete(h.jobs, j.id)
	h.met.jobStatus(j.status, -1)
	j.leaseGen++ // its timers, if any, are void
}

// markDecline and markCoolOff write what keeps a job from a worker where every replica's claim
// sees it; clearDeclines starts a new attempt, which a decline no longer binds.
func (h *Hub) markDecline(j *job, workerID string, until time.Time, reason protocol.DeclineReason) {
	h.writeMark(j.id, workerID, "decline", until, string(reason), false)
}

func (h *Hub) markCoolOff(j *job, workerID string, until time.Time, lost bool) {
	reason := ""
	if lost {
		reason = "lost"
	}
	h.writeMark(j.id, workerID, "cooloff", until, reason, true)
}

// acceptsAgain removes the declines for a passing reason (busy, paused) that workerID made before
// it said it accepts again: they no longer hold (declineMark.holds says the same in memory).
func (h *Hub) acceptsAgain(workerID string) {
	h.db.enqueue(func(tx *sql.Tx) error {
		_, err := tx.Exec(`DELETE FROM job_marks WHERE worker_id=$1 AND kind='decline' AND reason IN ('busy','paused')`, workerID)
		return err
	}, nil)
}

func (h *Hub) writeMark(jobID, workerID, kind string, until time.Time, reason string, clearDeclines bool) {
	ms := until.UnixMilli()
	h.db.enqueue(func(tx *sql.Tx) error {
		if clearDeclines {
			if _, err := tx.Exec(`DELETE FROM job_marks WHERE job_id=$1 AND kind='decline'`, jobID); err != nil {
				return err
			}
		}
		_, err := tx.Exec(`INSERT INTO job_marks(job_id, worker_id, kind, until_ms, reason) VALUES($1, $2, $3, $4, $5)
			ON CONFLICT (job_id, worker_id, kind) DO UPDATE SET until_ms = EXCLUDED.until_ms, reason = EXCLUDED.reason`,
			jobID, workerID, kind, ms, reason)
		return err
	}, nil)
}

// adopt takes over, from whichever replica owns them (or none), the unfinished jobs among ids that
// workerID may hold — a queued one, or one leased to it — and with leased also every job leased
// to it; it loads them here and tells their old owners, who drop them. A worker's session or
// result lands where the load balancer sends it, which need not be where its jobs were.
func (h *Hub) adopt(ctx context.Context, workerID string, ids []string, leased bool) {
	if h.cluster == nil {
		return
	}
	h.adoptJobs(ctx, workerID, ids, leased, false)
}

// helloHere is adopt for a worker's hello: in the same commit it records that the worker's session
// is on this replica now, and tells the others after the takeovers, so that a replica holding an
// older session of it has dropped the jobs taken from it before it hears it is superseded (it
// would otherwise requeue them as lost). It returns the database's count of the worker's sessions.
func (h *Hub) helloHere(ctx context.Context, workerID string, ids []string) int64 {
	return h.adoptJobs(ctx, workerID, ids, true, true)
}

func (h *Hub) adoptJobs(ctx context.Context, workerID string, ids []string, leased, session bool) int64 {
	h.mu.Lock()
	var missing []string
	for _, id := range ids {
		if h.jobs[id] == nil {
			missing = append(missing, id)
		}
	}
	h.mu.Unlock()
	if len(missing) == 0 && !leased {
		return 0
	}
	me := h.cluster.id
	var got []*job
	var gen int64
	err := h.db.do(ctx, func(tx *sql.Tx) error {
		got = nil
		rows, err := tx.Query(`WITH t AS (
				SELECT id, owner AS old FROM jobs
				WHERE status IN ('queued','running') AND (status = 'queued' OR worker_id = $1) AND owner <> $2
					AND (id = ANY($3) OR ($4 AND status = 'running' AND worker_id = $1))
				FOR UPDATE)
			UPDATE jobs SET owner = $2, grace_until_ms = 0 FROM t WHERE jobs.id = t.id
			RETURNING jobs.id, jobs.seq, jobs.kind, jobs.model, jobs.vram_gb, jobs.input, jobs.input_file, jobs.input_type,
				jobs.status, jobs.worker_id, jobs.attempts, jobs.accepted_by, jobs.error, jobs.created_at, t.old`,
			workerID, me, missing, leased)
		if err != nil {
			return err
		}
		var olds []string
		for rows.Next() {
			j := &job{}
			var kind, status, input, accepted, created, old string
			if err := rows.Scan(&j.id, &j.seq, &kind, &j.model, &j.vram, &input, &j.inputFile, &j.inputType, &status,
				&j.holder, &j.attempts, &accepted, &j.errText, &created, &old); err != nil {
				rows.Close()
				return err
			}
			j.kind, j.status, j.input, j.created = protocol.Kind(kind), protocol.JobStatus(status), json.RawMessage(input), parseTime(created)
			if accepted != "" {
				j.acceptedBy = strings.Split(accepted, ",")
			}
			got = append(got, j)
			olds = append(olds, old)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for i, j := range got {
			if olds[i] != "" {
				if err := notify(tx, "taken", j.id, me); err != nil {
					return err
				}
			}
		}
		if !session {
			return nil
		}
		if err := tx.QueryRow(`UPDATE workers SET replica=$1, session=session+1 WHERE id=$2 RETURNING session`, me, workerID).Scan(&gen); err != nil {
			return err
		}
		return notify(tx, "session", workerID, me, itoa(gen))
	})
	if err != nil {
		h.log.Warn("take jobs over from other replicas", "worker_id", workerID, "err", err)
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	for _, j := range got {
		if h.jobs[j.id] != nil {
			continue
		}
		h.jobs[j.id] = j
		status, holder := j.status, j.holder
		j.status, j.holder = "", ""
		h.setStatus(j, status)
		if status == protocol.JobRunning {
			h.setHolder(j, holder)
			if w := h.workers[holder]; w == nil || w.conn == nil {
				h.startGrace(j, now)
			}
		}
		h.log.Info("job taken over from another replica", "job_id", j.id, "status", status)
	}
	return gen
}

// verdictElsewhere answers a result for a job this replica does not drive, from the database:
// duplicate once completed, stored while it is leased to w or queued after w accepted it, else
// rejected. The result is stored only once the job is taken over (adopt), which may still refuse.
func (h *Hub) verdictElsewhere(ctx context.Context, w *worker, id string) (protocol.AckStatus, protocol.Kind) {
	var status, wid, accepted, kind string
	err := h.db.db.QueryRowContext(ctx, `SELECT status, worker_id, accepted_by, kind FROM jobs WHERE id=$1`, id).
		Scan(&status, &wid, &accepted, &kind)
	if err != nil {
		if !errors.Is(err, sql.ErrNoRows) {
			h.log.Error("look up a job driven elsewhere", "job_id", id, "err", err)
		}
		return protocol.AckRejected, ""
	}
	j := &job{status: protocol.JobStatus(status), holder: wid, kind: protocol.Kind(kind)}
	if accepted != "" {
		j.acceptedBy = strings.Split(accepted, ",")
	}
	return verdict(w, j), j.kind
}

// queuedElsewhere reads a queued job and its marks (declines, retry cool-offs) from the database,
// as the waiting sentence needs them; nil when it is not queued there.
func (h *Hub) queuedElsewhere(ctx context.Context, id string) *job {
	j, err := scanClaimed(h.db.db.QueryRowContext(ctx, `SELECT `+claimColumns+` FROM jobs WHERE id=$1 AND status='queued'`, id))
	if err != nil {
		return nil
	}
	rows, err := h.db.db.QueryContext(ctx, `SELECT worker_id, kind, until_ms, reason FROM job_marks WHERE job_id=$1`, id)
	if err != nil {
		return j
	}
	defer rows.Close()
	for rows.Next() {
		var wid, kind, reason string
		var ms int64
		if rows.Scan(&wid, &kind, &ms, &reason) != nil {
			continue
		}
		until := time.UnixMilli(ms)
		if kind == "cooloff" {
			j.coolOffs = append(j.coolOffs, retryMark{worker: wid, until: until, lost: reason == "lost"})
			continue
		}
		if j.declined == nil {
			j.declined = map[string]declineMark{}
		}
		// The decline's own time is not kept: a busy or paused one holds while the mark does
		// (a resumed worker's marks are removed when it says it accepts again).
		j.declined[wid] = declineMark{at: farFuture, until: until, reason: protocol.DeclineReason(reason)}
	}
	return j
}

// verdictElsewhereSoon is verdictElsewhere for an upload that may have overtaken its own accept:
// the worker accepts on the replica of its session and may send the file at once, to another,
// before that accept is committed. While the answer would be rejected for a job not finished, it
// asks again for up to two seconds.
func (h *Hub) verdictElsewhereSoon(ctx context.Context, w *worker, id string) (protocol.AckStatus, protocol.Kind) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		v, kind := h.verdictElsewhere(ctx, w, id)
		if v != protocol.AckRejected || kind == "" || time.Now().After(deadline) {
			return v, kind
		}
		var status string
		if err := h.db.db.QueryRowContext(ctx, `SELECT status FROM jobs WHERE id=$1`, id).Scan(&status); err != nil ||
			protocol.JobStatus(status).Done() {
			return v, kind
		}
		select {
		case <-ctx.Done():
			return v, kind
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// errNothingToCancel: the job is finished (or unknown) in the database.
var errNothingToCancel = errors.New("hub: nothing to cancel")

// cancelElsewhere cancels a job this replica does not drive, in the database, and tells the
// replicas: the one that drives it drops it and cancels its worker, wherever that is connected.
func (h *Hub) cancelElsewhere(ctx context.Context, id string) (protocol.JobStatus, error) {
	var file string
	now := fmtTime(h.now())
	err := h.db.do(ctx, func(tx *sql.Tx) error {
		var wid string
		err := tx.QueryRow(`UPDATE jobs SET status='cancelled', error='cancelled', owner='', grace_until_ms=0, updated_at=$2
			WHERE id=$1 AND status IN ('queued','offered','running') RETURNING worker_id, input_file`, id, now).Scan(&wid, &file)
		if errors.Is(err, sql.ErrNoRows) {
			return errNothingToCancel
		}
		if err != nil {
			return err
		}
		if wid == "" {
			wid = "-"
		}
		return notify(tx, "cancel", id, wid)
	})
	if errors.Is(err, errNothingToCancel) {
		fj, lerr := h.lookup(ctx, id)
		if lerr != nil {
			return "", lerr
		}
		return fj.status, nil
	}
	if err != nil {
		return "", err
	}
	if file != "" {
		if err := os.Remove(filepath.Join(h.dirs.inputs, file)); err != nil && !errors.Is(err, os.ErrNotExist) {
			h.log.Warn("remove input file", "job_id", id, "err", err)
		}
	}
	h.log.Info("job cancelled", "job_id", id, "through", "the database")
	return protocol.JobCancelled, nil
}

// submitCluster stores a job queued for any replica's worker: its seq from the database's
// sequence, a wake-up for the replicas in the same commit. No replica holds it until one claims it.
func (h *Hub) submitCluster(ctx context.Context, id string, req protocol.JobRequest, vram float64, inputFile, inputType string) (string, error) {
	now := fmtTime(h.now())
	err := h.db.do(context.WithoutCancel(ctx), func(tx *sql.Tx) error {
		if _, err := tx.Exec(`INSERT INTO jobs(id, seq, kind, model, vram_gb, input, input_file, input_type, status, created_at, updated_at)
			VALUES($1, nextval('jobs_seq_seq'), $2, $3, $4, $5, $6, $7, 'queued', $8, $8)`, id, string(req.Kind), req.Model, vram,
			string(req.Input), inputFile, inputType, now); err != nil {
			return err
		}
		return notify(tx, "wake")
	})
	if err != nil {
		return "", err
	}
	h.log.Debug("job queued", "job_id", id, "kind", req.Kind, "model", req.Model)
	return id, nil
}

// supersededElsewhere closes this replica's session of workerID when a newer one opened on
// another replica: its offers go back to the database, its leases are given up here (the new
// replica took them over; one it did not is requeued as lost, the contract's rule for a worker that
// came back without its job).
func (h *Hub) supersededElsewhere(workerID, genWord string) {
	gen := atoi(genWord)
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.workers[workerID]
	if w == nil || w.conn == nil || w.session >= gen {
		return
	}
	h.met.superseded.Add(1)
	w.conn.log.Info("superseded by a new connection of the same worker on another replica")
	w.conn.closeWith(errFrame(protocol.ErrCodeSuperseded, "this worker id connected again elsewhere"), protocol.CloseSuperseded, "superseded")
	h.detachWith(w, h.now(), func(j *job) {
		h.requeue(j, leaseLost, "lease lost: worker "+w.id+" came back elsewhere without it", nil)
	})
}

// revokedElsewhere ends workerID's session here when another replica revoked it.
func (h *Hub) revokedElsewhere(workerID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.workers[workerID]
	if w == nil || w.revoked {
		return
	}
	w.revoked = true
	w.tokenHash = [32]byte{}
	if w.conn != nil {
		w.conn.closeWith(errFrame(protocol.ErrCodeAuthFailed, "this worker was revoked by the Studio: register it again"),
			websocket.StatusCode(protocol.CloseAuthFailed), "revoked")
	}
	if w.conn == nil && len(w.held) == 0 {
		delete(h.workers, workerID)
	}
}

// inputHeldBy waits (briefly) until the database says workerID holds job id: an input is fetched
// right after the accept, whose commit on the replica of the worker's session may not have landed
// when the request reaches this one. It returns the input file's name and type.
func (h *Hub) inputHeldBy(ctx context.Context, id, workerID string) (name, contentType string, ok bool) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		var status, wid string
		err := h.db.db.QueryRowContext(ctx, `SELECT status, worker_id, input_file, input_type FROM jobs WHERE id=$1`, id).
			Scan(&status, &wid, &name, &contentType)
		if err == nil && protocol.JobStatus(status) == protocol.JobRunning && wid == workerID && name != "" {
			return name, contentType, true
		}
		if err != nil || protocol.JobStatus(status).Done() || time.Now().After(deadline) {
			return "", "", false
		}
		select {
		case <-ctx.Done():
			return "", "", false
		case <-time.After(25 * time.Millisecond):
		}
	}
}
