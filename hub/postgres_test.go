// postgres_test.go: what only a hub on PostgreSQL does, against a real server of its own: versioned
// migrations, and a database that goes away and comes back (jobs refused with 503, sessions kept,
// /healthz saying so, nothing answered that was not written). Replicas are cluster_test.go's; the
// rest of the suite runs on PostgreSQL too (main_test.go).

package hub

import (
	"context"
	"database/sql"
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"studioworker/internal/pgtest"
	"studioworker/protocol"
)

// startPGHub runs a hub on a fresh database of pg.
func startPGHub(t *testing.T, pg *pgtest.Server, mutate func(*Config)) *env {
	t.Helper()
	logs := &lockedBuffer{}
	cfg := Config{
		PostgresURL:      pg.NewDatabase(t),
		DataDir:          filepath.Join(t.TempDir(), "data"),
		OpenRegistration: true,
		AdminToken:       "admin-secret-token",
		Logger:           slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	return startHubWith(t, cfg, logs)
}

func TestPostgresMigrationsAreVersioned(t *testing.T) {
	pg := pgtest.Start(t)
	e := startPGHub(t, pg, nil)
	var v int
	if err := e.hub.db.db.QueryRow(`SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil || v != len(pgMigrations) {
		t.Fatalf("schema_migrations says %d (%v), want %d", v, err, len(pgMigrations))
	}
	e.stop()
	// A database a newer hub migrated is refused, not written with an older idea of its tables.
	db, err := sql.Open("pgx", e.cfg.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO schema_migrations(version, applied_at) VALUES($1, 'later')`, len(pgMigrations)+1); err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), e.cfg)
	if err == nil || !strings.Contains(err.Error(), "newer than this hub's") {
		t.Fatalf("Open on a newer schema: %v", err)
	}
}

// TestDatabaseDownRefusesJobsKeepsSessions: with PostgreSQL gone, a submission gets 503 with
// Retry-After and a sentence, /healthz still answers 200 and says the database cannot be reached,
// and the worker's session stays up (its heartbeats are answered). Once the server is back, the
// hub says so and takes jobs again, and they run.
func TestDatabaseDownRefusesJobsKeepsSessions(t *testing.T) {
	pg := pgtest.Start(t)
	e := startPGHub(t, pg, nil)
	creds := e.register("a")
	w := e.connect(creds, hello(llmCaps, nil, nil))

	pg.Kill()
	e.waitHealth(t, "degraded")
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+protocol.PathJobs, strings.NewReader(`{"kind":"llm","model":"m1","input":{"prompt":"hi"}}`))
	req.Header.Set("Authorization", "Bearer "+e.client.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body protocol.HTTPError
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(body.Error, "database cannot be reached") {
		t.Fatalf("submit while the database is down: %d Retry-After %q %q", resp.StatusCode, resp.Header.Get("Retry-After"), body.Error)
	}
	w.heartbeat(protocol.Status{State: protocol.StateIdle, Accepting: true})
	if _, err := e.hub.Cancel(context.Background(), "j-none"); err == nil {
		t.Fatal("a cancel while the database is down was not refused")
	}

	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	e.waitHealth(t, "ok")
	id := e.submit(llmJob("m1"))
	c := w.offerFor(id)
	w.send(protocol.Accept{JobID: c.JobID})
	if ack := w.complete(id, `{"text":"x"}`); ack.Status != protocol.AckStored {
		t.Fatalf("ack %+v", ack)
	}
	e.waitJob(id, "completed", statusIs(protocol.JobCompleted))
	if !strings.Contains(e.logs.String(), "the database can be reached again") {
		t.Fatalf("the hub did not say the database was back:\n%s", e.logs.String())
	}
}

// TestResultSentWhileTheDatabaseIsDownIsStoredLater: a result whose commit failed is not left
// completed in memory. On the old hub the worker's second send was answered `duplicate` and the
// worker dropped a result no database held.
func TestResultSentWhileTheDatabaseIsDownIsStoredLater(t *testing.T) {
	pg := pgtest.Start(t)
	e := startPGHub(t, pg, func(c *Config) { c.LeaseGrace = time.Minute })
	creds := e.register("a")
	w := e.connect(creds, hello(llmCaps, nil, nil))
	id := e.submit(llmJob("m1"))
	e.lease(w, id)

	pg.Kill()
	e.waitHealth(t, "degraded")
	w.send(protocol.CompleteJSON{JobID: id, Result: json.RawMessage(`{"text":"kept"}`)})
	// error{internal} and a close: the worker keeps the result and sends it again later.
	if f := expect[protocol.Error](w); f.Code != protocol.ErrCodeInternal {
		t.Fatalf("a result that was not written was answered %+v", f)
	}
	<-w.done
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	e.waitHealth(t, "ok")
	w2 := e.connect(creds, hello(llmCaps, nil, []string{id}))
	if ack := w2.complete(id, `{"text":"kept"}`); ack.Status != protocol.AckStored {
		t.Fatalf("the result sent again after the database came back: %+v, want stored", ack)
	}
	info := e.waitJob(id, "completed", statusIs(protocol.JobCompleted))
	if string(info.Result) != `{"text":"kept"}` {
		t.Fatalf("stored result %s", info.Result)
	}
}

// waitHealth waits until /healthz's body says status.
func (e *env) waitHealth(t *testing.T, status string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	var last map[string]string
	for time.Now().Before(deadline) {
		resp, err := http.Get(e.srv.URL + protocol.PathHealthz)
		if err == nil {
			last = nil
			_ = json.NewDecoder(resp.Body).Decode(&last)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("/healthz answered %d; the contract says 200", resp.StatusCode)
			}
			if last["status"] == status {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("/healthz never said %q (last %v)", status, last)
}
