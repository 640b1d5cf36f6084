// control_test.go: Control's install, uninstall, start, stop and status against kardianos' real
// systemd code and servicetest's fake systemctl, its refusals (sudo, a different unit, no user
// bus), and, when asked, the real user service of this machine.

package service

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	kardianos "github.com/kardianos/service"

	"studioworker/app/service/servicetest"
)

func TestServiceRefuseSudo(t *testing.T) {
	tests := []struct {
		goos     string
		euid     int
		sudoUser string
		refuse   bool
	}{
		{"linux", 0, "ada", true},
		{"darwin", 0, "ada", true},
		{"linux", 0, "", false},    // root's own login: its own session
		{"linux", 1000, "", false}, // the user
		{"linux", 1000, "ada", false},
		{"windows", -1, "ada", false},
	}
	for _, tt := range tests {
		err := refuseSudoFor(tt.goos, tt.euid, tt.sudoUser)
		if (err != nil) != tt.refuse {
			t.Errorf("%s euid=%d SUDO_USER=%q: err = %v, want refusal %v", tt.goos, tt.euid, tt.sudoUser, err, tt.refuse)
		}
		if err != nil && (!errors.Is(err, ErrUnderSudo) || !strings.Contains(err.Error(), "without sudo")) {
			t.Errorf("refusal does not say why: %v", err)
		}
	}
}

func TestServiceControlRefusesUnderSudo(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skip("sudo is a Linux and macOS matter")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs euid 0 to be refused")
	}
	t.Setenv("SUDO_USER", "ada")
	t.Setenv("HOME", t.TempDir())
	_, err := Control(Options{ConfigPath: "/tmp/c.toml", Executable: "/usr/bin/studio-worker"}, "install")
	if !errors.Is(err, ErrUnderSudo) {
		t.Fatalf("err = %v, want ErrUnderSudo", err)
	}
	if entries, _ := os.ReadDir(os.Getenv("HOME")); len(entries) != 0 {
		t.Errorf("HOME has %d entries after a refusal", len(entries))
	}
}

func TestServiceControlUnknownAction(t *testing.T) {
	if _, err := Control(Options{ConfigPath: "/tmp/c.toml"}, "restart-everything"); err == nil {
		t.Fatal("no error")
	}
}

// testOptions is a service of servicetest.Executable on servicetest.ConfigFile.
func testOptions(t *testing.T) Options {
	t.Helper()
	return Options{ConfigPath: servicetest.ConfigFile(t), Executable: servicetest.Executable}
}

