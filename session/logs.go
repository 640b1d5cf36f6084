// logs.go ships the worker's log lines to the hub in bounded batches, counting what overflows.

package session

import (
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"studioworker/protocol"
)

// Log shipping: entries wait in a bounded buffer; a batch taken from it gets the next seq of this
// process and stays pending until the hub's log_ack for that seq, and is sent again on every new
// connection until then. Entries in pending batches count against the bound, so a hub that never
// acks cannot make the worker's memory grow: past the bound new entries are dropped and counted,
// and the count is reported as one warn entry in the next batch.

const (
	maxPendingBatches = 4         // batches sent and not yet acked
	maxBatchEntries   = 500       // entries per batch
	maxBatchBytes     = 512 << 10 // rough encoded size per batch, well under the 1 MiB frame cap
	maxMessageBytes   = 16 << 10  // a longer message is cut
	entryOverhead     = 96        // JSON keys, timestamp, level
)

type logBatch struct {
	seq     uint64
	entries []protocol.LogEntry
	sentGen uint64 // connection generation it was last sent on
}

type logShipper struct {
	limit int

	mu       sync.Mutex
	buf      []protocol.LogEntry
	overflow int
	pending  []*logBatch
	held     int // entries in pending batches
	nextSeq  uint64

	// wake says that entries are waiting, so the shipper sleeps while there is nothing to ship
	// instead of waking every interval (an idle worker's CPU is mostly its wakeups).
	wake chan struct{}
}

func newLogShipper(limit int) *logShipper {
	return &logShipper{limit: limit, wake: make(chan struct{}, 1)}
}

// signal wakes the shipper; it never blocks.
func (l *logShipper) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// add buffers e, or counts it as dropped when the buffer is full. It never blocks for long.
func (l *logShipper) add(e protocol.LogEntry) {
	if e.TS.IsZero() {
		e.TS = time.Now()
	}
	e.TS = e.TS.UTC()
	if e.Level == "" {
		e.Level = protocol.LevelInfo
	}
	if len(e.Message) > maxMessageBytes {
		cut := maxMessageBytes
		for cut > 0 && !utf8.RuneStart(e.Message[cut]) {
			cut--
		}
		e.Message = e.Message[:cut] + "…"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.signal()
	if len(l.buf)+l.held >= l.limit {
		l.overflow++
		return
	}
	l.buf = append(l.buf, e)
}

// due returns the batches to write on connection gen: every pending batch not yet sent on it, in
// seq order, then new batches while there is room. They are marked sent on gen.
func (l *logShipper) due(gen uint64) []*logBatch {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*logBatch
	for _, b := range l.pending {
		if b.sentGen != gen {
			b.sentGen = gen
			out = append(out, b)
		}
	}
	for len(l.pending) < maxPendingBatches && (len(l.buf) > 0 || l.overflow > 0) {
		b := l.take()
		b.sentGen = gen
		l.pending = append(l.pending, b)
		out = append(out, b)
	}
	return out
}

// take cuts the next batch from the buffer; l.mu is held.
func (l *logShipper) take() *logBatch {
	n, size := 0, 0
	for n < len(l.buf) && n < maxBatchEntries {
		e := &l.buf[n]
		sz := entryOverhead + len(e.Message) + len(e.Source) + len(e.JobID)
		if n > 0 && size+sz > maxBatchBytes {
			break
		}
		size += sz
		n++
	}
	entries := make([]protocol.LogEntry, 0, n+1)
	entries = append(entries, l.buf[:n]...)
	l.buf = append(l.buf[:0], l.buf[n:]...)
	if l.overflow > 0 {
		entries = append(entries, protocol.LogEntry{
			TS: time.Now().UTC(), Level: protocol.LevelWarn, Source: "session",
			Message: fmt.Sprintf("%d log entries dropped: the worker's log buffer was full", l.overflow),
		})
		l.overflow = 0
	}
	l.nextSeq++
	l.held += len(entries)
	return &logBatch{seq: l.nextSeq, entries: entries}
}

// unsent forgets that b was sent on gen after its write failed, so the next connection sends it.
func (l *logShipper) unsent(b *logBatch, gen uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b.sentGen == gen {
		b.sentGen = 0
	}
}

// ack drops the batch with seq; it reports whether one was pending.
func (l *logShipper) ack(seq uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, b := range l.pending {
		if b.seq == seq {
			l.held -= len(b.entries)
			l.pending = append(l.pending[:i], l.pending[i+1:]...)
			return true
		}
	}
	return false
}

// stats reports the entries buffered (not yet in a batch), in pending batches, and dropped.
func (l *logShipper) stats() (buffered, pending, dropped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buf), l.held, l.overflow
}
