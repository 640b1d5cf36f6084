// scheduler.go: matching queued jobs to workers, the offers that result (made, withdrawn, declined
// with a cool-off), and the loop that runs scheduling passes, fires timers and closes silent
// sessions. Offers are made here and nowhere else, so the least-recently-served order and the
// one-offer-per-worker-per-round rule hold for every job. It must not know about leases, results
// or the database: an accepted job leaves its hands (lifecycle.go), and an open offer is never
// durable.

package hub

import (
	"container/heap"
	"context"
	"time"

	"studioworker/protocol"
)

// kickScheduler asks for a scheduling pass without waiting: one pending kick covers any number of
// changes, so a caller under Hub.mu never blocks on the loop.
func (h *Hub) kickScheduler() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// schedulerLoop owns offers and timers: it runs a scheduling pass when kicked and fires timers
// when due, and closes sessions that went silent.
func (h *Hub) schedulerLoop(ctx context.Context) {
	defer h.loops.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	sweep := time.NewTicker(h.cfg.HeartbeatInterval)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.kick:
		case <-timer.C:
		case <-sweep.C:
			h.sweepSilent()
		}
		h.mu.Lock()
		now := h.now()
		h.fireTimers(now)
		h.schedule(now)
		h.mu.Unlock()
		if h.cluster != nil {
			h.scheduleCluster(ctx)
		}
		h.mu.Lock()
		at, ok := h.nextTimer()
		h.mu.Unlock()
		d := time.Hour
		if ok {
			d = max(at.Sub(now), time.Millisecond)
		}
		timer.Reset(d)
	}
}

// sweepSilent closes sessions that sent nothing for three heartbeat intervals: their leases then
// follow the grace rule.
func (h *Hub) sweepSilent() {
	h.mu.Lock()
	defer h.mu.Unlock()
	limit := h.now().Add(-3 * h.cfg.HeartbeatInterval)
	for _, w := range h.workers {
		if w.conn != nil && w.lastSeen.Before(limit) {
			h.log.Warn("closing a silent session", "worker_id", w.id, "last_seen", w.lastSeen)
			w.conn.closeWith(nil, 1001, "no heartbeat")
		}
	}
}

// schedule offers queued jobs to connected, accepting workers with a free slot: the worker with
// the fewest offers and runs first and, among equals, the least recently served, each taking the
// oldest job it can run, one offer per worker per round so a many-slot worker does not take
// everything.
func (h *Hub) schedule(now time.Time) {
	if h.closing || h.met.queued() == 0 {
		return
	}
	var cands []*worker
	for _, w := range h.workers {
		if len(w.keys) > 0 && w.hasRoom() {
			cands = append(cands, w)
		}
	}
	// Workers are taken in order from a heap, not a sorted list: a pass usually places a few
	// jobs among thousands of idle workers, and ends as soon as the queue is empty.
	for len(cands) > 0 && h.met.queued() > 0 {
		round := workerHeap(cands)
		heap.Init(&round)
		var next []*worker
		for round.Len() > 0 && h.met.queued() > 0 {
			w := heap.Pop(&round).(*worker)
			j := h.pickFor(w)
			if j == nil {
				continue
			}
			h.offer(j, w, now)
			if w.conn != nil && w.offers+w.active < w.slots() {
				next = append(next, w)
			}
		}
		cands = next
	}
}

// workerHeap orders workers by load (offers and runs), then by the longest since their last offer.
type workerHeap []*worker

func (q workerHeap) Len() int { return len(q) }
func (q workerHeap) Less(a, b int) bool {
	la, lb := q[a].offers+q[a].active, q[b].offers+q[b].active
	if la != lb {
		return la < lb
	}
	return q[a].lastOffer.Before(q[b].lastOffer)
}
func (q workerHeap) Swap(a, b int) { q[a], q[b] = q[b], q[a] }
func (q *workerHeap) Push(x any)   { *q = append(*q, x.(*worker)) }
func (q *workerHeap) Pop() any {
	old := *q
	w := old[len(old)-1]
	*q = old[:len(old)-1]
	return w
}

