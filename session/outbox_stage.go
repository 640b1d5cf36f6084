// outbox_stage.go: a JSON result's or a fail's outbox entry that is sent before it is made
// durable — appended whole to the outbox's stage log, the frame sent, then dropped on a quick ack
// (a tombstone line) or flushed into an entry file of its own (commit). openOutbox (outbox.go)
// takes back, through loadStageLog, what a crash left live in a stage log. It must not know the
// frames.

package session

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"time"

	"studioworker/internal/durable"
)

// A stage log is one append-only file of lines, each written whole by one write(2):
//
//	s <entry name> <crc32 of the JSON, 8 hex digits> <the entry's JSON>\n   an entry staged
//	d <entry name>\n                                                        the entry settled
//
// One file for every staged entry, instead of a temporary file made and removed per entry, is
// what a result's way through the outbox costs two appends for instead of a create, a chmod, a
// write, a close and an unlink (each creation and removal a journaled change to the folder, the
// largest part of a worker's CPU per job in the throughput bench). An entry's JSON never holds a
// raw newline (encoding/json escapes it), so a line is a record.
const (
	stageLogPrefix = ".stage-"
	stageLogSuffix = ".log"
	// stageLogMax is the size after which the next entry goes to a new log; a full log is
	// removed once every entry in it is settled, so the logs on disk stay small and few.
	stageLogMax = 1 << 20
)

// stageLog is one stage log file; its counters are guarded by outbox.stageMu.
type stageLog struct {
	f    *os.File
	path string
	size int64
	live int  // entries staged in it and not yet settled
	full bool // no more entries go in; removed when live reaches 0
}

// staged is an entry appended to a stage log but not yet settled.
type staged struct {
	log  *stageLog
	name string // the entry's file name once committed
	data []byte // the entry's JSON
}

// stage appends a JSON result's or a fail's entry to the stage log, without flushing it, and
// adds it to the outbox in memory, so that its frame can be sent at once; settle then drops it
// when the hub acknowledges it soon, or makes it durable (commit). Sending before the fsync loses
// nothing a killed worker would keep: the line is written whole before the frame is sent, and
// openOutbox takes a live line back, so it is delivered after the restart; only a power cut
// within flushAfter can lose it, when the hub most likely holds the result already. What it saves
// is the flush (about a millisecond, more for a long answer) in front of every result. File
// results go through putFile, durable before their upload starts.
func (o *outbox) stage(m outboxMeta) (*outboxItem, *staged, error) {
	m.Version = outboxVersion
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now().UTC()
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, nil, fmt.Errorf("outbox: encode %s: %w", m.JobID, err)
	}
	st := &staged{name: safeName(m.JobID) + "." + nonce() + metaSuffix, data: b}
	line := make([]byte, 0, len(b)+len(st.name)+13)
	line = fmt.Appendf(line, "s %s %08x ", st.name, crc32.ChecksumIEEE(b))
	line = append(append(line, b...), '\n')
	if err := o.appendStaged(st, line); err != nil {
		return nil, nil, fmt.Errorf("outbox: write %s: %w", m.JobID, err)
	}
	it := o.insert(m, st.name)
	o.mu.Lock()
	it.committing = !it.removed
	if !it.removed {
		it.gone = make(chan struct{})
	}
	o.mu.Unlock()
	return it, st, nil
}

// appendStaged writes an entry's line to the current stage log, opening one when there is none
// or the last is full.
func (o *outbox) appendStaged(st *staged, line []byte) error {
	o.stageMu.Lock()
	defer o.stageMu.Unlock()
	l := o.stageLog
	if l == nil || l.full {
		path := filepath.Join(o.dir, stageLogPrefix+nonce()+stageLogSuffix)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		l = &stageLog{f: f, path: path}
		o.stageLog = l
	}
	if _, err := l.f.Write(line); err != nil {
		// A line cut short reads as no line (no newline, or a checksum that does not match);
		// nothing more goes after it.
		l.full = true
		o.retireLocked(l)
		return err
	}
	l.size += int64(len(line))
	l.live++
	st.log = l
	if l.size >= stageLogMax {
		l.full = true
	}
	return nil
}

