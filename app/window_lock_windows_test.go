// window_lock_windows_test.go: the single-window checks on Windows (run under Wine by the
// Windows lane), and what a crashed window leaves there: window.json naming a port nobody
// listens on.

package app

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"testing"

	"studioworker/internal/wintest"
)

func TestWindowLockWindows(t *testing.T) { checkWindowLock(t, wintest.TempDir(t)) }

func TestWindowLockLeftByACrashIsTakenOverWindows(t *testing.T) {
	checkStaleWindowLock(t, wintest.TempDir(t))
}

func leaveStaleWindowLock(t *testing.T, configPath string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	data, err := json.Marshal(controlEndpoint{Addr: addr, Token: "00"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(configPath), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(windowEndpointPath(configPath), data, 0o600); err != nil {
		t.Fatal(err)
	}
}
