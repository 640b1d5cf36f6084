//go:build !windows

package hub

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDatabaseFilesAreTheHubsAlone: hub.db, its WAL and its shared-memory index hold token hashes
// and inputs; a hub that made them 0644 (umask's default) let every user on the machine read them.
func TestDatabaseFilesAreTheHubsAlone(t *testing.T) {
	onSQLite(t)
	e := startHub(t, nil)
	e.submit(llmJob("m1")) // a write, so the WAL exists
	for _, name := range []string{"hub.db", "hub.db-wal", "hub.db-shm"} {
		st, err := os.Stat(filepath.Join(filepath.Dir(e.cfg.DBPath), name))
		if err != nil {
			t.Fatal(err)
		}
		if perm := st.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s is %v, want no access for group and others", name, perm)
		}
	}
}
