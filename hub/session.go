// session.go: what a worker's frames do to the hub's state: hello (superseding an older session,
// taking leases back, cancelling what the worker must drop), heartbeats (a lease lasts while the
// worker lists its job), accepts, declines, results, failures and log batches, and what a
// disconnect leaves. An answer that refers to a write is sent only once that write is committed
// (afterCommit, ackOrDrop), so a worker never deletes what the hub could still lose. It must not
// know about HTTP or about sockets beyond conn.send and conn.closeWith.

package hub

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"time"

	"github.com/coder/websocket"

	"studioworker/protocol"
)

// maxLogsPerWorker bounds the shipped log entries kept per worker; older ones are dropped.
const maxLogsPerWorker = 10000

// onHello attaches a session to its worker: a previous session of the same worker is superseded,
// the leases it listed are kept and the others go back to the queue, and the jobs listed in
// in_flight that it no longer holds are cancelled with the matching reason.
func (h *Hub) onHello(ctx context.Context, c *conn, w *worker, hello protocol.Hello, base string) {
	var session int64
	if h.cluster != nil {
		// The newer session wins wherever the older one is; the jobs it brings back, and every
		// lease it has, are driven here from now on.
		session = h.helloHere(ctx, w.id, append(slices.Clone(hello.InFlight), hello.Outbox...))
	}
	// Jobs that are no longer in memory are finished (or unknown): ask the database how.
	finished := h.finishedStatuses(ctx, hello.InFlight)

	h.mu.Lock()
	now := h.now()
	w.session = session
	if old := w.conn; old != nil {
		h.met.superseded.Add(1)
		old.log.Info("superseded by a new connection of the same worker")
		old.closeWith(errFrame(protocol.ErrCodeSuperseded, "this worker id connected again elsewhere"), protocol.CloseSuperseded, "superseded")
		h.detach(w, now)
	}
	w.conn = c
	w.baseURL = base
	w.caps = hello.Capabilities
	w.keys = keysOf(hello.Capabilities)
	w.state, w.accepting, w.running, w.gpus = protocol.StateIdle, true, nil, nil
	w.acceptingSince = now
	w.lastSeen, w.lastOffer = now, now
	w.offers, w.active = 0, 0
	h.met.connected.Add(1)
	c.send(protocol.Welcome{
		WorkerID:      w.id,
		ServerVersion: h.cfg.ServerVersion,
		HeartbeatMS:   h.cfg.HeartbeatInterval.Milliseconds(),
		OfferTTLMS:    h.cfg.OfferTTL.Milliseconds(),
	})
	c.log.Info("worker connected", "name", w.name, "agent_version", hello.AgentVersion,
		"in_flight", len(hello.InFlight), "outbox", len(hello.Outbox))

	listed := map[string]bool{}
	for _, id := range hello.InFlight {
		listed[id] = true
	}
	for _, id := range hello.Outbox {
		listed[id] = true
	}
	var lost []*job
	for _, j := range w.held {
		if j.status != protocol.JobRunning {
			continue
		}
		if listed[j.id] {
			j.leaseGen++ // the grace timer, if any, is void
			j.graceUntil = time.Time{}
		} else {
			lost = append(lost, j)
		}
	}
	for _, j := range lost {
		c.log.Info("lease lost: the worker came back without the job", "job_id", j.id)
		h.requeue(j, leaseLost, "lease lost: worker "+w.id+" came back without it", nil)
	}
	var recheck []string
	for _, id := range hello.InFlight {
		w.active++ // it runs on the worker until it says ready_for_more
		j := h.jobs[id]
		switch {
		case j == nil && h.cluster != nil && !finishedHere(finished, id):
			// Given back to the database between the takeover above and now (its release
			// committed): taken over again below, outside the lock.
			recheck = append(recheck, id)
		case j == nil:
			reason := protocol.CancelCancelled
			if f, ok := finished[id]; ok && f.status == protocol.JobCompleted && f.worker != w.id {
				reason = protocol.CancelReassigned
			}
			c.send(protocol.Cancel{JobID: id, Reason: reason})
		case j.status == protocol.JobRunning && j.holder == w.id:
			// kept above
		case j.status == protocol.JobRunning:
			c.send(protocol.Cancel{JobID: id, Reason: protocol.CancelReassigned})
		case j.status == protocol.JobQueued || j.status == protocol.JobOffered:
			// The contract: a job still queued with no holder (an open offer elsewhere is not
			// holding) goes back to the worker that runs it. Its accept may have been lost with
			// the connection, or with a hub restart before it was read, so acceptedBy is not asked.
			h.takeBack(j, w)
		case j.status == protocol.JobCompleted && j.holder != w.id:
			c.send(protocol.Cancel{JobID: id, Reason: protocol.CancelReassigned})
		default:
			c.send(protocol.Cancel{JobID: id, Reason: protocol.CancelCancelled})
		}
	}
	for _, id := range hello.Outbox {
		if j := h.jobs[id]; j != nil && (j.status == protocol.JobQueued || j.status == protocol.JobOffered) {
			// Its result is on the way: offering it elsewhere would waste a run. As for in_flight,
			// a recorded accept is not required: a hub crash can lose it after the worker started.
			h.takeBack(j, w)
		}
	}
	wid := w.id
	h.db.enqueue(func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE workers SET last_seen=$1 WHERE id=$2`, fmtTime(now), wid)
		return err
	}, nil)
	h.kickScheduler()
	h.mu.Unlock()
	if len(recheck) > 0 {
		h.takeBackElsewhere(ctx, c, w, recheck)
	}
}

// finishedHere reports whether the database said job id is finished.
func finishedHere(finished map[string]finishedJob, id string) bool {
	f, ok := finished[id]
	return ok && f.status.Done()
}

// takeBackElsewhere takes over the jobs of a hello's in_flight that were given back to the
// database while the hello was read, and gives them back to w; one that cannot be taken over any
// more (finished, or taken by another replica's worker meanwhile) is cancelled on w.
func (h *Hub) takeBackElsewhere(ctx context.Context, c *conn, w *worker, ids []string) {
	h.adopt(ctx, w.id, ids, false)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range ids {
		switch j := h.jobs[id]; {
		case j != nil && (j.status == protocol.JobQueued || j.status == protocol.JobOffered):
			h.takeBack(j, w)
		case j != nil && j.status == protocol.JobRunning && j.holder == w.id:
		case j != nil && j.status == protocol.JobRunning:
			c.send(protocol.Cancel{JobID: id, Reason: protocol.CancelReassigned})
		default:
			c.send(protocol.Cancel{JobID: id, Reason: protocol.CancelCancelled})
		}
	}
}

// unlistedLimit is how many heartbeats in a row may leave out a leased job before its lease ends:
// more than one, because a heartbeat built just before the worker sent its accept lacks the job.
const unlistedLimit = 3

// checkListed ends the lease of every job w holds that its heartbeats no longer list (the
// contract: a job is leased while the worker lists it in running). Without it a job whose run the
// worker lost — a result dropped by a late ack, a crash inside the worker — stays running forever.
func (h *Hub) checkListed(w *worker, running []string) {
	listed := make(map[string]bool, len(running))
	for _, id := range running {
		listed[id] = true
	}
	var gone []*job
	for _, j := range w.held {
		if j.status != protocol.JobRunning {
			continue
		}
		if listed[j.id] {
			j.unlisted = 0
			continue
		}
		j.unlisted++
		if j.unlisted >= unlistedLimit {
			gone = append(gone, j)
		}
	}
	for _, j := range gone {
		w.conn.log.Info("lease ended: the worker no longer lists the job", "job_id", j.id)
		h.requeue(j, leaseLost, "worker "+w.id+" no longer runs it", nil)
	}
}

// takeBack gives a queued (or offered elsewhere) job back to a worker that still runs it.
func (h *Hub) takeBack(j *job, w *worker) {
	if j.status == protocol.JobOffered {
		other := j.holder
		if ow := h.workers[other]; ow != nil {
			ow.offers = max(0, ow.offers-1)
		}
		h.sendTo(other, protocol.Cancel{JobID: j.id, Reason: protocol.CancelCancelled})
		h.kickScheduler()
	}
	w.conn.log.Info("lease taken back", "job_id", j.id)
	h.lease(j, w)
}

type finishedJob struct {
	status protocol.JobStatus
	worker string
}

func (h *Hub) finishedStatuses(ctx context.Context, ids []string) map[string]finishedJob {
	h.mu.Lock()
	var missing []string
	for _, id := range ids {
		if h.jobs[id] == nil {
			missing = append(missing, id)
		}
	}
	h.mu.Unlock()
	out := map[string]finishedJob{}
	for _, id := range missing {
		var s, wid string
		err := h.db.db.QueryRowContext(ctx, `SELECT status, worker_id FROM jobs WHERE id=$1`, id).Scan(&s, &wid)
		if err == nil {
			out[id] = finishedJob{protocol.JobStatus(s), wid}
		}
	}
	return out
}

// detach ends w's session in the state: its open offers go back to the queue, its leases start
// their grace period. Runs under h.mu.
func (h *Hub) detach(w *worker, now time.Time) {
	h.detachWith(w, now, func(j *job) { h.startGrace(j, now) })
}

// detachWith is detach with what becomes of each lease given: its grace, or (a session superseded
// on another replica, which took over the leases it kept) the end of it.
func (h *Hub) detachWith(w *worker, now time.Time, lease func(*job)) {
	var held []*job
	for _, j := range w.held {
		held = append(held, j)
	}
	for _, j := range held {
		switch j.status {
		case protocol.JobOffered:
			h.withdrawOffer(j, "")
		case protocol.JobRunning:
			lease(j)
		}
	}
	w.conn = nil
	w.offers, w.active = 0, 0
	w.lastSeen = now
	h.met.connected.Add(-1)
}

func (h *Hub) onDisconnect(w *worker, c *conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.conn != c {
		return // superseded: the new session owns the leases now
	}
	now := h.now()
	h.detach(w, now)
	c.log.Info("worker disconnected", "leases_in_grace", len(w.held))
	wid := w.id
	if h.cluster != nil {
		me, gen := h.cluster.id, w.session
		h.db.enqueue(func(tx *sql.Tx) error {
			_, err := tx.Exec(`UPDATE workers SET last_seen=$1, replica='' WHERE id=$2 AND replica=$3 AND session=$4`, fmtTime(now), wid, me, gen)
			return err
		}, nil)
		h.kickScheduler()
		return
	}
	h.db.enqueue(func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE workers SET last_seen=$1 WHERE id=$2`, fmtTime(now), wid)
		return err
	}, nil)
	h.kickScheduler()
}

