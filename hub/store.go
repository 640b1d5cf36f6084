// store.go: the SQLite schema and the one writer goroutine that commits every write in batches
// (group commit: whatever is queued when a batch starts shares its transaction and its fsync),
// running each write's callback after its commit. Batching lets a busy hub commit many transitions
// per sync; the callbacks let a caller answer only once its fact is durable; a savepoint per write
// keeps one write's statements all-or-nothing without failing its batch. It must not know what
// the rows mean.

package hub

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// schema is applied on every Open; every statement is idempotent. user_version says which
// version of it a file carries, so a later version can migrate on purpose.
const schemaVersion = 1

var schema = []string{
	`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS workers (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		token_hash BLOB NOT NULL,
		created_at TEXT NOT NULL,
		last_seen TEXT NOT NULL DEFAULT ''
	)`,
	`CREATE TABLE IF NOT EXISTS pairing_codes (
		code_hash BLOB PRIMARY KEY,
		created_at TEXT NOT NULL,
		used_at TEXT NOT NULL DEFAULT ''
	)`,
	`CREATE TABLE IF NOT EXISTS jobs (
		id TEXT PRIMARY KEY,
		seq INTEGER NOT NULL,
		kind TEXT NOT NULL,
		model TEXT NOT NULL,
		vram_gb REAL NOT NULL DEFAULT 0,
		input TEXT NOT NULL,
		input_file TEXT NOT NULL DEFAULT '',
		input_type TEXT NOT NULL DEFAULT '',
		status TEXT NOT NULL,
		worker_id TEXT NOT NULL DEFAULT '',
		attempts INTEGER NOT NULL DEFAULT 0,
		accepted_by TEXT NOT NULL DEFAULT '',
		error TEXT NOT NULL DEFAULT '',
		result TEXT,
		result_file TEXT NOT NULL DEFAULT '',
		result_ext TEXT NOT NULL DEFAULT '',
		result_sha256 TEXT NOT NULL DEFAULT '',
		result_size INTEGER NOT NULL DEFAULT 0,
		prompt TEXT NOT NULL DEFAULT '',
		created_at TEXT NOT NULL,
		updated_at TEXT NOT NULL
	)`,
	// Startup loads the unfinished jobs through this partial index; listings walk seq backwards.
	`CREATE INDEX IF NOT EXISTS jobs_unfinished ON jobs(status) WHERE status IN ('queued','offered','running')`,
	`CREATE UNIQUE INDEX IF NOT EXISTS jobs_seq ON jobs(seq)`,
	`CREATE TABLE IF NOT EXISTS worker_logs (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		worker_id TEXT NOT NULL,
		seq INTEGER NOT NULL,
		ts TEXT NOT NULL,
		level TEXT NOT NULL,
		source TEXT NOT NULL,
		message TEXT NOT NULL,
		job_id TEXT NOT NULL DEFAULT ''
	)`,
	`CREATE INDEX IF NOT EXISTS worker_logs_by_worker ON worker_logs(worker_id, id)`,
}

// maxBatch bounds one write transaction so a burst cannot hold the write lock for long: the first
// write of a batch is answered only after its last, and 256 one-row writes are about 3 ms of
// statements on the bench's 2-core VM, several fsyncs' worth: past that, sharing the fsync no
// longer pays for the wait.
const maxBatch = 256

// op is one write. fn runs inside the batch's transaction (nil: no statements, only a place in the
// order, for an answer that must wait for the writes before it); after runs once the batch is
// committed (or failed), outside any lock, with fn's error or the commit's. A write whose fn fails
// leaves none of its statements in the database, and the others in its batch still commit.
type op struct {
	fn    func(tx *sql.Tx) error
	after func(err error)
}

// store owns the SQLite file. Every write goes through one goroutine that runs what is pending in
// one transaction, so a thousand transitions a second cost a handful of fsyncs, and an ack that
// must be durable is sent from after(), once its transaction is committed.
type store struct {
	db *sql.DB

	mu      sync.Mutex
	pending []op
	closed  bool
	wake    chan struct{}
	done    chan struct{}
	// committed, when set (tests only, under mu), is told the size of each batch committed, before
	// any of its callbacks runs: how the tests see that concurrent writes shared one fsync.
	committed func(writes int)
}

var errStoreClosed = errors.New("hub: store closed")

