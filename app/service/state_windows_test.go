//go:build windows

// state_windows_test.go: WindowsState and its query-only fallback read the real service manager
// (under Wine in the Windows lane, or on Windows itself).

package service

import (
	"os"
	"path/filepath"
	"testing"

	"studioworker/app/service/servicetest"
	"studioworker/internal/wintest"
)

// TestWindowsServiceState puts a Windows service named like ours into the service manager and
// reads it back both ways. It needs administrator rights and changes the machine, so it runs only
// when asked.
func TestWindowsServiceState(t *testing.T) {
	if os.Getenv("STUDIO_WORKER_TEST_SERVICE") != "1" {
		t.Skip("set STUDIO_WORKER_TEST_SERVICE=1 to install a real Windows service on this machine")
	}
	dir := filepath.Join(wintest.TempDir(t), "Studio Worker")
	opts := Options{ConfigPath: filepath.Join(dir, "my config", "config.json"), Executable: filepath.Join(dir, "studio-worker.exe")}
	if got, err := Control(opts, "status"); err != nil || got != "Not installed" {
		t.Skipf("a studio-worker service is already here (%q, %v): not touching it", got, err)
	}
	servicetest.CreateWindowsService(t, Name, DisplayName, opts.Executable, opts.ConfigPath)

	if installed, running, err := WindowsState(opts); err != nil || !installed || running {
		t.Errorf("through kardianos: installed=%v running=%v, %v; want installed, stopped", installed, running, err)
	}
	if installed, running, err := queryState(Name); err != nil || !installed || running {
		t.Errorf("query-only: installed=%v running=%v, %v; want installed, stopped", installed, running, err)
	}
}

// TestServiceQueryOnly: the query-only fallback of WindowsState finds a service every Windows
// (and Wine) has, and none for a name nobody installs.
func TestServiceQueryOnly(t *testing.T) {
	if installed, _, err := queryState("RpcSs"); err != nil || !installed {
		t.Errorf("RpcSs: installed=%v, %v", installed, err)
	}
	if installed, _, err := queryState("studio-worker-no-such-service"); err != nil || installed {
		t.Errorf("a missing service: installed=%v, %v", installed, err)
	}
}