// afterCommit runs fn once everything enqueued before it is committed: an answer that refers to
// an earlier write (duplicate, fail_ack) is never sent before that write is durable.
func (h *Hub) afterCommit(fn func(error)) {
	h.db.enqueue(nil, fn)
}

// ackOrDrop sends an ack once committed, or, when the commit failed, error{internal} and a close:
// the worker keeps the item and sends it again after reconnecting.
func ackOrDrop(c *conn, f protocol.Frame) func(error) {
	return func(err error) {
		if err != nil {
			c.log.Error("store failed: dropping the session so the worker resends", "err", err)
			c.closeWith(errFrame(protocol.ErrCodeInternal, "the hub could not store this"), websocket.StatusInternalError, "internal error")
			return
		}
		c.send(f)
	}
}

// sendTo queues a frame for a worker if it is connected.
func (h *Hub) sendTo(workerID string, f protocol.Frame) {
	if w := h.workers[workerID]; w != nil && w.conn != nil {
		w.conn.send(f)
	}
}

// dispatch handles one frame after hello; false ends the session.
func (h *Hub) dispatch(ctx context.Context, c *conn, w *worker, f protocol.Frame) bool {
	h.mu.Lock()
	w.lastSeen = h.now()
	h.mu.Unlock()
	switch f := f.(type) {
	case protocol.Heartbeat:
		h.mu.Lock()
		was := w.accepting
		w.state = f.Status.State
		w.accepting = f.Status.Accepting
		if w.accepting && !was {
			w.acceptingSince = h.now()
			if h.cluster != nil {
				h.acceptsAgain(w.id)
			}
		}
		w.running = f.Status.Running
		w.gpus = f.GPUs
		if f.Capabilities != nil {
			w.caps = *f.Capabilities
			w.keys = keysOf(w.caps)
		}
		h.checkListed(w, f.Status.Running)
		retry := !w.retryAt.IsZero() && h.now().After(w.retryAt)
		if retry {
			w.retryAt = time.Time{}
		}
		if (w.accepting && !was) || f.Capabilities != nil || (retry && w.accepting) {
			h.kickScheduler()
		}
		// Queued under the lock, so that an offer the kick makes cannot get ahead of the ack
		// (send never blocks).
		c.send(protocol.HeartbeatAck{})
		h.mu.Unlock()
	case protocol.Accept:
		h.mu.Lock()
		w.active++
		j := h.jobs[f.JobID]
		if j != nil && j.status == protocol.JobOffered && j.holder == w.id {
			w.offers = max(0, w.offers-1)
			h.lease(j, w)
		} else {
			reason := protocol.CancelExpired
			if j != nil && j.status == protocol.JobCancelled {
				reason = protocol.CancelCancelled
			}
			h.met.lateAccepts.Add(1)
			c.log.Info("accept of an offer no longer open", "job_id", f.JobID, "answer", reason)
			c.send(protocol.Cancel{JobID: f.JobID, Reason: reason})
		}
		h.mu.Unlock()
	case protocol.Decline:
		h.mu.Lock()
		if j := h.jobs[f.JobID]; j != nil && j.status == protocol.JobOffered && j.holder == w.id {
			h.met.decline(f.Reason)
			h.withdrawOffer(j, f.Reason)
		}
		h.mu.Unlock()
	case protocol.Progress:
		c.log.Debug("progress", "job_id", f.JobID, "fraction", f.Fraction)
	case protocol.CompleteJSON:
		h.adopt(ctx, w.id, []string{f.JobID}, false) // driven by another replica: take it over here
		h.onCompleteJSON(ctx, c, w, f)
	case protocol.Fail:
		h.adopt(ctx, w.id, []string{f.JobID}, false)
		h.onFail(c, w, f)
	case protocol.LogBatch:
		h.onLogBatch(c, w, f)
	case protocol.ReadyForMore:
		h.mu.Lock()
		w.active = max(0, w.active-1)
		h.kickScheduler()
		h.mu.Unlock()
	case protocol.Hello:
		h.protocolError(c, "hello sent twice")
		return false
	default:
		h.protocolError(c, "a worker may not send "+string(f.FrameType()))
		return false
	}
	return true
}

