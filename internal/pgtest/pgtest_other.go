//go:build !linux

// pgtest_other.go: away from Linux the server runs as the test's own user, in the test's folder;
// the tests that need PostgreSQL run in Linux's lane (./build.sh test).

package pgtest

import (
	"os"
	"os/exec"
	"path/filepath"
)

var quitSignal = os.Kill

func prepareDir(base string) (string, bool, error) {
	dir := filepath.Join(base, "postgres")
	return dir, false, os.MkdirAll(dir, 0o700)
}

func (s *Server) asServerUser(*exec.Cmd) {}
