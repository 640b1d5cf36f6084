// outbox_delivery.go is the outbox's delivery bookkeeping, in memory: which entries were sent on
// which connection, which upload is due next and when a failed one is retried. It must not touch
// the entries' files: outbox.go owns them.

package session

import (
	"context"
	"slices"
	"time"
)

// ids lists the outbox in delivery order.
func (o *outbox) ids() []string {
	return o.idsWhere(func(*outboxItem) bool { return true })
}

func (o *outbox) idsWhere(keep func(*outboxItem) bool) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	its := make([]*outboxItem, 0, len(o.items))
	for _, it := range o.items {
		if keep(it) {
			its = append(its, it)
		}
	}
	slices.SortFunc(its, func(a, b *outboxItem) int { return int(a.seq) - int(b.seq) })
	ids := make([]string, len(its))
	for i, it := range its {
		ids[i] = it.meta.JobID
	}
	return ids
}

// claimFrames returns, in order, the frame entries (JSON results and fails) not yet sent on
// connection gen, and marks them sent on it. Claiming under the lock is what keeps the job that
// just finished and the post-reconnect flush from sending the same entry twice on one connection.
func (o *outbox) claimFrames(gen uint64, only string) []outboxMeta {
	o.mu.Lock()
	defer o.mu.Unlock()
	var its []*outboxItem
	for id, it := range o.items {
		if (only != "" && id != only) || it.meta.Type == itemFile || it.sentGen == gen {
			continue
		}
		its = append(its, it)
	}
	slices.SortFunc(its, func(a, b *outboxItem) int { return int(a.seq) - int(b.seq) })
	out := make([]outboxMeta, len(its))
	for i, it := range its {
		it.sentGen = gen
		out[i] = it.meta
	}
	return out
}

// sentOn reports whether an ack on connection gen can answer the entry: a frame entry must have
// been sent on gen; a file entry (answered by its upload) is not tied to a connection.
func (o *outbox) sentOn(it *outboxItem, gen uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return it.meta.Type == itemFile || it.sentGen == gen
}

// unclaim forgets that an entry was sent on gen, after the write failed.
func (o *outbox) unclaim(jobID string, gen uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if it := o.items[jobID]; it != nil && it.sentGen == gen {
		it.sentGen = 0
	}
}

// nextUpload picks the oldest file entry that is due and marks it uploading; otherwise it says
// when the next one is due (zero when none is waiting).
func (o *outbox) nextUpload(now time.Time) (it *outboxItem, next time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, c := range o.items {
		if c.meta.Type != itemFile || c.uploading {
			continue
		}
		if c.notBefore.After(now) {
			if next.IsZero() || c.notBefore.Before(next) {
				next = c.notBefore
			}
			continue
		}
		if it == nil || c.seq < it.seq {
			it = c
		}
	}
	if it != nil {
		it.uploading = true
	}
	return it, next
}

// uploadDone records the end of an upload attempt; retryAfter > 0 schedules another one.
func (o *outbox) uploadDone(it *outboxItem, retryAfter time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	it.uploading = false
	it.cancel = nil
	if retryAfter > 0 {
		it.failures++
		it.notBefore = time.Now().Add(retryAfter)
	} else {
		it.failures = 0
		it.notBefore = time.Time{}
	}
}

// retryNow makes every waiting upload due, after a (re)connect: the outbox goes first.
func (o *outbox) retryNow() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, it := range o.items {
		it.notBefore = time.Time{}
		it.failures = 0
	}
}

func (o *outbox) setCancel(it *outboxItem, cancel context.CancelFunc) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if it.removed {
		return false
	}
	it.cancel = cancel
	return true
}

func (o *outbox) failures(it *outboxItem) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return it.failures
}

// rejected counts one more "not yours" answer and returns the count.
func (o *outbox) rejected(it *outboxItem) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	it.rejects++
	return it.rejects
}

func (o *outbox) markRecheck(it *outboxItem) (first bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	first = !it.recheck
	it.recheck = true
	return first
}
