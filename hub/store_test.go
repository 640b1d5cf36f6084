// store_test.go: the writer's group commit over a real SQLite file — concurrent writes share one
// transaction and are answered after its commit, a failing write fails alone and leaves nothing,
// order is kept. It must not know what the hub's rows mean beyond the schema it writes to.

package hub

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// setCommitHook makes s tell f the size of every batch it commits, before the batch's callbacks.
func (s *store) setCommitHook(f func(writes int)) {
	s.mu.Lock()
	s.committed = f
	s.mu.Unlock()
}

func (s *store) pendingLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// commitLog records the batches a store commits.
type commitLog struct {
	mu    sync.Mutex
	sizes []int
	count atomic.Int32
}

func (l *commitLog) hook(n int) {
	l.mu.Lock()
	l.sizes = append(l.sizes, n)
	l.mu.Unlock()
	l.count.Add(1)
}

func (l *commitLog) batches() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int(nil), l.sizes...)
}

func openTestStore(t *testing.T) (*store, *commitLog) {
	t.Helper()
	s, err := openSQLite(filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	l := &commitLog{}
	s.setCommitHook(l.hook)
	return s, l
}

// holdWriter occupies the writer with a write of no statements until the returned func is called,
// so what is enqueued meanwhile waits for the next batch. It returns once the writer holds it.
func holdWriter(t *testing.T, s *store) (release func()) {
	t.Helper()
	entered, gate := make(chan struct{}), make(chan struct{})
	s.enqueue(func(*sql.Tx) error {
		close(entered)
		<-gate
		return nil
	}, nil)
	<-entered
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	return release
}

func waitPending(t *testing.T, s *store, n int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for s.pendingLen() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued after %v, want %d", s.pendingLen(), waitLimit, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func metaValue(t *testing.T, db *sql.DB, key string) (string, bool) {
	t.Helper()
	var v string
	err := db.QueryRow(`SELECT value FROM meta WHERE key=$1`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return v, true
}

func insertMeta(key, value string) func(*sql.Tx) error {
	return func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO meta(key, value) VALUES($1, $2)`, key, value)
		return err
	}
}

// TestConcurrentWritesShareOneCommit: writes queued while a batch runs go into the next batch
// together — one transaction, one fsync — and none of their callers is answered before it commits.
func TestConcurrentWritesShareOneCommit(t *testing.T) {
	s, log := openTestStore(t)
	var mode string
	if err := s.db.QueryRow(`PRAGMA synchronous`).Scan(&mode); err != nil || mode != "2" {
		t.Fatalf("synchronous = %q (%v), want 2 (FULL): a commit must be on disk before its answer", mode, err)
	}
	release := holdWriter(t, s)
	const n = 64
	type answer struct {
		err     error
		commits int32
	}
	answers := make(chan answer, n)
	for i := range n {
		go func() {
			err := s.do(context.Background(), insertMeta(fmt.Sprintf("k%d", i), "v"))
			answers <- answer{err, log.count.Load()}
		}()
	}
	waitPending(t, s, n)
	release()
	for range n {
		a := <-answers
		if a.err != nil {
			t.Fatalf("write: %v", a.err)
		}
		if a.commits < 2 {
			t.Fatalf("a write was answered after %d commits, before its own batch committed", a.commits)
		}
	}
	if got := log.batches(); len(got) != 2 || got[0] != 1 || got[1] != n {
		t.Fatalf("batches committed %v, want [1 %d]: the held write, then all %d in one", got, n, n)
	}
	var rows int
	if err := s.db.QueryRow(`SELECT count(*) FROM meta WHERE key LIKE 'k%'`).Scan(&rows); err != nil || rows != n {
		t.Fatalf("%d rows (%v), want %d", rows, err, n)
	}
}

// TestConcurrentSubmitsShareOneCommit: POST /v1/jobs from many clients at once costs one commit,
// and every POST is answered only once its job is in it.
func TestConcurrentSubmitsShareOneCommit(t *testing.T) {
	e := startHub(t, nil)
	log := &commitLog{}
	e.hub.db.setCommitHook(log.hook)
	release := holdWriter(t, e.hub.db)
	const n = 32
	type answer struct {
		id      string
		err     error
		commits int32
	}
	answers := make(chan answer, n)
	for range n {
		go func() {
			id, err := e.client.Submit(context.Background(), llmJob("m1"))
			answers <- answer{id, err, log.count.Load()}
		}()
	}
	waitPending(t, e.hub.db, n)
	release()
	var ids []any
	for range n {
		a := <-answers
		if a.err != nil {
			t.Fatalf("Submit: %v", a.err)
		}
		if a.commits < 2 {
			t.Fatalf("a POST was answered after %d commits, before its job's batch committed", a.commits)
		}
		ids = append(ids, a.id)
	}
	if got := log.batches(); len(got) < 2 || got[1] != n {
		t.Fatalf("batches committed %v, want the held write and then all %d submissions in one", got, n)
	}
	var rows int
	marks := make([]string, n)
	for i := range marks {
		marks[i] = fmt.Sprintf("$%d", i+1)
	}
	q := `SELECT count(*) FROM jobs WHERE status='queued' AND id IN (` + strings.Join(marks, ",") + `)`
	if err := e.hub.db.db.QueryRow(q, ids...).Scan(&rows); err != nil || rows != n {
		t.Fatalf("%d of the %d answered jobs are in the database (%v)", rows, n, err)
	}
}

// TestAFailingWriteFailsAloneAndLeavesNothing: in a batch of three, the middle write runs one
// statement that succeeds and one that fails; it is answered with its error and its first
// statement is undone, while the writes before and after it commit.
func TestAFailingWriteFailsAloneAndLeavesNothing(t *testing.T) {
	s, log := openTestStore(t)
	release := holdWriter(t, s)
	errs := make([]chan error, 3)
	for i := range errs {
		errs[i] = make(chan error, 1)
	}
	s.enqueue(insertMeta("a", "1"), func(err error) { errs[0] <- err })
	s.enqueue(func(tx *sql.Tx) error {
		if err := insertMeta("b", "1")(tx); err != nil {
			return err
		}
		return insertMeta("a", "2")(tx) // a is the first write's: a primary key violation
	}, func(err error) { errs[1] <- err })
	s.enqueue(insertMeta("c", "1"), func(err error) { errs[2] <- err })
	release()
	if err := <-errs[0]; err != nil {
		t.Errorf("first write: %v", err)
	}
	if err := <-errs[1]; err == nil {
		t.Errorf("the failing write was answered as committed")
	}
	if err := <-errs[2]; err != nil {
		t.Errorf("third write: %v", err)
	}
	if got := log.batches(); len(got) != 2 || got[1] != 3 {
		t.Errorf("batches committed %v, want [1 3]", got)
	}
	if v, ok := metaValue(t, s.db, "a"); !ok || v != "1" {
		t.Errorf("a = %q (present %v), want the first write's 1", v, ok)
	}
	if _, ok := metaValue(t, s.db, "b"); ok {
		t.Errorf("b is in the database: the failing write's first statement was kept")
	}
	if _, ok := metaValue(t, s.db, "c"); !ok {
		t.Errorf("c is missing: the write after the failing one was lost")
	}
}

// TestALoneFailingWriteLeavesNothing: a batch of one that fails halfway commits none of it.
func TestALoneFailingWriteLeavesNothing(t *testing.T) {
	s, _ := openTestStore(t)
	if err := s.do(context.Background(), insertMeta("a", "1")); err != nil {
		t.Fatal(err)
	}
	err := s.do(context.Background(), func(tx *sql.Tx) error {
		if err := insertMeta("b", "1")(tx); err != nil {
			return err
		}
		return insertMeta("a", "2")(tx)
	})
	if err == nil {
		t.Fatal("the failing write was answered as committed")
	}
	if _, ok := metaValue(t, s.db, "b"); ok {
		t.Error("b is in the database: the failing write's first statement was kept")
	}
	if err := s.do(context.Background(), insertMeta("c", "1")); err != nil {
		t.Fatalf("the next write: %v", err)
	}
}

// TestBatchedWritesApplyInOrder: each write of a batch sees the effect of the one enqueued before
// it, and the callbacks run in the same order.
func TestBatchedWritesApplyInOrder(t *testing.T) {
	s, log := openTestStore(t)
	if err := s.do(context.Background(), insertMeta("last", "-1")); err != nil {
		t.Fatal(err)
	}
	release := holdWriter(t, s)
	const n = 100
	var mu sync.Mutex
	var order []int
	done := make(chan struct{})
	for i := range n {
		s.enqueue(func(tx *sql.Tx) error {
			if _, err := tx.Exec(`INSERT INTO meta(key, value) SELECT $1, value FROM meta WHERE key='last'`, fmt.Sprintf("w%d", i)); err != nil {
				return err
			}
			_, err := tx.Exec(`UPDATE meta SET value=$1 WHERE key='last'`, fmt.Sprint(i))
			return err
		}, func(err error) {
			if err != nil {
				t.Errorf("write %d: %v", i, err)
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			if i == n-1 {
				close(done)
			}
		})
	}
	release()
	<-done
	if got := log.batches(); len(got) != 3 || got[2] != n {
		t.Errorf("batches committed %v, want [1 1 %d]", got, n)
	}
	for i := range n {
		if order[i] != i {
			t.Fatalf("callbacks ran in the order %v", order)
		}
		if v, _ := metaValue(t, s.db, fmt.Sprintf("w%d", i)); v != fmt.Sprint(i-1) {
			t.Fatalf("write %d saw last = %q, want %d: it did not follow the write before it", i, v, i-1)
		}
	}
}
