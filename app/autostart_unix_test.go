//go:build !windows

// autostart_unix_test.go: on Linux the checkbox and `studio-worker autostart` install the systemd
// user unit of app/service, run here against the fake systemctl of app/service/servicetest.

package app

import (
	"context"
	"os"
	"strings"
	"testing"

	"studioworker/app/service"
	"studioworker/app/service/servicetest"
)

func TestAutostartUserUnit(t *testing.T) {
	f := servicetest.UseFakeSystemctl(t)
	as := userService{opts: service.Options{ConfigPath: servicetest.ConfigFile(t), Executable: servicetest.Executable}}
	unit := "systemd user unit ~/.config/systemd/user/" + service.Name + ".service"

	st, err := as.Status()
	if err != nil || st.On || st.Service || st.Text != "Off: the worker starts only when you open it" {
		t.Fatalf("status before = %+v, %v", st, err)
	}
	if got, err := as.Disable(); err != nil || got != "Not installed: nothing to remove" {
		t.Fatalf("off before = %q, %v", got, err)
	}
	if got, err := as.Enable(); err != nil || got != "Installed: starts when you log in ("+unit+")" {
		t.Fatalf("on = %q, %v", got, err)
	}
	if _, err := os.Stat(f.UnitFile(service.Name)); err != nil {
		t.Fatalf("no unit file after on: %v", err)
	}
	st, err = as.Status()
	want := AutoStart{On: true, Text: "Starts when you log in (systemd user unit), not running now", Where: unit}
	if err != nil || st != want {
		t.Fatalf("status after on = %+v, %v; want %+v", st, err, want)
	}

	// systemd unreachable: the unit file still says it is set up, and the words say the rest.
	f.Set(t, "nobus")
	st, err = as.Status()
	if err != nil || !st.On || !strings.Contains(st.Text, "its state is unknown") || !strings.Contains(st.Text, "No medium found") {
		t.Fatalf("status without a user bus = %+v, %v", st, err)
	}
	f.Clear(t, "nobus")

	if got, err := as.Disable(); err != nil || got != "Uninstalled: removed ~/.config/systemd/user/"+service.Name+".service" {
		t.Fatalf("off = %q, %v", got, err)
	}
	if st, err := as.Status(); err != nil || st.On {
		t.Fatalf("status after off = %+v, %v", st, err)
	}
}

// TestAutostartCLIUserUnit: `studio-worker autostart` prints which mechanism it uses.
func TestAutostartCLIUserUnit(t *testing.T) {
	servicetest.UseFakeSystemctl(t)
	cfg := servicetest.ConfigFile(t)
	run := func(action string) string {
		t.Helper()
		var out, errb strings.Builder
		cli := &CLI{Stdout: &out, Stderr: &errb}
		if code := cli.Run([]string{"autostart", action, "--config", cfg}); code != ExitOK {
			t.Fatalf("autostart %s: exit %d, stderr %q", action, code, errb.String())
		}
		return out.String()
	}
	unit := "systemd user unit ~/.config/systemd/user/" + service.Name + ".service"
	if got := run("on"); !strings.Contains(got, unit) {
		t.Errorf("on printed %q, want the unit named", got)
	}
	if got, want := run("status"), "Starts when you log in (systemd user unit), not running now\n"+unit+"\n"; got != want {
		t.Errorf("status printed %q, want %q", got, want)
	}
	if got := run("off"); !strings.HasPrefix(got, "Uninstalled: removed") {
		t.Errorf("off printed %q", got)
	}
	if got := run("status"); got != "Off: the worker starts only when you open it\n" {
		t.Errorf("status after off printed %q", got)
	}
}

// TestAutostartWorkerCheckboxInstallsUserUnit: the checkbox's call, through the real worker and the
// real autostarter, ends with the unit installed and the State saying so.
func TestAutostartWorkerCheckboxInstallsUserUnit(t *testing.T) {
	f := servicetest.UseFakeSystemctl(t)
	cfgPath := servicetest.ConfigFile(t)
	w, err := NewWorker(Options{ConfigPath: cfgPath, Config: DefaultConfig()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.SetService(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.UnitFile(service.Name)); err != nil {
		t.Fatalf("no unit file: %v", err)
	}
	if st := w.Observers().Snapshot().AutoStart; !st.On || !strings.HasPrefix(st.Text, "Starts when you log in (systemd user unit)") {
		t.Errorf("State.AutoStart = %+v", st)
	}
	if _, err := w.SetService(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if st := w.Observers().Snapshot().AutoStart; st.On {
		t.Errorf("State.AutoStart after off = %+v", st)
	}
}
