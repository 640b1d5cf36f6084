// store_postgres.go: opening a PostgreSQL database (pgx through database/sql): its versioned
// migrations, the lock that makes this hub the database's one writer, and the keeper that notices a
// connection that went away, reconnects, and stops the hub if another one wrote meanwhile. It must
// not know what the rows mean nor how the writer batches (store.go).

package hub

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
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
}

// The advisory locks this hub takes, as 64-bit keys ("StudioHu", "StudioMg"): pgActiveKey is held
// by the serving hub on its writer's connection for as long as it serves; pgMigrateKey only while
// migrations run, so that two hubs starting at once do not both create the tables.
const (
	pgActiveKey  int64 = 0x53747564696f4875
	pgMigrateKey int64 = 0x53747564696f4d67
)

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

// pgWriter is the connection the writer's transactions run on; holding it holds pgActiveKey, so
// that a hub whose connection died cannot write beside one that took the database over.
type pgWriter struct {
	db *sql.DB

	mu   sync.Mutex
	conn *sql.Conn // nil while lost
	gen  int64     // the active_generation this hub took: another hub's start moves it
}

// openPostgres connects, migrates, takes the writer's lock and starts the writer and the keeper.
// reconnected runs (on the keeper) each time the database can be reached again after it could
// not; onFatal is called once when this hub may no longer write: another hub took the database
// over while its connection was down.
func openPostgres(ctx context.Context, url string, reconnected func(), onFatal func(error)) (*store, error) {
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
	w := &pgWriter{db: db}
	if err := w.take(pctx, 0); err != nil {
		db.Close()
		return nil, fmt.Errorf("PostgreSQL database %s: %w", where, err)
	}
	s := newStore(db, "postgres")
	s.begin = w.begin
	s.reconnected = reconnected
	s.lost = func(err error) {
		w.drop()
		s.setDown(err)
	}
	s.closeDB = func() error {
		w.drop()
		return db.Close()
	}
	kctx, stop := context.WithCancel(context.Background())
	s.stopExtra = stop
	s.extra.Add(1)
	go func() {
		defer s.extra.Done()
		s.keep(kctx, w, onFatal)
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

// errTakenOver is why a hub stops serving: another one wrote to the database while this one's
// connection was down, so what this one holds in memory is no longer what the database says.
var errTakenOver = errors.New("another studio-hub took over the database while this hub's connection to it was down")

// take gets a connection and the writer's lock on it, and moves active_generation on. want is the
// generation this hub had before its connection was lost (0 at start): when the database has
// another, someone else served in between and take fails with errTakenOver.
func (w *pgWriter) take(ctx context.Context, want int64) error {
	conn, err := w.db.Conn(ctx)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		discard(conn)
		return err
	}
	var got bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, pgActiveKey).Scan(&got); err != nil {
		return fail(err)
	}
	if !got {
		holder := w.holder(ctx, conn)
		if want != 0 {
			return fail(fmt.Errorf("%w (%s holds it now)", errTakenOver, holder))
		}
		return fail(fmt.Errorf("another studio-hub already serves it (%s); one database has one hub: stop that one, or give this one a database of its own", holder))
	}
	if want != 0 {
		var cur string
		err := conn.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'active_generation'`).Scan(&cur)
		if err != nil {
			return fail(err)
		}
		if n, _ := strconv.ParseInt(cur, 10, 64); n != want {
			return fail(fmt.Errorf("%w (generation %d, this hub had %d)", errTakenOver, n, want))
		}
	}
	var gen string
	err = conn.QueryRowContext(ctx, `INSERT INTO meta(key, value) VALUES('active_generation', '1')
		ON CONFLICT (key) DO UPDATE SET value = (meta.value::bigint + 1)::text RETURNING value`).Scan(&gen)
	if err != nil {
		return fail(err)
	}
	n, err := strconv.ParseInt(gen, 10, 64)
	if err != nil {
		return fail(fmt.Errorf("active_generation %q: %w", gen, err))
	}
	w.mu.Lock()
	w.conn, w.gen = conn, n
	w.mu.Unlock()
	return nil
}

// holder names the session that holds the writer's lock, as PostgreSQL knows it.
func (w *pgWriter) holder(ctx context.Context, conn *sql.Conn) string {
	var app, addr, since string
	err := conn.QueryRowContext(ctx, `SELECT a.application_name, COALESCE(host(a.client_addr), 'a local socket'),
			to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
		FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted
			AND l.classid::bigint = ($1::bigint >> 32) AND l.objid::bigint = ($1::bigint & 4294967295)`,
		pgActiveKey).Scan(&app, &addr, &since)
	if err != nil {
		return "a session PostgreSQL does not name"
	}
	return fmt.Sprintf("%q from %s, connected since %s", app, addr, since)
}

// begin opens a write transaction on the locked connection, bounded by pgWriteTimeout.
func (w *pgWriter) begin() (*sql.Tx, context.CancelFunc, error) {
	w.mu.Lock()
	conn := w.conn
	w.mu.Unlock()
	if conn == nil {
		return nil, nil, errors.New("no connection to the database")
	}
	ctx, cancel := context.WithTimeout(context.Background(), pgWriteTimeout)
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return tx, cancel, nil
}

// drop closes the locked connection for good (its server session ends, and the lock with it).
func (w *pgWriter) drop() {
	w.mu.Lock()
	conn := w.conn
	w.conn = nil
	w.mu.Unlock()
	if conn != nil {
		discard(conn)
	}
}

func (w *pgWriter) generation() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gen
}

// discard closes conn's server session instead of giving it back to the pool, where it would keep
// an advisory lock for whoever takes it next.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// keep runs until ctx ends: while the database can be reached it pings it when quiet, so a
// connection lost during a quiet spell is found; while it cannot, it tries again each pgKeepEvery
// and, reconnected, says so (reconnected runs the hub's resync). A takeover ends it.
func (s *store) keep(ctx context.Context, w *pgWriter, onFatal func(error)) {
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
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := w.take(tctx, w.generation())
		cancel()
		switch {
		case err == nil:
			s.setUp()
			s.mu.Lock()
			s.lastCommit = time.Now()
			s.mu.Unlock()
			if s.reconnected != nil {
				s.reconnected()
			}
		case errors.Is(err, errTakenOver):
			s.mu.Lock()
			s.down = err
			s.mu.Unlock()
			if onFatal != nil {
				onFatal(err)
			}
			return
		}
	}
}
