//go:build windows

// autostart_windows_test.go: the logon entry written to, read back from and removed from the real
// HKCU Run key (under Wine in ./build.sh's Windows lane, or on Windows itself).
package app

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"

	"studioworker/app/service"
	"studioworker/app/service/servicetest"
	"studioworker/internal/wintest"
)

// testLogonEntry is an autostarter on the real Run key under a value of its own, so that a test
// on a Windows machine leaves that user's own "Studio Worker" entry alone; it is removed after.
func testLogonEntry(t *testing.T, opts service.Options) logonEntry {
	t.Helper()
	e := logonEntry{opts: opts, value: "Studio Worker (test)"}
	removeTestValue(t, e.value)
	t.Cleanup(func() { removeTestValue(t, e.value) })
	return e
}

func removeTestValue(t *testing.T, name string) {
	t.Helper()
	k, err := registry.OpenKey(registry.CURRENT_USER, autostartRunKey, registry.SET_VALUE)
	if errors.Is(err, registry.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if err := k.DeleteValue(name); err != nil && !errors.Is(err, registry.ErrNotExist) {
		t.Errorf("remove the test value %q: %v", name, err)
	}
}

// readRunValue reads a Run value straight from the registry, not through the code under test.
func readRunValue(t *testing.T, name string) (string, uint32, error) {
	t.Helper()
	k, err := registry.OpenKey(registry.CURRENT_USER, autostartRunKey, registry.QUERY_VALUE)
	if err != nil {
		return "", 0, err
	}
	defer k.Close()
	return k.GetStringValue(name)
}

// testProgramAndConfig makes a config file, and names a program, in folders with spaces.
func testProgramAndConfig(t *testing.T) (exe, cfg string) {
	t.Helper()
	dir := filepath.Join(wintest.TempDir(t), "Studio Worker")
	if err := os.MkdirAll(filepath.Join(dir, "my config"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg = filepath.Join(dir, "my config", "config.json")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "studio-worker.exe"), cfg
}

func TestAutostartLogonEntry(t *testing.T) {
	exe, cfg := testProgramAndConfig(t)
	e := testLogonEntry(t, service.Options{ConfigPath: cfg, Executable: exe})
	where := `logon entry HKCU\Software\Microsoft\Windows\CurrentVersion\Run\Studio Worker (test), which runs `
	wantCmd := `"` + exe + `" --tray --config "` + cfg + `"`

	if got, err := e.Disable(); err != nil || got != "Not set: nothing to remove" {
		t.Fatalf("off before = %q, %v", got, err)
	}
	if st, err := e.Status(); err != nil || st.On || st.Where != "" {
		t.Fatalf("status before = %+v, %v", st, err)
	}

	got, err := e.Enable()
	if err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(got, "\n"); first != "Starts at logon: "+where+wantCmd {
		t.Errorf("on = %q, want %q", got, "Starts at logon: "+where+wantCmd)
	}
	v, typ, err := readRunValue(t, e.value)
	if err != nil {
		t.Fatalf("the Run value is not there after on: %v", err)
	}
	if v != wantCmd || typ != registry.SZ {
		t.Errorf("Run value = %q (type %d), want %q (REG_SZ)", v, typ, wantCmd)
	}
	// Windows' own splitting of the command line gives back the paths whole, spaces and all.
	args, err := windows.DecomposeCommandLine(v)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{exe, "--tray", "--config", cfg}; strings.Join(args, "|") != strings.Join(want, "|") {
		t.Errorf("the entry splits into %q, want %q", args, want)
	}

	st, err := e.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !st.On || st.Where != where+wantCmd || !strings.HasPrefix(st.Text, "Starts at logon (Windows logon entry)") {
		t.Errorf("status after on = %+v", st)
	}
	if strings.Contains(st.Text, "but it starts") {
		t.Errorf("our own entry is reported as another program's: %q", st.Text)
	}
	if _, err := e.Enable(); err != nil {
		t.Errorf("on again: %v", err)
	}

	// An entry that starts something else (the program moved) is named as such.
	k, err := registry.OpenKey(registry.CURRENT_USER, autostartRunKey, registry.SET_VALUE)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.SetStringValue(e.value, `"C:\old place\studio-worker.exe"`); err != nil {
		t.Fatal(err)
	}
	k.Close()
	if st, err := e.Status(); err != nil || !st.On || !strings.Contains(st.Text, `but it starts "C:\old place\studio-worker.exe"`) {
		t.Errorf("status with another program's entry = %+v, %v", st, err)
	}

	if got, err := e.Disable(); err != nil || got != `Removed the logon entry HKCU\Software\Microsoft\Windows\CurrentVersion\Run\Studio Worker (test)` {
		t.Fatalf("off = %q, %v", got, err)
	}
	if _, _, err := readRunValue(t, e.value); !errors.Is(err, registry.ErrNotExist) {
		t.Errorf("the Run value is still there after off: %v", err)
	}
	if st, err := e.Status(); err != nil || st.On {
		t.Errorf("status after off = %+v, %v", st, err)
	}
}

// TestAutostartDefaultConfigHasNoArguments: with the default config file the entry is the program
// alone, however the path's letters are cased.
func TestAutostartDefaultConfigHasNoArguments(t *testing.T) {
	appData := wintest.TempDir(t)
	t.Setenv("APPDATA", appData) // os.UserConfigDir on Windows
	exe, _ := testProgramAndConfig(t)
	cfg := strings.ToUpper(filepath.Join(appData, "studio-worker", "config.json"))
	e := testLogonEntry(t, service.Options{ConfigPath: cfg, Executable: exe})
	if _, err := e.Enable(); err != nil {
		t.Fatal(err)
	}
	if v, _, err := readRunValue(t, e.value); err != nil || v != `"`+exe+`" --tray` {
		t.Errorf("Run value = %q, %v; want %q", v, err, `"`+exe+`" --tray`)
	}
}

func TestAutostartRefusesPathsAnEntryCannotCarry(t *testing.T) {
	for _, p := range []string{`C:\a"b\studio-worker.exe`, `C:\dir\`, "C:\\nul\x00.exe"} {
		if q, err := quoteWindowsPath(p); err == nil {
			t.Errorf("quoteWindowsPath(%q) = %q, want an error", p, q)
		}
	}
	if q, err := quoteWindowsPath(`C:\Program Files\studio-worker.exe`); err != nil || q != `"C:\Program Files\studio-worker.exe"` {
		t.Errorf("quoteWindowsPath with spaces = %q, %v", q, err)
	}
}

// TestAutostartNamesAWindowsService puts a Windows service named like `studio-worker service`'s
// into the service manager and expects the status to name it. It needs administrator rights and
// changes the machine, so it runs only when asked. How the service's state is read is app/service's
// (and tested there); what is tested here is that the logon entry's status and its "on" name it.
func TestAutostartNamesAWindowsService(t *testing.T) {
	if os.Getenv("STUDIO_WORKER_TEST_SERVICE") != "1" {
		t.Skip("set STUDIO_WORKER_TEST_SERVICE=1 to install a real Windows service on this machine")
	}
	exe, cfg := testProgramAndConfig(t)
	opts := service.Options{ConfigPath: cfg, Executable: exe}
	if got, err := service.Control(opts, "status"); err != nil || got != "Not installed" {
		t.Skipf("a studio-worker service is already here (%q, %v): not touching it", got, err)
	}
	servicetest.CreateWindowsService(t, service.Name, service.DisplayName, exe, cfg)

	e := testLogonEntry(t, opts)
	st, err := e.Status()
	if err != nil {
		t.Fatal(err)
	}
	want := "Installed as a Windows service: runs without the tray or this window (stopped now)"
	if st.On || !st.Service || !st.Starts() || st.Text != want {
		t.Errorf("status with the service only = %+v, want Text %q", st, want)
	}
	got, err := e.Enable()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "A Windows service is installed too") {
		t.Errorf("on with a service installed = %q, want the service named", got)
	}
	st, err = e.Status()
	if err != nil || !st.On || !st.Service || st.Text != "Starts at logon (Windows logon entry)\n"+want {
		t.Errorf("status with both = %+v, %v", st, err)
	}
	t.Logf("status with both:\n%s\n%s", st.Text, st.Where)
}

// TestAutostartCLIWindows runs `studio-worker autostart on|status|off` on the real "Studio Worker"
// value, so it leaves a machine alone that already has one.
func TestAutostartCLIWindows(t *testing.T) {
	if v, _, err := readRunValue(t, autostartValue); err == nil {
		t.Skipf("this user has a %q logon entry (%s): not touching it", autostartValue, v)
	}
	t.Cleanup(func() { removeTestValue(t, autostartValue) })
	_, cfg := testProgramAndConfig(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	run := func(action string) string {
		t.Helper()
		var out, errb strings.Builder
		cli := &CLI{Stdout: &out, Stderr: &errb}
		if code := cli.Run([]string{"autostart", action, "--config", cfg}); code != ExitOK {
			t.Fatalf("autostart %s: exit %d, stderr %q", action, code, errb.String())
		}
		return out.String()
	}
	where := `logon entry HKCU\Software\Microsoft\Windows\CurrentVersion\Run\Studio Worker, which runs "` + self + `" --tray --config "` + cfg + `"`
	if got := run("on"); !strings.HasPrefix(got, "Starts at logon: "+where+"\n") {
		t.Errorf("on printed %q, want it to start with %q", got, "Starts at logon: "+where)
	}
	if got, want := run("status"), "Starts at logon (Windows logon entry)\n"+where+"\n"; got != want {
		t.Errorf("status printed %q, want %q", got, want)
	}
	t.Logf("autostart status:\n%s", run("status"))
	if got := run("off"); got != `Removed the logon entry HKCU\Software\Microsoft\Windows\CurrentVersion\Run\Studio Worker`+"\n" {
		t.Errorf("off printed %q", got)
	}
	if _, _, err := readRunValue(t, autostartValue); !errors.Is(err, registry.ErrNotExist) {
		t.Errorf("the value is still there after off: %v", err)
	}
}
