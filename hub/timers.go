// timers.go: the deadlines that end an open offer (OfferTTL), a disconnected holder's lease
// (LeaseGrace) or a retry cool-off (RetryCoolOff), in one heap the scheduler loop sleeps on. A
// timer is never cancelled: it carries the offer's or the lease's token, so one that outlived its
// offer or lease does nothing, and the end of a cool-off only wakes the loop, whose scheduling
// pass then offers the job. It must not know what an expiry leads to beyond handing the job to
// withdrawOffer or requeue.

package hub

import (
	"container/heap"
	"time"

	"studioworker/protocol"
)

// timerKind says which deadline an item is: the token it carries means offerSeq or leaseGen.
type timerKind int

const (
	timerOffer timerKind = iota
	timerLease
	timerCoolOff // carries no token: waking the loop once too often costs one scheduling pass
)

type timerItem struct {
	at    time.Time
	kind  timerKind
	jobID string
	token uint64
}

// timerHeap keeps the earliest deadline at the head, so the loop sleeps until exactly that one.
type timerHeap []timerItem

func (t timerHeap) Len() int           { return len(t) }
func (t timerHeap) Less(i, j int) bool { return t[i].at.Before(t[j].at) }
func (t timerHeap) Swap(i, j int)      { t[i], t[j] = t[j], t[i] }
func (t *timerHeap) Push(x any)        { *t = append(*t, x.(timerItem)) }
func (t *timerHeap) Pop() any {
	old := *t
	it := old[len(old)-1]
	*t = old[:len(old)-1]
	return it
}

// fireTimers handles offer expiries and lease grace ends that are due. A cool-off's end needs
// nothing here: the scheduling pass that follows every firing offers the job.
func (h *Hub) fireTimers(now time.Time) {
	for len(h.timers) > 0 && !h.timers[0].at.After(now) {
		it := heap.Pop(&h.timers).(timerItem)
		j := h.jobs[it.jobID]
		if j == nil {
			continue
		}
		switch it.kind {
		case timerOffer:
			if j.status == protocol.JobOffered && j.offerSeq == it.token {
				h.met.expiries.Add(1)
				h.log.Debug("offer expired", "job_id", j.id, "worker_id", j.holder)
				h.withdrawOffer(j, protocol.DeclineExpired)
			}
		case timerLease:
			if j.status == protocol.JobRunning && j.leaseGen == it.token && !j.graceUntil.IsZero() {
				h.log.Info("lease lost: the worker did not come back in time", "job_id", j.id, "worker_id", j.holder)
				h.requeue(j, leaseLost, "lease lost: worker "+j.holder+" did not come back", nil)
			}
		}
	}
}

// nextTimer is when the scheduler loop must wake next; false when nothing is pending.
func (h *Hub) nextTimer() (time.Time, bool) {
	if len(h.timers) == 0 {
		return time.Time{}, false
	}
	return h.timers[0].at, true
}

// timeOffer arms the expiry of j's open offer at offerUntil.
func (h *Hub) timeOffer(j *job) {
	heap.Push(&h.timers, timerItem{at: j.offerUntil, kind: timerOffer, jobID: j.id, token: j.offerSeq})
}

// startGrace keeps a disconnected worker's lease on j for LeaseGrace.
func (h *Hub) startGrace(j *job, now time.Time) {
	j.leaseGen++
	j.graceUntil = now.Add(h.cfg.LeaseGrace)
	heap.Push(&h.timers, timerItem{at: j.graceUntil, kind: timerLease, jobID: j.id, token: j.leaseGen})
}

// timeCoolOff wakes the scheduler loop when a retry cool-off on j ends.
func (h *Hub) timeCoolOff(j *job, at time.Time) {
	heap.Push(&h.timers, timerItem{at: at, kind: timerCoolOff, jobID: j.id})
}
