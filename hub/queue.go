// queue.go: the ready queues, one per kind and model, oldest job first, and the one way into them
// (enqueueJob). A queue orders by seq alone and leaves the entries of jobs that moved on for the
// next scan to drop, so taking a job from the middle costs nothing. It must not know about
// workers, offers or the database: which job a worker gets is scheduler.go's choice.

package hub

import (
	"slices"
	"sort"

	"studioworker/protocol"
)

// queueKey names one queue. A worker advertises models per kind, so keeping a queue per pair lets
// a pick look only at jobs the worker can run.
type queueKey struct {
	kind  protocol.Kind
	model string
}

// keysOf is the queues a worker's capabilities let it take from.
func keysOf(c protocol.Capabilities) []queueKey {
	var keys []queueKey
	for kind, models := range c.SupportedModelsPerKind {
		for _, m := range models {
			keys = append(keys, queueKey{kind, m})
		}
	}
	return keys
}

// queue holds the queued jobs of one kind and model, oldest (lowest seq) first. Entries of jobs
// that left the queued state stay until a scan meets them, so taking a job from the middle costs
// nothing; head advances over the front.
type queue struct {
	items []*job
	head  int
}

// maxScan bounds how many queued jobs one pick looks at past jobs the worker cannot take (too
// large an estimate, already declined), so a deep queue of unsuitable jobs cannot stall offers.
const maxScan = 1024

func (q *queue) push(j *job) {
	if j.inQueue {
		return // its old entry is still in place, at the right position
	}
	j.inQueue = true
	live := q.items[q.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].seq > j.seq })
	if i == len(live) {
		q.items = append(q.items, j)
		return
	}
	q.items = slices.Insert(q.items, q.head+i, j)
}

// peek returns the index of the oldest queued job ok accepts, or -1.
func (q *queue) peek(ok func(*job) bool) int {
	for q.head < len(q.items) && q.items[q.head].status != protocol.JobQueued {
		q.items[q.head].inQueue = false
		q.items[q.head] = nil
		q.head++
	}
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
		return -1
	}
	if q.head > 1024 && q.head > len(q.items)/2 {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	scanned, dead := 0, 0
	for i := q.head; i < len(q.items) && scanned < maxScan; i++ {
		j := q.items[i]
		if j.status != protocol.JobQueued {
			dead++
			continue
		}
		if ok(j) {
			if dead > 256 {
				return q.compactFind(j)
			}
			return i
		}
		scanned++
	}
	return -1
}

// compactFind drops stale entries and returns the new index of j.
func (q *queue) compactFind(target *job) int {
	out := q.items[:0]
	idx := -1
	for _, j := range q.items[q.head:] {
		if j.status != protocol.JobQueued {
			j.inQueue = false
			continue
		}
		if j == target {
			idx = len(out)
		}
		out = append(out, j)
	}
	clear(q.items[len(out):])
	q.items, q.head = out, 0
	return idx
}

// take removes the entry at i (from peek).
func (q *queue) take(i int) *job {
	j := q.items[i]
	j.inQueue = false
	if i == q.head {
		q.items[i] = nil
		q.head++
		return j
	}
	q.items = slices.Delete(q.items, i, i+1)
	return j
}

// enqueueJob makes j queued, held by nobody, and asks for a scheduling pass. Every way back into
// the queue (submit, a withdrawn offer, a requeue, recovery) goes through it, so a job's status and
// its queue entry never disagree.
func (h *Hub) enqueueJob(j *job) {
	h.setStatus(j, protocol.JobQueued)
	h.setHolder(j, "")
	if h.cluster != nil {
		return // a replica's queue is the database's: the write that follows gives the job back
	}
	q := h.queues[queueKey{j.kind, j.model}]
	if q == nil {
		q = &queue{}
		h.queues[queueKey{j.kind, j.model}] = q
	}
	q.push(j)
	h.kickScheduler()
}
