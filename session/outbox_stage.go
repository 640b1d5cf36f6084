// outbox_stage.go: a JSON result's or a fail's outbox entry that is sent before it is made
// durable — written whole under a temporary name, the frame sent, then dropped on a quick ack or
// flushed and renamed into place (commit). openOutbox (outbox.go) takes a whole temporary entry
// back after a crash. It must not know the frames.

package session

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"studioworker/internal/durable"
	"time"
)

// staged is an entry written under a temporary name but not yet flushed nor in place.
type staged struct {
	f   *os.File
	tmp string
}

// stage writes a JSON result's or a fail's entry under a temporary name, without flushing it, and
// adds it to the outbox in memory, so that its frame can be sent at once; settle then drops it
// when the hub acknowledges it soon, or makes it durable (commit). Sending before the fsync loses
// nothing a killed worker would keep: the file is written whole before the frame is sent, and
// openOutbox takes a whole temporary entry back, so it is delivered after the restart; only a
// power cut within flushAfter can lose it, when the hub most likely holds the result already. What it saves is
// the flush (about a millisecond, more for a long answer) in front of every result. File results
// go through putFile, durable before their upload starts.
func (o *outbox) stage(m outboxMeta) (*outboxItem, *staged, error) {
	m.Version = outboxVersion
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now().UTC()
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, nil, fmt.Errorf("outbox: encode %s: %w", m.JobID, err)
	}
	name := safeName(m.JobID) + "." + nonce() + metaSuffix
	f, err := os.CreateTemp(o.dir, "."+name+".*"+tmpSuffix)
	if err != nil {
		return nil, nil, fmt.Errorf("outbox: write %s: %w", m.JobID, err)
	}
	st := &staged{f: f, tmp: f.Name()}
	if err := f.Chmod(0o600); err == nil {
		_, err = f.Write(b)
	}
	if err != nil {
		st.discard()
		return nil, nil, fmt.Errorf("outbox: write %s: %w", m.JobID, err)
	}
	it := o.insert(m, name)
	o.mu.Lock()
	it.committing = !it.removed
	if !it.removed {
		it.gone = make(chan struct{})
	}
	o.mu.Unlock()
	return it, st, nil
}

// defaultFlushAfter bounds how long a delivered JSON result or fail stays unflushed waiting for
// its ack. An ack usually comes within milliseconds (the hub's commit plus a round trip), and an
// entry acknowledged before it is flushed is never flushed at all: the flush would keep on disk
// something about to be deleted, and on the machine of a hub beside the worker it queues behind
// the hub's own commit. Long enough for a round trip across the internet, short enough that a
// result whose ack is lost is soon on disk.
const defaultFlushAfter = 500 * time.Millisecond

// settle ends a staged entry: when its ack (or the hub's cancel) removes it within flushAfter,
// the unflushed file is dropped; otherwise, or at once when the connection it was sent on ends
// (connDone) or the session stops (stop), it is committed.
func (o *outbox) settle(it *outboxItem, st *staged, connDone, stop <-chan struct{}) error {
	t := time.NewTimer(o.flushAfter)
	defer t.Stop()
	select {
	case <-it.gone:
		o.drop(it, st)
		return nil
	case <-t.C:
	case <-connDone:
	case <-stop:
	}
	select {
	case <-it.gone: // removed as the wait ended: an ack still wins over a stop
		o.drop(it, st)
		return nil
	default:
	}
	return o.commit(it, st)
}

// drop forgets a staged entry that was removed before it was flushed.
func (o *outbox) drop(it *outboxItem, st *staged) {
	o.mu.Lock()
	it.committing = false
	o.mu.Unlock()
	st.discard()
}

func (st *staged) discard() {
	_ = st.f.Close()
	_ = os.Remove(st.tmp)
}

// commit flushes a staged entry and renames it into place, durably. An entry removed meanwhile
// (its ack came first, the hub cancelled the job) is deleted instead of left behind. When commit
// fails the entry stays in memory, and is delivered from there, but would not survive a restart.
func (o *outbox) commit(it *outboxItem, st *staged) error {
	final := filepath.Join(o.dir, it.metaName)
	err := o.syncFile(st.f)
	if cerr := st.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = durable.Rename(st.tmp, final)
	}
	if err != nil {
		_ = os.Remove(st.tmp)
	}
	o.mu.Lock()
	it.committing = false
	removed := it.removed
	o.mu.Unlock()
	if removed && err == nil {
		if rerr := os.Remove(final); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			o.log.Warn("outbox: remove entry", "job_id", it.meta.JobID, "err", rerr)
		}
	}
	if err != nil {
		return fmt.Errorf("outbox: write %s: %w", it.meta.JobID, err)
	}
	return nil
}
