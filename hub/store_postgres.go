// store_postgres.go: opening a PostgreSQL database (pgx through database/sql): its versioned
// migrations, and the keeper that notices a database that went away and says when it is back.
// Several hubs (replicas) share one database; how they share its jobs is cluster*.go's. It must not
// know what the rows mean nor how the writer batches (store.go).

package hub

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// pgMigrations are applied in order, each once, recorded in schema_migrations; index i is version
// i+1. A migration is never edited once released: a change is a new one at the end.
var pgMigrations = [][]string{
	// 1: the tables of the SQLite schema's version 1, in PostgreSQL's types.
	{
		`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`,
		`CREATE TABLE workers (
			id TEXT PRIMARY KEY,
			name TEXT NOT NULL,
			token_hash BYTEA NOT NULL,
			created_at TEXT NOT NULL,
			last_seen TEXT NOT NULL DEFAULT ''
		)`,
		`CREATE TABLE pairing_codes (
			code_hash BYTEA PRIMARY KEY,
			created_at TEXT NOT NULL,
			used_at TEXT NOT NULL DEFAULT ''
		)`,
		`CREATE TABLE jobs (
			id TEXT PRIMARY KEY,
			seq BIGINT NOT NULL,
			kind TEXT NOT NULL,
			model TEXT NOT NULL,
			vram_gb DOUBLE PRECISION NOT NULL DEFAULT 0,
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
			result_size BIGINT NOT NULL DEFAULT 0,
			prompt TEXT NOT NULL DEFAULT '',
			created_at TEXT NOT NULL,
			updated_at TEXT NOT NULL
		)`,
		`CREATE INDEX jobs_unfinished ON jobs(status) WHERE status IN ('queued','offered','running')`,
		`CREATE UNIQUE INDEX jobs_seq ON jobs(seq)`,
		`CREATE TABLE worker_logs (
			id BIGSERIAL PRIMARY KEY,
			worker_id TEXT NOT NULL,
			seq BIGINT NOT NULL,
			ts TEXT NOT NULL,
			level TEXT NOT NULL,
			source TEXT NOT NULL,
			message TEXT NOT NULL,
			job_id TEXT NOT NULL DEFAULT ''
		)`,
		`CREATE INDEX worker_logs_by_worker ON worker_logs(worker_id, id)`,
	},
	// 2: replicas. A job unfinished has an owner (the replica that drives it, '' for none) and,
	// while its lease waits for a worker whose replica died, a grace deadline; declines and retry
	// cool-offs are rows, so that every replica honours them; seq comes from a sequence; a worker
	// row says which replica holds its session and how many sessions it had.
	{
		`ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE jobs ADD COLUMN grace_until_ms BIGINT NOT NULL DEFAULT 0`,
		`CREATE INDEX jobs_claimable ON jobs(seq) WHERE status = 'queued' AND owner = ''`,
		`CREATE INDEX jobs_owned ON jobs(owner) WHERE status IN ('queued','offered','running')`,
		`CREATE SEQUENCE jobs_seq_seq`,
		`SELECT setval('jobs_seq_seq', (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), false)`,
		`CREATE TABLE job_marks (
			job_id TEXT NOT NULL,
			worker_id TEXT NOT NULL,
			kind TEXT NOT NULL,
			until_ms BIGINT NOT NULL,
			reason TEXT NOT NULL DEFAULT '',
			PRIMARY KEY (job_id, worker_id, kind)
		)`,
		`CREATE TABLE replicas (
			id TEXT PRIMARY KEY,
			name TEXT NOT NULL,
			started_at TEXT NOT NULL,
			seen_at TIMESTAMPTZ NOT NULL
		)`,
		`ALTER TABLE workers ADD COLUMN replica TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE workers ADD COLUMN session BIGINT NOT NULL DEFAULT 0`,
	},
}

// pgMigrateKey is the advisory lock (a 64-bit key, "StudioMg") held while migrations run, so that
// two hubs starting at once do not both create the tables.
const pgMigrateKey int64 = 0x53747564696f4d67

