// main_test.go: which database the package's tests run on. By default each test gets a SQLite
// file; with STUDIO_HUB_TEST_DB=postgres (./build.sh test runs the package both ways) every test
// gets a fresh database on one real PostgreSQL server that this TestMain starts and stops, so the
// whole suite checks the PostgreSQL store against the same expectations.

package hub

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"studioworker/internal/pgtest"
)

// testPG is the package's PostgreSQL server, set once by TestMain before any test runs and nil
// when the tests run on SQLite.
var testPG *pgtest.Server

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if os.Getenv("STUDIO_HUB_TEST_DB") != "postgres" {
		return m.Run()
	}
	base, err := os.MkdirTemp("", "hub-postgres-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(base)
	s, err := pgtest.Launch(base)
	if err != nil {
		fmt.Fprintln(os.Stderr, "STUDIO_HUB_TEST_DB=postgres:", err)
		return 1
	}
	defer s.Kill()
	testPG = s
	return m.Run()
}

// useTestDB points cfg at the test's database: a SQLite file in dir, or a fresh PostgreSQL
// database with the hub's files in dir/data.
func useTestDB(t *testing.T, cfg *Config, dir string) {
	t.Helper()
	if testPG == nil {
		cfg.DBPath = filepath.Join(dir, "hub.db")
		return
	}
	cfg.PostgresURL = testPG.NewDatabase(t)
	cfg.DataDir = filepath.Join(dir, "data")
}

// onSQLite skips a test about the SQLite file itself when the suite runs on PostgreSQL.
func onSQLite(t *testing.T) {
	t.Helper()
	if testPG != nil {
		t.Skip("a test of the SQLite file; this run is on PostgreSQL (STUDIO_HUB_TEST_DB=postgres)")
	}
}

// dataDir is the folder of the hub's result and input files.
func (e *env) dataDir() string {
	if e.cfg.DataDir != "" {
		return e.cfg.DataDir
	}
	return filepath.Join(filepath.Dir(e.cfg.DBPath), "data")
}

// TestTheSuiteRunsOnTheStoreItWasAskedFor: a run that asked for PostgreSQL and quietly got
// SQLite would pass for the wrong reason.
func TestTheSuiteRunsOnTheStoreItWasAskedFor(t *testing.T) {
	e := startHub(t, nil)
	want := "sqlite"
	if os.Getenv("STUDIO_HUB_TEST_DB") == "postgres" {
		want = "postgres"
	}
	if e.hub.db.dialect != want {
		t.Fatalf("the hub runs on %s, the run asked for %s", e.hub.db.dialect, want)
	}
	var n int
	q := `SELECT COUNT(*) FROM sqlite_master`
	if want == "postgres" {
		q = `SELECT COUNT(*) FROM schema_migrations`
	}
	if err := e.hub.db.db.QueryRow(q).Scan(&n); err != nil || n == 0 {
		t.Fatalf("%s: %d rows, %v", q, n, err)
	}
}