func (h *Hub) onCompleteJSON(ctx context.Context, c *conn, w *worker, f protocol.CompleteJSON) {
	h.mu.Lock()
	j := h.jobs[f.JobID]
	if j == nil {
		h.mu.Unlock()
		v := h.finishedVerdict(ctx, f.JobID)
		h.afterCommit(ackOrDrop(c, protocol.CompleteAck{JobID: f.JobID, Status: v}))
		return
	}
	v := verdict(w, j)
	if v == protocol.AckStored && j.kind.BinaryResult() {
		c.log.Warn("complete_json for a job whose result is a file: rejected", "job_id", j.id, "kind", j.kind)
		v = protocol.AckRejected
		if j.status == protocol.JobRunning && j.holder == w.id {
			h.requeue(j, runFailed, "the worker sent a JSON result for a "+string(j.kind)+" job", nil)
		}
	}
	if v != protocol.AckStored {
		h.mu.Unlock()
		c.log.Info("result not stored", "job_id", f.JobID, "status", v)
		h.afterCommit(ackOrDrop(c, protocol.CompleteAck{JobID: f.JobID, Status: v}))
		return
	}
	stored := ackOrDrop(c, protocol.CompleteAck{JobID: f.JobID, Status: protocol.AckStored})
	id := f.JobID
	h.complete(j, w, f.Result, "", "", "", 0, f.Prompt, func(err error) {
		if errors.Is(err, errNotOwner) {
			// Another replica took the job over meanwhile: its state answers. Off the writer's
			// goroutine, which must not wait for a read; the goroutine ends with the answer.
			go func() {
				v, _ := h.verdictElsewhere(context.Background(), w, id)
				if v == protocol.AckStored {
					v = protocol.AckRejected
				}
				c.send(protocol.CompleteAck{JobID: id, Status: v})
			}()
			return
		}
		stored(err)
	})
	h.mu.Unlock()
	c.log.Info("result stored", "job_id", f.JobID)
}

