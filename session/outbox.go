// outbox.go keeps every finished job's result (or fail) on disk from the moment the job ends
// until the hub has acknowledged it: the entry format, loading what a crash left, committing,
// replacing and removing entries. It must not know when or how entries are sent (outbox_delivery.go).

package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"studioworker/internal/durable"
	"studioworker/protocol"
)

const (
	outboxVersion = 1
	tmpSuffix     = durable.TempSuffix
	metaSuffix    = ".json"
)

type itemType string

const (
	itemJSON itemType = "json" // complete_json
	itemFile itemType = "file" // HTTP upload
	itemFail itemType = "fail" // fail
)

// outboxMeta is the on-disk record of one undelivered result.
type outboxMeta struct {
	Version   int             `json:"version"`
	JobID     string          `json:"job_id"`
	Kind      protocol.Kind   `json:"kind,omitempty"`
	Type      itemType        `json:"type"`
	Result    protocol.Object `json:"result,omitempty"`
	Prompt    string          `json:"prompt,omitempty"`
	File      string          `json:"file,omitempty"` // base name inside the outbox folder
	Ext       string          `json:"ext,omitempty"`
	SHA256    string          `json:"sha256,omitempty"`
	Size      int64           `json:"size,omitempty"`
	Error     string          `json:"error,omitempty"`
	Retryable bool            `json:"retryable,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
}

// outboxItem is an outbox entry plus its delivery state, which lives only in memory.
type outboxItem struct {
	meta     outboxMeta
	metaName string // base name of the metadata file
	seq      uint64 // insertion order, for FIFO delivery

	// Guarded by outbox.mu.
	sentGen   uint64 // connection generation on which the frame was sent (frames only)
	uploading bool
	failures  int       // consecutive failed uploads, for the retry backoff
	notBefore time.Time // next upload attempt
	recheck   bool      // sha256 already recomputed once after a 400
	rejects   int       // 409/404 answers so far
	cancel    context.CancelFunc
	removed   bool
	// committing: a staged entry whose file is not yet in place (stage → commit). Whoever
	// removes it meanwhile leaves the file to commit, which deletes it once it is there.
	committing bool
	gone       chan struct{} // a staged entry's: closed when it is removed (ack, cancel, replaced)
}

// markRemoved marks it removed and wakes whoever waits on gone; the caller holds outbox.mu.
func (it *outboxItem) markRemoved() {
	if !it.removed && it.gone != nil {
		close(it.gone)
	}
	it.removed = true
}

type outbox struct {
	dir string
	log *slog.Logger

	// syncFile flushes a staged entry to disk: (*os.File).Sync, replaced only by tests that
	// need to see what happens before it.
	syncFile func(*os.File) error
	// flushAfter is how long a staged entry waits for its ack before it is flushed
	// (defaultFlushAfter; tests shorten it).
	flushAfter time.Duration

	mu    sync.Mutex
	items map[string]*outboxItem
	seq   uint64

	stageMu  sync.Mutex // guards stageLog and every stage log's counters (outbox_stage.go)
	stageLog *stageLog  // the log new staged entries go to; nil until the first

	unlinks unlinker // large delivered result files, deleted off the uploader's goroutine
}

// unlinkLater is the size from which a delivered result file is deleted on the unlinker rather
// than by the uploader: unlinking a file whose pages are in the page cache costs the kernel about
// 0.3 s per GiB to free them, time the uploader would otherwise take from the next upload.
const unlinkLater = 16 << 20

// unlinker deletes files on at most one goroutine at a time, in the order given. Whoever hands
// it files (the uploaders) waits for it before it ends (wait), so it never outlives Session.Run.
// A file it had not deleted yet when the worker died is an orphan, which openOutbox removes.
type unlinker struct {
	mu      sync.Mutex
	queue   []string
	running bool
	done    chan struct{} // closed when the running goroutine ends
}

// remove deletes path on the unlinker's goroutine, starting it if none runs.
func (u *unlinker) remove(path string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.queue = append(u.queue, path)
	if u.running {
		return
	}
	u.running, u.done = true, make(chan struct{})
	go u.run(u.done)
}

func (u *unlinker) run(done chan struct{}) {
	defer close(done)
	for {
		u.mu.Lock()
		if len(u.queue) == 0 {
			u.running = false
			u.mu.Unlock()
			return
		}
		path := u.queue[0]
		u.queue = u.queue[1:]
		u.mu.Unlock()
		// An upload that has just ended may still hold the file open for a moment on Windows.
		_ = durable.Remove(path)
	}
}

// wait returns once every file handed to the unlinker so far is deleted.
func (u *unlinker) wait() {
	u.mu.Lock()
	running, done := u.running, u.done
	u.mu.Unlock()
	if running {
		<-done
	}
}

// safeName turns a job id into a file name: the id itself when it is plainly safe, else a hash.
// Ids come from the hub, so they must never be able to name a path outside the outbox.
func safeName(jobID string) string {
	ok := jobID != "" && len(jobID) <= 100 && jobID[0] != '.'
	for _, r := range jobID {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			ok = false
			break
		}
	}
	if ok {
		return jobID
	}
	sum := sha256.Sum256([]byte(jobID))
	return "h-" + hex.EncodeToString(sum[:16])
}

func openOutbox(dir string, log *slog.Logger) (*outbox, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	o := &outbox{dir: dir, log: log, items: map[string]*outboxItem{}, syncFile: (*os.File).Sync, flushAfter: defaultFlushAfter}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	var metas []loaded
	files := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		switch {
		case e.IsDir():
		case isStageLog(name):
			// Entries sent before their flush. Those still live are the results of a worker
			// killed before it settled them: the page cache survived the process, so keep
			// them (and the hub learns of them in hello.outbox), durably now, then the log goes.
			took, err := o.takeStageLog(name)
			if err != nil {
				return nil, err
			}
			metas = append(metas, took...)
		case strings.HasSuffix(name, tmpSuffix):
			// A staged entry of an earlier version (a temporary file per entry, sent before
			// its flush) or a durable write cut short. One that reads whole is the result of a
			// worker killed before the flush: the page cache survived the process, so keep it
			// (and the hub learns of it in hello.outbox); one cut short, or lost with the
			// machine's power, is removed.
			final, ok := stagedFinalName(name)
			if ok {
				if _, err := os.Stat(filepath.Join(dir, final)); errors.Is(err, os.ErrNotExist) {
					if m, err := readMeta(filepath.Join(dir, name)); err == nil && (m.Type == itemJSON || m.Type == itemFail) &&
						durable.Rename(filepath.Join(dir, name), filepath.Join(dir, final)) == nil {
						metas = append(metas, loaded{m, final})
						continue
					}
				}
			}
			_ = os.Remove(filepath.Join(dir, name)) // an interrupted write
		case strings.HasSuffix(name, metaSuffix):
			m, err := readMeta(filepath.Join(dir, name))
			if err != nil {
				// A metadata file is renamed into place whole, so a bad one is not a torn write:
				// keep it aside for a human rather than delete or retry it forever.
				log.Warn("outbox: unreadable entry set aside", "file", name, "err", err)
				_ = os.Rename(filepath.Join(dir, name), filepath.Join(dir, name+".bad"))
				continue
			}
			metas = append(metas, loaded{m, name})
		default:
			files[name] = true
		}
	}
	slices.SortFunc(metas, func(a, b loaded) int { return a.m.CreatedAt.Compare(b.m.CreatedAt) })
	for _, l := range metas {
		m, name := l.m, l.name
		if m.Type == itemFile {
			if !files[m.File] {
				// The result is gone (deleted by hand?): tell the hub rather than forget the job.
				log.Warn("outbox: result file missing, reporting a fail", "job_id", m.JobID, "file", m.File)
				old := name
				m = failMeta(m.JobID, m.Kind, "the result file was lost from the worker's spool", true)
				if name, err = o.writeMeta(m); err != nil {
					return nil, err
				}
				_ = os.Remove(filepath.Join(dir, old))
			}
			delete(files, m.File)
		}
		if old := o.items[m.JobID]; old != nil {
			// Two entries for one job: a crash between writing the newer and deleting the older.
			o.deleteFiles(old)
		}
		o.seq++
		o.items[m.JobID] = &outboxItem{meta: m, metaName: name, seq: o.seq}
	}
	for name := range files {
		if strings.HasSuffix(name, ".bad") {
			continue
		}
		log.Info("outbox: removing orphan file", "file", name)
		_ = os.Remove(filepath.Join(dir, name))
	}
	return o, nil
}

// loaded is an entry read back by openOutbox and the file name it is in.
type loaded struct {
	m    outboxMeta
	name string
}

// takeStageLog commits the live entries of a stage log a crash left (those not in place already)
// and removes the log; an entry that does not read is dropped, as a write cut short.
func (o *outbox) takeStageLog(logName string) ([]loaded, error) {
	path := filepath.Join(o.dir, logName)
	names, live, err := loadStageLog(path)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	var took []loaded
	for _, name := range names {
		data, ok := live[name]
		if !ok || name != filepath.Base(name) || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, metaSuffix) {
			continue
		}
		m, err := parseMeta(data)
		if err != nil || (m.Type != itemJSON && m.Type != itemFail) {
			continue
		}
		final := filepath.Join(o.dir, name)
		if _, err := os.Stat(final); !errors.Is(err, os.ErrNotExist) {
			continue // committed before the crash: loaded from its own file
		}
		if err := o.writeEntry(final, data); err != nil {
			return nil, fmt.Errorf("outbox: keep %s: %w", m.JobID, err)
		}
		took = append(took, loaded{m, name})
	}
	if err := os.Remove(path); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	return took, nil
}

// stagedFinalName is the entry name a temporary file stands for: ".<entry>.json.<random>.tmp".
func stagedFinalName(tmp string) (string, bool) {
	rest, ok := strings.CutPrefix(tmp, ".")
	if !ok {
		return "", false
	}
	i := strings.LastIndex(rest, metaSuffix+".")
	if i <= 0 {
		return "", false
	}
	return rest[:i+len(metaSuffix)], true
}

func readMeta(path string) (outboxMeta, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return outboxMeta{}, err
	}
	return parseMeta(b)
}

func parseMeta(b []byte) (outboxMeta, error) {
	var m outboxMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return m, err
	}
	if m.Version != outboxVersion || m.JobID == "" {
		return m, fmt.Errorf("version %d, job_id %q", m.Version, m.JobID)
	}
	switch m.Type {
	case itemJSON, itemFail:
	case itemFile:
		if m.File == "" || m.File != filepath.Base(m.File) || m.SHA256 == "" {
			return m, errors.New("file entry without file or sha256")
		}
	default:
		return m, fmt.Errorf("unknown type %q", m.Type)
	}
	return m, nil
}

func failMeta(jobID string, kind protocol.Kind, msg string, retryable bool) outboxMeta {
	return outboxMeta{Version: outboxVersion, JobID: jobID, Kind: kind, Type: itemFail,
		Error: msg, Retryable: retryable, CreatedAt: time.Now().UTC()}
}

// writeMeta commits m under a new name, durably (durable.WriteFile).
func (o *outbox) writeMeta(m outboxMeta) (string, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("outbox: encode %s: %w", m.JobID, err)
	}
	name := safeName(m.JobID) + "." + nonce() + metaSuffix
	if err := durable.WriteFile(filepath.Join(o.dir, name), b, 0o600); err != nil {
		return "", fmt.Errorf("outbox: write %s: %w", m.JobID, err)
	}
	return name, nil
}

func nonce() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// hashFile streams path through sha256 and fsyncs it, so that the result is on disk before the
// metadata that points at it.
func hashFile(path string) (sum string, size int64, err error) {
	return syncFile(path, "")
}

// syncFile fsyncs path, so that the result is on disk before the metadata that points at it, and
// returns its size and sha256: known, the one the engine computed as it wrote the file (reading
// 1 GiB back to hash it cost about 0.8 s), or else read from the file.
func syncFile(path, known string) (sum string, size int64, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	if known != "" {
		st, err := f.Stat()
		if err != nil {
			return "", 0, err
		}
		size, sum = st.Size(), known
	} else {
		h := sha256.New()
		if size, err = io.Copy(h, f); err != nil {
			return "", 0, err
		}
		sum = hex.EncodeToString(h.Sum(nil))
	}
	if err := f.Sync(); err != nil {
		return "", 0, err
	}
	return sum, size, nil
}

// isSHA256 reports whether s reads as a lower-case hex sha256.
func isSHA256(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// putFile moves a binary result into the outbox and commits it. src must be a regular file. sum
// is the engine's sha256 of it, or "" to hash it here; a sum that does not read as one is
// ignored. It is trusted as it is: the hub checks it, and a 400 makes the uploader hash the file
// itself once (uploadOne), so a wrong sum costs one upload and is never stored.
func (o *outbox) putFile(jobID string, kind protocol.Kind, src, ext, prompt, sum string) (*outboxItem, error) {
	if !isSHA256(sum) {
		sum = ""
	}
	sum, size, err := syncFile(src, sum)
	if err != nil {
		return nil, fmt.Errorf("outbox: result of %s: %w", jobID, err)
	}
	name := safeName(jobID) + "." + nonce() + "." + ext
	dst := filepath.Join(o.dir, name)
	if err := durable.Rename(src, dst); err != nil {
		return nil, fmt.Errorf("outbox: move result of %s: %w", jobID, err)
	}
	m := outboxMeta{Version: outboxVersion, JobID: jobID, Kind: kind, Type: itemFile, Prompt: prompt,
		File: name, Ext: ext, SHA256: sum, Size: size, CreatedAt: time.Now().UTC()}
	metaName, err := o.writeMeta(m)
	if err != nil {
		_ = os.Remove(dst)
		return nil, err
	}
	return o.insert(m, metaName), nil
}

// put commits a JSON result or a fail.
func (o *outbox) put(m outboxMeta) (*outboxItem, error) {
	m.Version = outboxVersion
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now().UTC()
	}
	metaName, err := o.writeMeta(m)
	if err != nil {
		return nil, err
	}
	return o.insert(m, metaName), nil
}

func (o *outbox) insert(m outboxMeta, metaName string) *outboxItem {
	o.mu.Lock()
	o.seq++
	it := &outboxItem{meta: m, metaName: metaName, seq: o.seq}
	old := o.items[m.JobID]
	if old != nil {
		// The same job run again (re-offered after a retryable fail): the new entry wins.
		old.markRemoved()
		if old.cancel != nil {
			old.cancel()
		}
	}
	o.items[m.JobID] = it
	o.mu.Unlock()
	if old != nil {
		o.deleteFiles(old)
	}
	return it
}

// remove deletes a job's entry (metadata first, so a crash leaves only an orphan result file) and
// cancels its upload if one is running. It reports whether there was one.
func (o *outbox) remove(jobID string) bool { return o.removeEntry(jobID, false) }

// removeDelivered is remove for a result the hub has stored, called by an uploader: the entry is
// gone when it returns, but a large result file is deleted on the unlinker, which the uploader
// waits for before it ends (waitUnlinks).
func (o *outbox) removeDelivered(jobID string) bool { return o.removeEntry(jobID, true) }

// waitUnlinks returns once the files removeDelivered handed to the unlinker are deleted.
func (o *outbox) waitUnlinks() { o.unlinks.wait() }

func (o *outbox) removeEntry(jobID string, later bool) bool {
	o.mu.Lock()
	it := o.items[jobID]
	if it == nil {
		o.mu.Unlock()
		return false
	}
	delete(o.items, jobID)
	it.markRemoved()
	if it.cancel != nil {
		it.cancel()
	}
	o.mu.Unlock()
	if later {
		o.deleteFilesLater(it)
	} else {
		o.deleteFiles(it)
	}
	return true
}

func (o *outbox) deleteFiles(it *outboxItem) { o.deleteEntryFiles(it, false) }

// deleteFilesLater is deleteFiles, with a large result file left to the unlinker.
func (o *outbox) deleteFilesLater(it *outboxItem) { o.deleteEntryFiles(it, true) }

func (o *outbox) deleteEntryFiles(it *outboxItem, later bool) {
	o.mu.Lock()
	committing := it.committing
	o.mu.Unlock()
	if committing {
		return // commit deletes the entry once it is in place; a staged entry has no result file
	}
	if err := os.Remove(filepath.Join(o.dir, it.metaName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		o.log.Warn("outbox: remove entry", "job_id", it.meta.JobID, "err", err)
	}
	if it.meta.File != "" {
		path := filepath.Join(o.dir, it.meta.File)
		if later && it.meta.Size >= unlinkLater {
			o.unlinks.remove(path) // the entry is gone already: only an orphan file is left meanwhile
			return
		}
		// An upload that has just ended may still hold the file open for a moment on Windows.
		_ = durable.Remove(path)
	}
}

// convertToFail replaces a binary result the hub will never take (413, a 400 that persists) by a
// non-retryable fail, so that the job fails on the hub instead of being retried forever.
func (o *outbox) convertToFail(it *outboxItem, msg string, retryable bool) (*outboxItem, bool) {
	m := failMeta(it.meta.JobID, it.meta.Kind, msg, retryable)
	name, err := o.writeMeta(m)
	if err != nil {
		// Keep the file entry: it is retried with backoff, and the conversion is tried again.
		o.log.Error("outbox: convert to fail", "job_id", m.JobID, "err", err)
		return nil, false
	}
	o.mu.Lock()
	if it.removed || o.items[it.meta.JobID] != it {
		// Acknowledged or cancelled meanwhile: the fail is moot.
		o.mu.Unlock()
		_ = os.Remove(filepath.Join(o.dir, name))
		return nil, false
	}
	it.markRemoved()
	o.seq++
	n := &outboxItem{meta: m, metaName: name, seq: o.seq}
	o.items[m.JobID] = n
	o.mu.Unlock()
	o.deleteFiles(it)
	return n, true
}

// updateSHA records a recomputed checksum.
func (o *outbox) updateSHA(it *outboxItem, sum string, size int64) error {
	o.mu.Lock()
	m := it.meta
	o.mu.Unlock()
	m.SHA256, m.Size = sum, size
	name, err := o.writeMeta(m)
	if err != nil {
		return err
	}
	o.mu.Lock()
	if it.removed {
		o.mu.Unlock()
		_ = os.Remove(filepath.Join(o.dir, name))
		return nil
	}
	old := it.metaName
	it.meta, it.metaName = m, name
	o.mu.Unlock()
	_ = os.Remove(filepath.Join(o.dir, old))
	return nil
}

func (o *outbox) isRemoved(it *outboxItem) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return it.removed
}

func (o *outbox) get(jobID string) *outboxItem {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.items[jobID]
}

func (o *outbox) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.items)
}
