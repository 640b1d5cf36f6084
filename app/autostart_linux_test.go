// autostart_linux_test.go: on Linux the checkbox and `studio-worker autostart` write a desktop
// autostart entry that starts the window in the tray, without any systemd user bus (issue 18
// finding 4: the checkbox failed with "systemctl --user is not available" in such a session).

package app

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"studioworker/app/service"
	"studioworker/app/service/servicetest"
)

// unquoteExec splits an Exec value the way a desktop does: the string escapes first, then the
// quoted arguments with their backslash escapes, then %% — so the test reads back what was written.
func unquoteExec(t *testing.T, v string) []string {
	t.Helper()
	v = strings.ReplaceAll(v, `\\`, `\`)
	var args []string
	var cur strings.Builder
	in, esc, started := false, false, false
	for _, r := range v {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case in && r == '\\':
			esc = true
		case r == '"':
			in, started = !in, true
		case !in && r == ' ':
			if started {
				args = append(args, cur.String())
				cur.Reset()
				started = false
			}
		default:
			cur.WriteRune(r)
			started = true
		}
	}
	if started {
		args = append(args, cur.String())
	}
	for i := range args {
		args[i] = strings.ReplaceAll(args[i], "%%", "%")
	}
	return args
}

func TestAutostartDesktopEntry(t *testing.T) {
	servicetest.UseFakeSystemctl(t)
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "xdg"))
	// A systemd user bus is not needed: the fake systemctl says there is none.
	exe := filepath.Join(dir, `my "apps" $HOME 100% \ bin`, "studio-worker")
	cfg := filepath.Join(dir, "elsewhere", "config.json")
	as := xdgAutostart{opts: service.Options{ConfigPath: cfg, Executable: exe}, unit: userService{opts: service.Options{ConfigPath: cfg, Executable: exe}}}
	entryFile := filepath.Join(dir, "xdg", "autostart", "studio-worker.desktop")

	st, err := as.Status()
	if err != nil || st.On || st.Text != "Off: the worker starts only when you open it" {
		t.Fatalf("status before = %+v, %v", st, err)
	}
	got, err := as.Enable()
	if err != nil || !strings.HasPrefix(got, "Starts when you log in: desktop autostart entry") {
		t.Fatalf("on = %q, %v", got, err)
	}
	data, err := os.ReadFile(entryFile)
	if err != nil {
		t.Fatalf("no entry: %v", err)
	}
	text := string(data)
	for _, want := range []string{"[Desktop Entry]\n", "Type=Application\n", "Name=Studio Worker\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("entry lacks %q:\n%s", want, text)
		}
	}
	args := unquoteExec(t, execLine(text))
	if want := []string{exe, "--tray", "--config", cfg}; strings.Join(args, "|") != strings.Join(want, "|") {
		t.Errorf("Exec reads back as %q, want %q\n%s", args, want, text)
	}
	st, err = as.Status()
	if err != nil || !st.On || st.Service || !strings.HasPrefix(st.Text, "Starts when you log in, in the tray") || !strings.Contains(st.Where, "studio-worker.desktop") {
		t.Fatalf("status after on = %+v, %v", st, err)
	}

	// Turned off in the desktop's startup settings: the file stays, the checkbox shows off.
	if err := os.WriteFile(entryFile, []byte(text+"Hidden=true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := as.Status(); err != nil || st.On || !strings.Contains(st.Text, "turned off") {
		t.Fatalf("status of a hidden entry = %+v, %v", st, err)
	}

	if got, err := as.Disable(); err != nil || !strings.HasPrefix(got, "Removed the desktop autostart entry") {
		t.Fatalf("off = %q, %v", got, err)
	}
	if _, err := os.Stat(entryFile); !os.IsNotExist(err) {
		t.Fatalf("the entry is still there: %v", err)
	}
	if got, err := as.Disable(); err != nil || got != "Not set: nothing to remove" {
		t.Fatalf("off again = %q, %v", got, err)
	}
}

// TestAutostartDefaultConfigLeavesOutConfig: the default config file needs no --config.
func TestAutostartDefaultConfigLeavesOutConfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	def, err := defaultConfigPath()
	if err != nil {
		t.Fatal(err)
	}
	as := xdgAutostart{opts: service.Options{ConfigPath: def, Executable: "/opt/studio-worker/studio-worker"}}
	got, err := as.command()
	if err != nil || got != `"/opt/studio-worker/studio-worker" "--tray"` {
		t.Fatalf("command = %q, %v", got, err)
	}
}

// TestAutostartCheckboxWritesTheDesktopEntry: the checkbox's call through the real worker, in a
// session without a systemd user bus, ends with the entry written and the State saying so.
func TestAutostartCheckboxWritesTheDesktopEntry(t *testing.T) {
	f := servicetest.UseFakeSystemctl(t)
	f.Set(t, "nobus")
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "xdg"))
	w, err := NewWorker(Options{ConfigPath: servicetest.ConfigFile(t), Config: DefaultConfig()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.SetService(context.Background(), true); err != nil {
		t.Fatalf("the checkbox in a session without a systemd user bus: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "xdg", "autostart", "studio-worker.desktop")); err != nil {
		t.Fatalf("no desktop entry: %v", err)
	}
	if st := w.Observers().Snapshot().AutoStart; !st.On || !strings.Contains(st.Text, "desktop autostart entry") {
		t.Errorf("State.AutoStart = %+v", st)
	}
	if _, err := w.SetService(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if st := w.Observers().Snapshot().AutoStart; st.On {
		t.Errorf("State.AutoStart after off = %+v", st)
	}
}

// TestAutostartCLIDesktopEntry: `studio-worker autostart` says which mechanism it uses.
func TestAutostartCLIDesktopEntry(t *testing.T) {
	servicetest.UseFakeSystemctl(t)
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "xdg"))
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
	if got := run("on"); !strings.Contains(got, "desktop autostart entry") || !strings.Contains(got, "--tray") {
		t.Errorf("on printed %q", got)
	}
	if got := run("status"); !strings.HasPrefix(got, "Starts when you log in, in the tray (desktop autostart entry)\n") {
		t.Errorf("status printed %q", got)
	}
	if got := run("off"); !strings.HasPrefix(got, "Removed the desktop autostart entry") {
		t.Errorf("off printed %q", got)
	}
	if got := run("status"); got != "Off: the worker starts only when you open it\n" {
		t.Errorf("status after off printed %q", got)
	}
}
