// store.go: the one writer goroutine that commits every write in batches (group commit: whatever
// is queued when a batch starts shares its transaction and its fsync), running each write's
// callback after its commit, and the store's health (a database that cannot be reached fails
// writes at once instead of queueing them). Batching lets a busy hub commit many transitions per
// sync; the callbacks let a caller answer only once its fact is durable; a savepoint per write
// keeps one write's statements all-or-nothing without failing its batch. The two databases open
// in store_sqlite.go and store_postgres.go; this file must not know which one it writes to, nor
// what the rows mean.

package hub

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"
)

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

// store owns the database. Every write goes through one goroutine that runs what is pending in
// one transaction, so a thousand transitions a second cost a handful of fsyncs, and an ack that
// must be durable is sent from after(), once its transaction is committed. Reads use db directly.
type store struct {
	db      *sql.DB
	dialect string // "sqlite" or "postgres", for what a person is told
	// begin opens the writer's transaction: on SQLite from the pool, on PostgreSQL on the one
	// connection that holds this hub's lock on the database. done is called once the transaction
	// has ended.
	begin func() (tx *sql.Tx, done context.CancelFunc, err error)
	// reconnected, when set, runs after the database could be reached again (PostgreSQL's keeper):
	// the hub writes its state again, since writes failed in between.
	reconnected func()
	// lost is told when a batch failed as a whole (nil on SQLite, where that is a disk error the
	// next batch may not have): the PostgreSQL side then drops its connection and reconnects.
	lost func(err error)
	// extra are the backend's own goroutines (PostgreSQL's keeper), stopped at close.
	stopExtra context.CancelFunc
	extra     sync.WaitGroup
	closeDB   func() error

	mu      sync.Mutex
	pending []op
	closed  bool
	wake    chan struct{}
	done    chan struct{}
	// down is why the database cannot be reached, since when; nil while it can. While it is set,
	// a write fails at once rather than wait in memory for a database that may be gone for hours.
	down      error
	downSince time.Time
	// lastCommit is when a batch last committed: the keeper pings a quiet database.
	lastCommit time.Time
	// committed, when set (tests only, under mu), is told the size of each batch committed, before
	// any of its callbacks runs: how the tests see that concurrent writes shared one fsync.
	committed func(writes int)
}

var errStoreClosed = errors.New("hub: store closed")

// errDatabaseDown is a write refused because the database cannot be reached; the API answers it
// with 503 and Retry-After, and nothing was written.
type errDatabaseDown struct {
	cause error
	since time.Time
}

func (e *errDatabaseDown) Error() string {
	return fmt.Sprintf("the hub's database cannot be reached (since %s): %v", e.since.UTC().Format(time.RFC3339), e.cause)
}

func (e *errDatabaseDown) Unwrap() error { return e.cause }

// newStore starts the writer over an open database.
func newStore(db *sql.DB, dialect string) *store {
	s := &store{db: db, dialect: dialect, wake: make(chan struct{}, 1), done: make(chan struct{}),
		stopExtra: func() {}, closeDB: db.Close, lastCommit: time.Now()}
	s.begin = func() (*sql.Tx, context.CancelFunc, error) {
		tx, err := s.db.Begin()
		return tx, func() {}, err
	}
	return s
}

func (s *store) start() { go s.loop() }

// health says whether the database can be reached now, and if not why and since when.
func (s *store) health() (down error, since time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down, s.downSince
}

// setDown records that the database cannot be reached; setUp that it can again.
func (s *store) setDown(err error) {
	s.mu.Lock()
	if s.down == nil {
		s.down, s.downSince = err, time.Now()
	}
	s.mu.Unlock()
}

func (s *store) setUp() {
	s.mu.Lock()
	s.down = nil
	s.mu.Unlock()
}

// enqueue schedules a write; after (optional) runs once it is committed. Order is kept: a batch
// runs ops in the order they were enqueued, and batches follow each other.
func (s *store) enqueue(fn func(tx *sql.Tx) error, after func(error)) {
	s.mu.Lock()
	if s.closed || s.down != nil {
		var err error = errStoreClosed
		if !s.closed {
			err = &errDatabaseDown{cause: s.down, since: s.downSince}
		}
		s.mu.Unlock()
		if after != nil {
			// Never on the caller's goroutine: callers enqueue while holding the hub's lock, and
			// callbacks take it (as they do on the writer's goroutine when the store is open).
			// The goroutine ends as soon as the callback has run.
			go after(err)
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
		var down error
		if s.down != nil {
			down = &errDatabaseDown{cause: s.down, since: s.downSince}
		}
		s.mu.Unlock()
		if n == 0 {
			return
		}
		if down != nil {
			// Queued before the database was found gone: failed like the batch that found it.
			for _, o := range batch {
				if o.after != nil {
					o.after(down)
				}
			}
			continue
		}
		s.run(batch)
	}
}

func (s *store) run(batch []op) {
	errs := make([]error, len(batch))
	err := s.apply(batch, errs)
	if err != nil && s.lost != nil {
		s.lost(err)
		if down, _ := s.health(); down != nil {
			err = &errDatabaseDown{cause: err, since: time.Now()}
		}
	}
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
	tx, done, err := s.begin()
	if err != nil {
		return fmt.Errorf("commit: begin: %w", err)
	}
	defer done()
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
	s.lastCommit = time.Now()
	s.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	return nil
}

// close writes what is pending, stops the writer and the backend's goroutines, and closes the
// database.
func (s *store) close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.wake)
	}
	s.mu.Unlock()
	<-s.done
	s.stopExtra()
	s.extra.Wait()
	return s.closeDB()
}
