// pgtest_test.go: the server starts, takes a database, survives a restart on its port, and is
// gone after Kill.

package pgtest

import (
	"database/sql"
	"testing"
)

func TestServerStartsRestartsAndStops(t *testing.T) {
	s := Start(t)
	url := s.NewDatabase(t)
	query := func() error {
		db, err := sql.Open("pgx", url)
		if err != nil {
			return err
		}
		defer db.Close()
		var n int
		return db.QueryRow(`SELECT 1`).Scan(&n)
	}
	if err := query(); err != nil {
		t.Fatalf("a fresh database does not answer: %v\n%s", err, s.Log())
	}
	s.Kill()
	if err := query(); err == nil {
		t.Fatal("the database still answers after Kill")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := query(); err != nil {
		t.Fatalf("the database does not answer after a restart: %v\n%s", err, s.Log())
	}
}
