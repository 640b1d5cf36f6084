//go:build !windows

// window_lock_unix_test.go: what a crashed window leaves on Linux and macOS, a socket file
// nobody listens on.

package app

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

func leaveStaleWindowLock(t *testing.T, configPath string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(configPath), 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", windowSocketPath(configPath))
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // as a killed process would
	ln.Close()
	if _, err := os.Stat(windowSocketPath(configPath)); err != nil {
		t.Fatalf("the stale socket file is not there: %v", err)
	}
}
