//go:build !windows

// autostart_unix_test.go: on Linux the checkbox and `studio-worker autostart` install the systemd
// user unit of app/service, run here against the fake systemctl of app/service/servicetest.

package app

import (
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
