// autostart_test.go: what every OS shares of "start with this computer": the command's usage, the
// worker publishing what the OS holds, and old config files that still carry auto_start.
package app

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"studioworker/internal/wintest"
)

func TestAutostartCLIUsage(t *testing.T) {
	tests := []struct {
		args   []string
		stderr string
	}{
		{[]string{"autostart"}, "autostart needs an action: on, off or status"},
		{[]string{"autostart", "sometimes"}, `unknown autostart action "sometimes"`},
		{[]string{"autostart", "on", "--nope"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb strings.Builder
			cli := &CLI{Stdout: &out, Stderr: &errb}
			if code := cli.Run(tt.args); code != ExitUsage {
				t.Fatalf("exit %d, want %d; stderr %q", code, ExitUsage, errb.String())
			}
			if !strings.Contains(errb.String(), tt.stderr) || out.Len() != 0 {
				t.Errorf("stdout %q, stderr %q; want stderr with %q", out.String(), errb.String(), tt.stderr)
			}
		})
	}
}

// fakeAutostarterInMemory stands in for the OS's record (the registry, systemd) in the worker's
// tests, which must not change the machine they run on. It can be changed behind the worker's
// back, as `studio-worker autostart` or a person would.
type fakeAutostarterInMemory struct {
	mu      sync.Mutex
	on      bool
	failing error
}

func (f *fakeAutostarterInMemory) set(on bool) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing != nil {
		return "", f.failing
	}
	f.on = on
	return map[bool]string{true: "Starts at logon: test entry", false: "Removed the test entry"}[on], nil
}

func (f *fakeAutostarterInMemory) Enable() (string, error)  { return f.set(true) }
func (f *fakeAutostarterInMemory) Disable() (string, error) { return f.set(false) }

func (f *fakeAutostarterInMemory) Status() (AutoStart, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.on {
		return AutoStart{On: true, Text: "Starts at logon (test entry)", Where: "test entry, which runs studio-worker"}, nil
	}
	return AutoStart{Text: "Off: the worker starts only when you open it"}, nil
}

func (f *fakeAutostarterInMemory) fail(err error) {
	f.mu.Lock()
	f.failing = err
	f.mu.Unlock()
}

func TestAutostartWorkerPublishesWhatTheOSHolds(t *testing.T) {
	path := filepath.Join(wintest.TempDir(t), "config.json")
	if err := SaveConfig(path, DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	fake := &fakeAutostarterInMemory{}
	w, err := NewWorker(Options{ConfigPath: path, Config: DefaultConfig(), autostart: fake})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got, err := w.SetService(ctx, true)
	if err != nil || got != "Starts at logon: test entry" {
		t.Fatalf("SetService(true) = %q, %v", got, err)
	}
	if st := w.Observers().Snapshot().AutoStart; !st.On || st.Text != "Starts at logon (test entry)" || st.Where == "" {
		t.Errorf("State.AutoStart after on = %+v", st)
	}
	if !w.Capabilities().AutoStart {
		t.Error("the hub is not told that the worker starts with this computer")
	}

	// A failed change still publishes what the OS holds, so the window shows the truth.
	fake.fail(errors.New("registry: access is denied"))
	if _, err := w.SetService(ctx, false); err == nil || !strings.Contains(err.Error(), "access is denied") {
		t.Fatalf("SetService(false) with a failing OS = %v", err)
	}
	if st := w.Observers().Snapshot().AutoStart; !st.On {
		t.Errorf("State.AutoStart after a failed off = %+v, want still on", st)
	}

	// Changed elsewhere: the settings page loading reads the OS again.
	fake.fail(nil)
	if _, err := fake.Disable(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Settings(ctx); err != nil {
		t.Fatal(err)
	}
	if st := w.Observers().Snapshot().AutoStart; st.On || !strings.HasPrefix(st.Text, "Off") {
		t.Errorf("State.AutoStart after an outside change = %+v", st)
	}
	if w.Capabilities().AutoStart {
		t.Error("the hub still hears auto_start after it was turned off")
	}

	// Nothing of it is written into the config file: the OS is its only record.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "auto_start") {
		t.Errorf("the config file carries auto_start:\n%s", data)
	}
}

func TestAutostartWorkerWithoutConfigFile(t *testing.T) {
	w, err := NewWorker(Options{Config: DefaultConfig()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.SetService(context.Background(), true); err == nil || !strings.Contains(err.Error(), "no config file") {
		t.Fatalf("SetService without a config file = %v, want an error saying so", err)
	}
}

// TestAutostartOldConfigKeyIsDropped: files from before the OS was the record still load, and
// the key is not written back.
func TestAutostartOldConfigKeyIsDropped(t *testing.T) {
	path := filepath.Join(wintest.TempDir(t), "config.json")
	if err := os.WriteFile(path, []byte(`{"auto_accept": true, "auto_start": true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("an old config with auto_start: %v", err)
	}
	if cfg.RetiredAutoStart != nil {
		t.Errorf("auto_start is carried on: %v", *cfg.RetiredAutoStart)
	}
	if err := SaveConfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "auto_start") {
		t.Errorf("auto_start is written back:\n%s", data)
	}
}