// finishedVerdict answers a result for a job that is not in memory: duplicate when it is
// completed, rejected otherwise (failed, cancelled or unknown).
func (h *Hub) finishedVerdict(ctx context.Context, id string) protocol.AckStatus {
	var s string
	err := h.db.db.QueryRowContext(ctx, `SELECT status FROM jobs WHERE id=$1`, id).Scan(&s)
	if err == nil && protocol.JobStatus(s) == protocol.JobCompleted {
		return protocol.AckDuplicate
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		h.log.Error("look up a finished job", "job_id", id, "err", err)
	}
	return protocol.AckRejected
}

func (h *Hub) onFail(c *conn, w *worker, f protocol.Fail) {
	ack := ackOrDrop(c, protocol.FailAck{JobID: f.JobID})
	h.mu.Lock()
	defer h.mu.Unlock()
	j := h.jobs[f.JobID]
	if j == nil || j.status != protocol.JobRunning || j.holder != w.id {
		h.afterCommit(ack) // changes nothing for a job the worker does not hold
		return
	}
	c.log.Info("job failed on the worker", "job_id", j.id, "retryable", f.Retryable, "error", f.Error)
	if f.Retryable {
		h.requeue(j, runFailed, "worker "+w.id+": "+f.Error, ack)
		return
	}
	h.finish(j, protocol.JobFailed, f.Error, ack)
}

func (h *Hub) onLogBatch(c *conn, w *worker, f protocol.LogBatch) {
	wid, entries, seq := w.id, f.Entries, f.Seq
	h.db.enqueue(func(tx *sql.Tx) error {
		for _, e := range entries {
			if _, err := tx.Exec(`INSERT INTO worker_logs(worker_id, seq, ts, level, source, message, job_id) VALUES($1,$2,$3,$4,$5,$6,$7)`,
				wid, seq, fmtTime(e.TS), string(e.Level), e.Source, e.Message, e.JobID); err != nil {
				return err
			}
		}
		_, err := tx.Exec(`DELETE FROM worker_logs WHERE worker_id=$1 AND id <= (
			SELECT id FROM worker_logs WHERE worker_id=$2 ORDER BY id DESC LIMIT 1 OFFSET $3)`, wid, wid, maxLogsPerWorker)
		return err
	}, ackOrDrop(c, protocol.LogAck{Seq: seq}))
}