// TestServiceInstallWritesRenderedUnit runs kardianos' real systemd Install into a temporary HOME:
// the file it writes must be renderUnit's text, byte for byte.
func TestServiceInstallWritesRenderedUnit(t *testing.T) {
	f := servicetest.UseFakeSystemctl(t)
	opts := testOptions(t)
	s, err := serviceFor(opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Platform(); got != systemdName {
		t.Fatalf("platform = %q, want %q", got, systemdName)
	}
	if err := s.Install(); err != nil {
		t.Fatal(err)
	}
	written, err := os.ReadFile(f.UnitFile(Name))
	if err != nil {
		t.Fatal(err)
	}
	want, err := renderUnit(opts)
	if err != nil {
		t.Fatal(err)
	}
	if string(written) != want {
		t.Errorf("kardianos wrote:\n%s\nrenderUnit says:\n%s", written, want)
	}
	wantCalls := []string{"enable --user " + Name + ".service", "daemon-reload --user"}
	if got := f.Calls(t); strings.Join(got, "\n") != strings.Join(wantCalls, "\n") {
		t.Errorf("systemctl calls = %q, want %q", got, wantCalls)
	}
	if err := s.Uninstall(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.UnitFile(Name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unit still there after Uninstall: %v", err)
	}
}

func TestServiceControlLifecycle(t *testing.T) {
	f := servicetest.UseFakeSystemctl(t)
	opts := testOptions(t)
	unitShown := "~/.config/systemd/user/" + Name + ".service"
	steps := []struct {
		action, want string
	}{
		{"status", "Not installed"},
		{"uninstall", "Not installed: nothing to remove"},
		{"install", "Installed: starts when you log in (systemd user unit " + unitShown + ")"},
		{"install", "Already installed: starts when you log in (systemd user unit " + unitShown + ")"},
		{"status", "Stopped: installed, starts when you log in"},
		{"start", "Started"},
		{"status", "Running"},
		{"stop", "Stopped"},
		{"start", "Started"},
		{"uninstall", "Uninstalled: removed " + unitShown},
		{"status", "Not installed"},
	}
	for i, st := range steps {
		got, err := Control(opts, st.action)
		if err != nil {
			t.Fatalf("step %d %s: %v", i, st.action, err)
		}
		if got != st.want {
			t.Fatalf("step %d %s = %q, want %q", i, st.action, got, st.want)
		}
	}
	calls := strings.Join(f.Calls(t), "\n")
	for _, want := range []string{"enable --user " + Name + ".service", "start --user " + Name + ".service", "stop --user " + Name + ".service", "disable --user " + Name + ".service"} {
		if !strings.Contains(calls, want) {
			t.Errorf("systemctl was never called with %q; calls:\n%s", want, calls)
		}
	}
	for _, action := range []string{"start", "stop"} {
		if _, err := Control(opts, action); !errors.Is(err, kardianos.ErrNotInstalled) {
			t.Errorf("%s when not installed: err = %v, want ErrNotInstalled", action, err)
		}
	}
}

func TestServiceControlInstallFailures(t *testing.T) {
	tests := []struct {
		name    string
		flag    string // fake systemctl state
		opts    func(Options) Options
		wantErr error
		wantMsg string
	}{
		{name: "no user bus", flag: "nobus", wantErr: ErrNoUserSession, wantMsg: "No medium found"},
		{name: "enable fails", flag: "fail-enable", wantMsg: "exit status 1"},
		{name: "missing config", opts: func(o Options) Options {
			o.ConfigPath += ".missing"
			return o
		}, wantErr: os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := servicetest.UseFakeSystemctl(t)
			opts := testOptions(t)
			if tt.opts != nil {
				opts = tt.opts(opts)
			}
			if tt.flag != "" {
				f.Set(t, tt.flag)
			}
			got, err := Control(opts, "install")
			if err == nil {
				t.Fatalf("installed: %q", got)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %v, want it to say %q", err, tt.wantMsg)
			}
			// Nothing half-installed is left for the next attempt to trip on.
			if _, err := os.Stat(f.UnitFile(Name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("unit file left behind: %v", err)
			}
		})
	}
}

func TestServiceControlNoBusStillKnowsNotInstalled(t *testing.T) {
	f := servicetest.UseFakeSystemctl(t)
	f.Set(t, "nobus")
	got, err := Control(testOptions(t), "status")
	if err != nil || got != "Not installed" {
		t.Fatalf("status = %q, %v; want Not installed", got, err)
	}
}

func TestServiceControlRefusesADifferentUnit(t *testing.T) {
	f := servicetest.UseFakeSystemctl(t)
	if err := os.MkdirAll(filepath.Dir(f.UnitFile(Name)), 0o755); err != nil {
		t.Fatal(err)
	}
	other := "[Service]\nExecStart=/somewhere/else run\n"
	if err := os.WriteFile(f.UnitFile(Name), []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Control(testOptions(t), "install"); err == nil || !strings.Contains(err.Error(), "uninstall") {
		t.Fatalf("install over another unit = %q, %v; want an error pointing at uninstall", got, err)
	}
	if b, _ := os.ReadFile(f.UnitFile(Name)); string(b) != other {
		t.Errorf("the other unit was changed:\n%s", b)
	}
}

// TestServiceRealInstall installs, queries and removes the real user service of this machine.
func TestServiceRealInstall(t *testing.T) {
	if os.Getenv("STUDIO_WORKER_TEST_SERVICE") != "1" {
		t.Skip("set STUDIO_WORKER_TEST_SERVICE=1 to install a real user service on this machine")
	}
	opts := testOptions(t)
	if got, err := Control(opts, "status"); err != nil || got != "Not installed" {
		t.Skipf("a studio-worker service is already here (%q, %v): not touching it", got, err)
	}
	got, err := Control(opts, "install")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("install: %s", got)
	t.Cleanup(func() {
		if got, err := Control(opts, "uninstall"); err != nil {
			t.Errorf("uninstall: %v", err)
		} else {
			t.Logf("uninstall: %s", got)
		}
		if got, err := Control(opts, "status"); err != nil || got != "Not installed" {
			t.Errorf("status after uninstall = %q, %v", got, err)
		}
	})
	if got, err := Control(opts, "status"); err != nil || !strings.HasPrefix(got, "Stopped") {
		t.Errorf("status after install = %q, %v; want Stopped", got, err)
	}
	if runtime.GOOS == "linux" {
		home, _ := os.UserHomeDir()
		written, err := os.ReadFile(filepath.Join(home, ".config", "systemd", "user", Name+".service"))
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := renderUnit(opts); string(written) != want {
			t.Errorf("installed unit differs from renderUnit:\n%s", written)
		}
	}
	if runtime.GOOS == "darwin" {
		written, err := os.ReadFile(launchdHome() + "/Library/LaunchAgents/" + Name + ".plist")
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := renderLaunchAgent(opts); string(written) != want {
			t.Errorf("installed plist differs from renderLaunchAgent:\n%s", written)
		}
	}
}