// pickFor takes, across w's queues, the oldest job w's VRAM limit covers, no decline of w's still
// holds and no retry cool-off keeps from w; age decides across models, so a busy model cannot
// starve an older job of another.
func (h *Hub) pickFor(w *worker) *job {
	now := h.now()
	ok := func(j *job) bool {
		if !w.takesVRAM(j.vram) {
			return false
		}
		if mark, declined := j.declined[w.id]; declined && mark.holds(w, now) {
			return false
		}
		_, cooling := j.coolingOff(w.id, now)
		return !cooling
	}
	var bestQ *queue
	best := -1
	for _, k := range w.keys {
		q := h.queues[k]
		if q == nil {
			continue
		}
		i := q.peek(ok)
		if i >= 0 && (best < 0 || q.items[i].seq < bestQ.items[best].seq) {
			bestQ, best = q, i
		}
	}
	if best < 0 {
		return nil
	}
	return bestQ.take(best)
}

// offer sends j to w and counts it against w's slots until it is accepted, declined or expires;
// the claim's expires_at is the instant the expiry timer fires, so the worker is told the hub's
// own deadline. An input URL uses PublicURL when set, else the address the worker reached us on.
func (h *Hub) offer(j *job, w *worker, now time.Time) {
	h.setStatus(j, protocol.JobOffered)
	h.setHolder(j, w.id)
	h.nextSeq++
	j.offerSeq = h.nextSeq
	ttl := h.offerTTL(w)
	j.offerUntil = now.Add(ttl)
	w.offers++
	w.lastOffer = now
	h.timeOffer(j)
	claim := protocol.Claim{
		JobID:          j.id,
		Kind:           j.kind,
		Model:          j.model,
		VRAMGBEstimate: j.vram,
		Input:          j.input,
		ExpiresAt:      j.offerUntil.UTC(),
	}
	if j.inputFile != "" {
		base := h.cfg.PublicURL
		if base == "" {
			base = w.baseURL
		}
		claim.InputURL = base + protocol.InputPath(j.id)
	}
	h.met.offers.Add(1)
	w.conn.send(protocol.Offer{Claim: claim, TTLMS: ttl.Milliseconds()})
}

// offerTTL is how long w has to answer an offer: a worker whose user answers each offer by hand
// gets at least ManualOfferTTL (spec §6), since a person needs more than the seconds a program does.
func (h *Hub) offerTTL(w *worker) time.Duration {
	if !w.caps.AutoAccept {
		return max(h.cfg.OfferTTL, h.cfg.ManualOfferTTL)
	}
	return h.cfg.OfferTTL
}

// declineCoolOff is how long a worker that declined a job for a passing reason is not offered the
// same attempt again.
func (h *Hub) declineCoolOff() time.Duration { return h.cfg.OfferTTL }

// withdrawOffer puts an offered job back in the queue. A non-empty reason records that the holder
// refused this attempt (an expired offer counts as `expired`); "" is a withdrawal (disconnect).
func (h *Hub) withdrawOffer(j *job, reason protocol.DeclineReason) {
	if w := h.workers[j.holder]; w != nil {
		w.offers = max(0, w.offers-1)
		if reason != "" {
			if j.declined == nil {
				j.declined = map[string]declineMark{}
			}
			until := farFuture
			switch reason {
			case protocol.DeclineUnsupported, protocol.DeclineUser:
			default:
				until = h.now().Add(h.declineCoolOff())
				if w.retryAt.IsZero() || until.Before(w.retryAt) {
					w.retryAt = until
				}
			}
			j.declined[w.id] = declineMark{at: h.now(), until: until, reason: reason}
			if h.cluster != nil {
				h.markDecline(j, w.id, until, reason)
			}
		}
	}
	h.enqueueJob(j)
	if h.cluster != nil {
		h.persistJob(j, nil) // given back to the database, for any replica's worker
	}
}
