// Package servicetest is what the tests of app/service, and of the code that installs the user
// service through it, need to run without a systemd user manager: a fake systemctl (a fake,
// because a user manager cannot run in a container or CI, and a test must never touch the
// machine's own), and a config file in a folder whose name systemd would expand or unquote. Only
// _test.go files import it. It must not import app/service, whose own tests use it.
package servicetest

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Executable is the program path the tests' service runs; it need not exist.
const Executable = "/usr/local/bin/studio-worker"

// fakeSystemctlScript stands in for systemctl. It records each call and keeps the unit's active
// state in a file; kardianos runs the real code around it: writing the unit, enabling, reloading,
// asking for the status.
const fakeSystemctlScript = `#!/bin/sh
echo "$*" >> "$SVC_FAKE_DIR/calls"
case "$1" in
--user)
	if [ -f "$SVC_FAKE_DIR/nobus" ]; then echo "Failed to connect to bus: No medium found" >&2; exit 1; fi
	exit 0;;
enable|disable|daemon-reload)
	if [ -f "$SVC_FAKE_DIR/fail-$1" ]; then exit 1; fi
	exit 0;;
start) echo active > "$SVC_FAKE_DIR/state"; exit 0;;
stop) echo inactive > "$SVC_FAKE_DIR/state"; exit 0;;
is-active)
	state=inactive
	if [ -f "$SVC_FAKE_DIR/state" ]; then read -r state < "$SVC_FAKE_DIR/state"; fi
	echo "$state"
	if [ "$state" = active ]; then exit 0; fi
	exit 3;;
list-unit-files)
	if [ -f "$HOME/.config/systemd/user/$4" ]; then echo "$4 enabled enabled"; fi
	exit 0;;
esac
echo "fake systemctl: unexpected $*" >&2
exit 1
`

// FakeSystemctl is the fake systemctl in Dir, with HOME at Home.
type FakeSystemctl struct{ Dir, Home string }

// UseFakeSystemctl points HOME at a temporary directory and PATH at the fake systemctl only, for
// the rest of the test; it skips the test off Linux, where there is no systemd user unit.
func UseFakeSystemctl(t *testing.T) *FakeSystemctl {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the systemd user unit is Linux only")
	}
	f := &FakeSystemctl{Dir: t.TempDir(), Home: t.TempDir()}
	if err := os.WriteFile(filepath.Join(f.Dir, "systemctl"), []byte(fakeSystemctlScript), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", f.Dir)
	t.Setenv("HOME", f.Home)
	t.Setenv("SVC_FAKE_DIR", f.Dir)
	t.Setenv("SUDO_USER", "")
	return f
}

// Calls lists the fake's calls so far, one line of arguments each.
func (f *FakeSystemctl) Calls(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.Dir, "calls"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// Set turns on one of the fake's failures: "nobus" (no user session bus), "fail-enable",
// "fail-disable", "fail-daemon-reload".
func (f *FakeSystemctl) Set(t *testing.T, name string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.Dir, name), nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Clear turns a failure of Set off again.
func (f *FakeSystemctl) Clear(t *testing.T, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(f.Dir, name)); err != nil {
		t.Fatal(err)
	}
}

// UnitFile is where the user unit name.service is, under the fake HOME.
func (f *FakeSystemctl) UnitFile(name string) string {
	return filepath.Join(f.Home, ".config", "systemd", "user", name+".service")
}

// ConfigFile makes a config file in a folder whose name has what systemd would expand or unquote,
// so that kardianos' escaping is compared with ours wherever the two are.
func ConfigFile(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), `Studio "Worker" 100%$ \x`)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte("# test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}
