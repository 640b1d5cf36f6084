// model.go: the hub's in-memory picture of jobs and workers, and the small rules read straight off
// it (has a worker room, does it take this VRAM, does a decline or a retry cool-off still hold).
// They live beside the fields they read so that the scheduler and waiting.go, which both ask
// them, cannot drift apart.
// Nothing here changes state or takes a lock: it must not know about the database, the queues or
// the scheduler loop, and every field is touched under Hub.mu by the files that own the change.

package hub

import (
	"encoding/json"
	"slices"
	"time"

	"studioworker/protocol"
)

// job is the authoritative state of an unfinished job (and of a finished one until its row is
// committed). It lives in Hub.jobs and is only touched under Hub.mu.
type job struct {
	id        string
	seq       uint64
	kind      protocol.Kind
	model     string
	vram      float64
	input     json.RawMessage
	inputFile string // name under dirs.inputs, "" when none
	inputType string
	created   time.Time

	status   protocol.JobStatus
	holder   string // worker id of the open offer (offered) or of the lease (running, completed)
	attempts int
	errText  string
	// acceptedBy lists every worker that accepted the job at some attempt: a result from one of
	// them is stored when nobody else holds the job.
	acceptedBy []string
	// declined maps the workers that declined (or let expire) an offer of the current attempt to
	// when they may be offered it again: never for this attempt after `unsupported` or `user`,
	// after a cool-off for a reason that passes (busy, paused, vram, expired) — otherwise a job
	// that the only suitable worker turned down while it was briefly busy would wait forever.
	declined map[string]declineMark
	// coolOffs keeps the job from the workers whose run of it ended without a result (a
	// retryable fail, a lost lease) for RetryCoolOff, across attempts: the retry cool-off of the
	// contract's §6, a separate rule from declined. At most one mark per worker, and expired
	// ones go whenever one is added, so it is never longer than the attempts (< MaxAttempts);
	// it is dropped when the job ends.
	coolOffs []retryMark
	inQueue  bool // an entry for it is in its queue (possibly stale while offered)

	offerSeq   uint64 // identifies the open offer, so a stale timer does nothing
	offerUntil time.Time
	leaseGen   uint64    // bumped on every lease change, so a stale grace timer does nothing
	graceUntil time.Time // non-zero while its holder is disconnected
	// unlisted counts the holder's heartbeats in a row whose status.running lacks this leased
	// job: the lease lasts while the worker lists the job.
	unlisted int

	result     json.RawMessage
	resultFile string
	resultExt  string
}

func (j *job) accepted(workerID string) bool { return slices.Contains(j.acceptedBy, workerID) }

// worker is a registered worker and, while connected, its session state.
type worker struct {
	id        string
	name      string
	tokenHash [32]byte
	revoked   bool // Revoke ran: the id stays only until its session and leases are gone

	conn      *conn // nil when disconnected
	session   int64 // on PostgreSQL, the database's count of this worker's sessions at its hello here
	baseURL   string
	caps      protocol.Capabilities
	keys      []queueKey
	state     protocol.WorkerState
	accepting bool
	running   []string
	gpus      []protocol.GPUStat
	lastSeen  time.Time
	lastOffer time.Time // longest-idle first: the worker given work least recently goes first
	// retryAt is when a job this worker declined for a passing reason may be offered to it again;
	// its next heartbeat after that time runs the scheduler.
	retryAt time.Time
	// acceptingSince is when the worker's heartbeats last turned to accepting: a decline for
	// `busy` or `paused` made before that no longer holds (the worker resumed, a slot freed).
	acceptingSince time.Time

	held   map[string]*job // jobs whose holder it is (offers and leases)
	offers int             // open offers
	// active counts runs the worker has not yet reported ended with ready_for_more: every accept
	// frame (late ones too: the worker starts them and ends them on cancel) and every
	// hello.in_flight entry, minus every ready_for_more.
	active int
}

func (w *worker) slots() int { return max(1, w.caps.MaxConcurrentJobs) }

// hasRoom reports whether w may be sent an offer now: connected, accepting, a slot free. The
// scheduler asks it, and waiting.go explains a queued job with the same rule.
func (w *worker) hasRoom() bool {
	return w.conn != nil && w.accepting && w.offers+w.active < w.slots()
}

// takesVRAM reports whether w's vram_threshold_gb covers an estimate; a worker that advertises 0
// (no GPU seen, no limit of its creator's) takes only jobs that state no VRAM need.
func (w *worker) takesVRAM(gb float64) bool { return gb <= w.caps.VRAMThresholdGB }

func (w *worker) info() protocol.WorkerInfo {
	state := w.state
	if state == "" {
		state = protocol.StateIdle
	}
	return protocol.WorkerInfo{
		WorkerID:  w.id,
		Name:      w.name,
		Connected: w.conn != nil,
		State:     state,
		Running:   protocol.List[string](slices.Clone(w.running)),
		GPUs:      protocol.List[protocol.GPUStat](slices.Clone(w.gpus)),
		LastSeen:  w.lastSeen.UTC(),
	}
}

// declineMark records a worker's decline of the current attempt.
type declineMark struct {
	at, until time.Time
	reason    protocol.DeclineReason
}

// holds reports whether the decline still keeps the job from w at now.
func (d declineMark) holds(w *worker, now time.Time) bool {
	if !now.Before(d.until) {
		return false
	}
	switch d.reason {
	case protocol.DeclineBusy, protocol.DeclinePaused:
		return !w.acceptingSince.After(d.at)
	}
	return true
}

// retryMark is one worker's retry cool-off on a job: its run ended without a result, so it is not
// offered the job again before until, whoever else can or cannot take it. (The contract's "while
// another connected worker can take it" needs no test of its own: with another one, that one is
// offered the job; with none, the job waits for until either way.)
type retryMark struct {
	worker string
	until  time.Time
	lost   bool // the lease was lost rather than the run failed: only the waiting sentence differs
}

// coolingOff returns the retry cool-off that keeps j from w at now, if one does.
func (j *job) coolingOff(workerID string, now time.Time) (retryMark, bool) {
	for _, m := range j.coolOffs {
		if m.worker == workerID && now.Before(m.until) {
			return m, true
		}
	}
	return retryMark{}, false
}

// farFuture excludes a worker from a job for the rest of the attempt.
var farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
