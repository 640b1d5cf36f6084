//go:build windows

// windows.go: a Windows service put into the real service manager for a test, and taken out
// again, for the tests that read what the manager holds.

package servicetest

import (
	"errors"
	"testing"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc/mgr"
)

// CreateWindowsService puts a stopped, start-by-hand service called name into the service manager,
// which would run exe with "run --config cfg", and deletes it when the test ends; it skips the
// test without administrator rights. It is created here rather than through kardianos: Wine 8
// refuses the delayed automatic start kardianos asks for ("Invalid level"), and what the callers
// test is the reading.
func CreateWindowsService(t *testing.T, name, displayName, exe, cfg string) {
	t.Helper()
	m, err := mgr.Connect()
	if errors.Is(err, windows.ERROR_ACCESS_DENIED) {
		t.Skip("creating a service needs administrator rights")
	}
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.CreateService(name, exe, mgr.Config{DisplayName: displayName, StartType: mgr.StartManual}, "run", "--config", cfg)
	if err != nil {
		m.Disconnect()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Delete(); err != nil {
			t.Errorf("remove the test service: %v", err)
		}
		s.Close()
		m.Disconnect()
	})
}