func openStore(path string) (*store, error) {
	// The database holds the worker tokens' hashes and every job's input: readable by the hub's
	// user only. SQLite gives its -wal and -shm files the database file's mode, so creating it
	// 0600 (and tightening one an older hub made 0644) covers all three.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	f.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(10000)")
	// FULL: a commit is on disk before after() runs, so an acknowledged result survives even a
	// power cut, not only a SIGKILL. Batching keeps the fsync count low.
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	ctx := context.Background()
	var version int
	if err := db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		db.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	if version > schemaVersion {
		db.Close()
		return nil, fmt.Errorf("database %s has schema version %d, newer than this hub's %d", path, version, schemaVersion)
	}
	for _, s := range schema {
		if _, err := db.ExecContext(ctx, s); err != nil {
			db.Close()
			return nil, fmt.Errorf("migrate database %s: %w", path, err)
		}
	}
	if _, err := db.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, schemaVersion)); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate database %s: %w", path, err)
	}
	s := &store{db: db, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go s.loop()
	return s, nil
}

// enqueue schedules a write; after (optional) runs once it is committed. Order is kept: a batch
// runs ops in the order they were enqueued, and batches follow each other.
func (s *store) enqueue(fn func(tx *sql.Tx) error, after func(error)) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		if after != nil {
			// Never on the caller's goroutine: callers enqueue while holding the hub's lock, and
			// callbacks take it (as they do on the writer's goroutine when the store is open).
			// The goroutine ends as soon as the callback has run.
			go after(errStoreClosed)
		}
		return
	}
	s.pending = append(s.pending, op{fn: fn, after: after})
	select {
	case s.wake <- struct{}{}:
	default:
	}
	s.mu.Unlock()
}

// do runs fn in the next batch and waits until it is committed. When ctx ends first, do returns
// ctx.Err() at once but fn stays queued and may still commit: a write that must not outlive its
// caller checks the caller's context inside fn.
func (s *store) do(ctx context.Context, fn func(tx *sql.Tx) error) error {
	done := make(chan error, 1)
	s.enqueue(fn, func(err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *store) loop() {
	defer close(s.done)
	for range s.wake {
		s.drain()
	}
	s.drain()
}

func (s *store) drain() {
	for {
		s.mu.Lock()
		n := min(len(s.pending), maxBatch)
		batch := s.pending[:n:n]
		s.pending = s.pending[n:]
		if len(s.pending) == 0 {
			s.pending = nil
		}
		s.mu.Unlock()
		if n == 0 {
			return
		}
		s.run(batch)
	}
}

func (s *store) run(batch []op) {
	errs := make([]error, len(batch))
	err := s.apply(batch, errs)
	for i, o := range batch {
		if o.after == nil {
			continue
		}
		e := errs[i]
		if err != nil {
			e = err
		}
		o.after(e)
	}
}

// savepoint names the savepoint each write of a batch runs in; no write opens one of its own.
const savepoint = "hub_write"

// apply runs batch in one transaction and commits it, putting each write's own error in errs. It
// returns an error only when the batch as a whole did not commit; then no write of it is durable,
// and every caller is told so.
func (s *store) apply(batch []op, errs []error) error {
	tx, err := s.db.Begin()
	if err != nil {
		return fmt.Errorf("commit: begin: %w", err)
	}
	if len(batch) == 1 {
		// A batch of one, the common case on a quiet hub: the transaction is the write's
		// savepoint, and a failed write rolls it back instead of paying two more statements.
		if o := batch[0]; o.fn != nil {
			if errs[0] = o.fn(tx); errs[0] != nil {
				if err := tx.Rollback(); err != nil {
					return fmt.Errorf("commit: roll back a failed write: %w", err)
				}
				return nil
			}
		}
		return s.commit(tx, len(batch))
	}
	for i, o := range batch {
		if o.fn == nil {
			continue
		}
		if _, err := tx.Exec(`SAVEPOINT ` + savepoint); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("commit: savepoint: %w", err)
		}
		if errs[i] = o.fn(tx); errs[i] != nil {
			// Undo this write's statements only. If SQLite already rolled the whole transaction
			// back (a full disk, an I/O error), the savepoint is gone and so are the writes
			// before this one: the batch fails as a whole rather than answer them committed.
			if _, err := tx.Exec(`ROLLBACK TO ` + savepoint); err != nil {
				_ = tx.Rollback()
				return fmt.Errorf("commit: roll back a failed write (%w): %w", errs[i], err)
			}
		}
		if _, err := tx.Exec(`RELEASE ` + savepoint); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("commit: release savepoint: %w", err)
		}
	}
	return s.commit(tx, len(batch))
}

// commit commits tx, a batch of n writes (one fsync), and tells the test hook.
func (s *store) commit(tx *sql.Tx, n int) error {
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	s.mu.Lock()
	hook := s.committed
	s.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	return nil
}

// close writes what is pending, stops the writer and closes the file.
func (s *store) close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.wake)
	}
	s.mu.Unlock()
	<-s.done
	return s.db.Close()
}