// unstage settles an entry in its stage log: a tombstone line, so that a restart does not take
// back an entry acknowledged or committed; a full log whose entries are all settled is removed.
func (o *outbox) unstage(st *staged) {
	o.stageMu.Lock()
	defer o.stageMu.Unlock()
	l := st.log
	l.live--
	if l.full && l.live == 0 {
		o.retireLocked(l)
		return
	}
	if l.f == nil {
		return
	}
	line := make([]byte, 0, len(st.name)+3)
	line = append(append(append(line, "d "...), st.name...), '\n')
	if _, err := l.f.Write(line); err != nil {
		// Without the tombstone a restart would deliver the entry again, which the hub
		// answers as a duplicate; close the log to new entries, it goes once they settle.
		l.full = true
		o.retireLocked(l)
		return
	}
	l.size += int64(len(line))
	if l.size >= stageLogMax {
		l.full = true
	}
}

// retireLocked closes a full log and removes it once none of its entries is live; o.stageMu is held.
func (o *outbox) retireLocked(l *stageLog) {
	if o.stageLog == l {
		o.stageLog = nil
	}
	if l.live > 0 {
		return
	}
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
	if err := os.Remove(l.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		o.log.Warn("outbox: remove stage log", "file", filepath.Base(l.path), "err", err)
	}
}

// closeStage closes and removes the current stage log when none of its entries is live, as a
// Run ends: nothing stays open between runs (Windows cannot remove a folder holding an open file).
func (o *outbox) closeStage() {
	o.stageMu.Lock()
	defer o.stageMu.Unlock()
	if l := o.stageLog; l != nil && l.live == 0 {
		l.full = true
		o.retireLocked(l)
	}
}

// defaultFlushAfter bounds how long a delivered JSON result or fail stays unflushed waiting for
// its ack. An ack usually comes within milliseconds (the hub's commit plus a round trip), and an
// entry acknowledged before it is flushed is never flushed at all: the flush would keep on disk
// something about to be deleted, and on the machine of a hub beside the worker it queues behind
// the hub's own commit. Long enough for a round trip across the internet, short enough that a
// result whose ack is lost is soon on disk.
const defaultFlushAfter = 500 * time.Millisecond

// settle ends a staged entry: when its ack (or the hub's cancel) removes it within flushAfter,
// the entry is dropped; otherwise, or at once when the connection it was sent on ends
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
	o.unstage(st)
}

// commit writes a staged entry into a file of its own, flushed and renamed into place durably,
// then settles its stage line. An entry removed meanwhile (its ack came first, the hub cancelled
// the job) is deleted instead of left behind. When commit fails the entry stays in memory, and is
// delivered from there, but would not survive a restart.
func (o *outbox) commit(it *outboxItem, st *staged) error {
	final := filepath.Join(o.dir, st.name)
	err := o.writeEntry(final, st.data)
	o.unstage(st) // after the entry is in place: a crash between leaves both, which load as one
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

// writeEntry is durable.WriteFile with the flush through o.syncFile, which tests hold.
func (o *outbox) writeEntry(final string, data []byte) error {
	f, err := os.CreateTemp(o.dir, "."+filepath.Base(final)+".*"+tmpSuffix)
	if err != nil {
		return err
	}
	tmp := f.Name()
	if err = f.Chmod(0o600); err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = o.syncFile(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = durable.Rename(tmp, final)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// isStageLog reports whether a file name in the outbox folder is a stage log.
func isStageLog(name string) bool {
	return strings.HasPrefix(name, stageLogPrefix) && strings.HasSuffix(name, stageLogSuffix)
}

// loadStageLog reads a stage log a crash left: the entries staged and not settled, whole and
// matching their checksum, in the order they were staged (name → JSON). A line cut short or
// damaged is no entry.
func loadStageLog(path string) (names []string, live map[string][]byte, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	live = map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, len(b)+1)
	sc.Split(scanWholeLines)
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case bytes.HasPrefix(line, []byte("d ")):
			delete(live, string(line[2:]))
		case bytes.HasPrefix(line, []byte("s ")):
			name, rest, ok := bytes.Cut(line[2:], []byte(" "))
			if !ok {
				continue
			}
			sum, data, ok := bytes.Cut(rest, []byte(" "))
			if !ok || string(sum) != fmt.Sprintf("%08x", crc32.ChecksumIEEE(data)) {
				continue
			}
			if _, seen := live[string(name)]; !seen {
				names = append(names, string(name))
			}
			live[string(name)] = bytes.Clone(data)
		}
	}
	return names, live, nil
}

// scanWholeLines splits at newlines and drops a last line without one: a write cut short.
func scanWholeLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF {
		return len(data), nil, nil
	}
	return 0, nil, nil
}
