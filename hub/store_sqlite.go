// store_sqlite.go: opening the embedded SQLite database, one file beside the hub, with its schema:
// the default store for one machine, the demo and the tests. It must not know what the rows mean
// nor how the writer batches (store.go).

package hub

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// sqliteSchema is applied on every Open; every statement is idempotent. user_version says which
// version of it a file carries, so a later version can migrate on purpose.
const sqliteSchemaVersion = 1

var sqliteSchema = []string{
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

func openSQLite(path string) (*store, error) {
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
	if version > sqliteSchemaVersion {
		db.Close()
		return nil, fmt.Errorf("database %s has schema version %d, newer than this hub's %d", path, version, sqliteSchemaVersion)
	}
	for _, s := range sqliteSchema {
		if _, err := db.ExecContext(ctx, s); err != nil {
			db.Close()
			return nil, fmt.Errorf("migrate database %s: %w", path, err)
		}
	}
	if _, err := db.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, sqliteSchemaVersion)); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate database %s: %w", path, err)
	}
	s := newStore(db, "sqlite")
	s.start()
	return s, nil
}