// pgWriteTimeout bounds one write transaction: a database behind a cut network answers nothing,
// and without a limit the writer would wait for the kernel to give up on the connection.
const pgWriteTimeout = 15 * time.Second

// pgKeepEvery is how often the keeper looks at the database: a quiet one gets a ping so that a
// connection lost while nothing was written is noticed, and a lost one is tried again.
const pgKeepEvery = time.Second

// IsPostgresURL reports whether a --db value names a PostgreSQL database rather than a file.
func IsPostgresURL(s string) bool {
	for _, p := range []string{"postgres://", "postgresql://"} {
		if len(s) >= len(p) && s[:len(p)] == p {
			return true
		}
	}
	return false
}

// pgConfig parses a --db URL, with the defaults a hub wants: a connect timeout, and a name that
// pg_stat_activity shows.
func pgConfig(url string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("the --db value is not a PostgreSQL URL (postgres://user:password@host:5432/db): %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if cfg.RuntimeParams["application_name"] == "" {
		host, _ := os.Hostname()
		cfg.RuntimeParams["application_name"] = fmt.Sprintf("studio-hub on %s (pid %d)", host, os.Getpid())
	}
	return cfg, nil
}

// openPostgres connects, migrates and starts the writer and the keeper. reconnected runs (on the
// keeper) each time the database can be reached again after it could not.
func openPostgres(ctx context.Context, url string, reconnected func()) (*store, error) {
	cfg, err := pgConfig(url)
	if err != nil {
		return nil, err
	}
	where := fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("cannot reach PostgreSQL at %s: %w", where, err)
	}
	if err := pgMigrate(pctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate PostgreSQL database %s: %w", where, err)
	}
	s := newStore(db, "postgres")
	s.begin = func() (*sql.Tx, context.CancelFunc, error) {
		ctx, cancel := context.WithTimeout(context.Background(), pgWriteTimeout)
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			cancel()
			return nil, nil, err
		}
		return tx, cancel, nil
	}
	s.reconnected = reconnected
	// A batch that failed as a whole failed on the connection or the server: until a ping
	// answers again, writes are refused at once instead of queued.
	s.lost = s.setDown
	kctx, stop := context.WithCancel(context.Background())
	s.stopExtra = stop
	s.extra.Add(1)
	go func() {
		defer s.extra.Done()
		s.keep(kctx)
	}()
	s.start()
	return s, nil
}

// pgMigrate applies the migrations this database lacks, under a lock so that hubs starting
// together take turns, and refuses a database migrated by a newer hub.
func pgMigrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, pgMigrateKey); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`); err != nil {
		return err
	}
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return err
	}
	if have > len(pgMigrations) {
		return fmt.Errorf("it has schema version %d, newer than this hub's %d: run the newer studio-hub", have, len(pgMigrations))
	}
	for v := have + 1; v <= len(pgMigrations); v++ {
		for _, stmt := range pgMigrations[v-1] {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("version %d: %w", v, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, applied_at) VALUES($1, $2)`, v, fmtTime(time.Now())); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// keep runs until ctx ends: while the database can be reached it pings it when quiet, so a
// connection lost during a quiet spell is found; while it cannot, it pings each pgKeepEvery and,
// answered, says so (reconnected runs the hub's resync).
func (s *store) keep(ctx context.Context) {
	t := time.NewTicker(pgKeepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		down, quiet := s.down, time.Since(s.lastCommit) >= 2*pgKeepEvery
		s.mu.Unlock()
		if down == nil {
			if quiet {
				s.enqueue(func(tx *sql.Tx) error {
					_, err := tx.Exec(`SELECT 1`)
					return err
				}, nil)
			}
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.db.PingContext(pctx)
		cancel()
		if err != nil {
			continue
		}
		s.setUp()
		s.mu.Lock()
		s.lastCommit = time.Now()
		s.mu.Unlock()
		if s.reconnected != nil {
			s.reconnected()
		}
	}
}
