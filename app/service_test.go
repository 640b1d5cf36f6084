package app

import (
	"bytes"
	"encoding/xml"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/kardianos/service"
)

func TestServiceUnitText(t *testing.T) {
	tests := []struct {
		name     string
		opts     ServiceOptions
		execLine string
	}{
		{
			name:     "plain paths",
			opts:     ServiceOptions{ConfigPath: "/home/ada/.config/studio-worker/config.toml", Executable: "/usr/local/bin/studio-worker"},
			execLine: `ExecStart=/usr/local/bin/studio-worker "run" "--config" "/home/ada/.config/studio-worker/config.toml"`,
		},
		{
			name:     "spaces, quotes and systemd specials",
			opts:     ServiceOptions{ConfigPath: `/home/ada/My "Worker"/100%$ \x.toml`, Executable: "/opt/Studio Worker/studio-worker%1"},
			execLine: `ExecStart=/opt/Studio\x20Worker/studio-worker%%1 "run" "--config" "/home/ada/My \"Worker\"/100%%$$ \\x.toml"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			unit, err := RenderServiceUnit(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range []string{
				tt.execLine,
				"WantedBy=default.target",
				"Restart=on-failure",
				"RestartPreventExitStatus=3",
				"Description=" + svcDescription,
			} {
				if !svcHasLine(unit, line) {
					t.Errorf("unit has no line %q:\n%s", line, unit)
				}
			}
			for _, bad := range []string{"multi-user.target", "Restart=always", "{{", "}}"} {
				if strings.Contains(unit, bad) {
					t.Errorf("unit has %q:\n%s", bad, unit)
				}
			}
		})
	}
}

func TestServiceUnitRelativeConfigBecomesAbsolute(t *testing.T) {
	unit, err := RenderServiceUnit(ServiceOptions{ConfigPath: "config.toml", Executable: "/usr/bin/studio-worker"})
	if err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs("config.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(unit, `"--config" "`+abs+`"`) {
		t.Errorf("unit does not run with %s:\n%s", abs, unit)
	}
}

func TestServiceRejectsWhatAUnitCannotCarry(t *testing.T) {
	tests := []struct {
		name string
		opts ServiceOptions
	}{
		{"no config", ServiceOptions{Executable: "/usr/bin/studio-worker"}},
		{"newline in config", ServiceOptions{ConfigPath: "/tmp/a\nb.toml", Executable: "/usr/bin/studio-worker"}},
		{"dollar in program", ServiceOptions{ConfigPath: "/tmp/c.toml", Executable: "/opt/$HOME/studio-worker"}},
		{"quote in program", ServiceOptions{ConfigPath: "/tmp/c.toml", Executable: `/opt/"x"/studio-worker`}},
		{"backslash in program", ServiceOptions{ConfigPath: "/tmp/c.toml", Executable: `/opt/a\b/studio-worker`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if unit, err := RenderServiceUnit(tt.opts); err == nil {
				t.Fatalf("rendered:\n%s", unit)
			}
		})
	}
}

// TestServiceUnitVerifiedBySystemd has systemd's own parser read the unit: bad quoting or an
// unknown key is a warning there, so any output fails the test.
func TestServiceUnitVerifiedBySystemd(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	dir := filepath.Join(t.TempDir(), `Studio Worker 100%`)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "studio-worker")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit, err := RenderServiceUnit(ServiceOptions{ConfigPath: filepath.Join(dir, `my "config" $x \y.toml`), Executable: exe})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), svcName+".service")
	if err := os.WriteFile(file, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", file).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s\nunit:\n%s", err, out, unit)
	}
}

func TestServiceLaunchAgentText(t *testing.T) {
	opts := ServiceOptions{ConfigPath: "/Users/ada/Library/Application Support/studio-worker/a&b <c>.toml", Executable: "/Applications/Studio Worker.app/Contents/MacOS/studio-worker"}
	plist, err := RenderLaunchAgent(opts)
	if err != nil {
		t.Fatal(err)
	}
	// Parse the plist as launchd would see it: a dict of key/value pairs.
	type value struct {
		XMLName xml.Name
		Text    string  `xml:",chardata"`
		Inner   []value `xml:",any"`
	}
	var doc struct {
		Dict value `xml:"dict"`
	}
	if err := xml.Unmarshal([]byte(plist), &doc); err != nil {
		t.Fatalf("not XML: %v\n%s", err, plist)
	}
	dict := func(v value) map[string]value {
		m := map[string]value{}
		for i := 0; i+1 < len(v.Inner); i += 2 {
			if v.Inner[i].XMLName.Local != "key" {
				t.Fatalf("dict entry %d is <%s>, want <key>", i, v.Inner[i].XMLName.Local)
			}
			m[v.Inner[i].Text] = v.Inner[i+1]
		}
		return m
	}
	top := dict(doc.Dict)
	if got := top["Label"].Text; got != svcName {
		t.Errorf("Label = %q", got)
	}
	if got := top["RunAtLoad"].XMLName.Local; got != "true" {
		t.Errorf("RunAtLoad = <%s/>, want <true/>", got)
	}
	keep := top["KeepAlive"]
	if keep.XMLName.Local != "dict" {
		t.Fatalf("KeepAlive = <%s>, want a dict", keep.XMLName.Local)
	}
	if got := dict(keep)["SuccessfulExit"].XMLName.Local; got != "false" || len(keep.Inner) != 2 {
		t.Errorf("KeepAlive = %+v, want only SuccessfulExit false", keep.Inner)
	}
	var args []string
	for _, a := range top["ProgramArguments"].Inner {
		args = append(args, a.Text)
	}
	want := []string{opts.Executable, "run", "--config", opts.ConfigPath}
	if strings.Join(args, "\n") != strings.Join(want, "\n") {
		t.Errorf("ProgramArguments = %q, want %q", args, want)
	}
	for _, absent := range []string{"StandardOutPath", "StandardErrorPath", "UserName"} {
		if _, ok := top[absent]; ok {
			t.Errorf("plist sets %s", absent)
		}
	}
}

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
		err := svcRefuseSudoFor(tt.goos, tt.euid, tt.sudoUser)
		if (err != nil) != tt.refuse {
			t.Errorf("%s euid=%d SUDO_USER=%q: err = %v, want refusal %v", tt.goos, tt.euid, tt.sudoUser, err, tt.refuse)
		}
		if err != nil && (!errors.Is(err, ErrServiceUnderSudo) || !strings.Contains(err.Error(), "without sudo")) {
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
	_, err := ServiceControl(ServiceOptions{ConfigPath: "/tmp/c.toml", Executable: "/usr/bin/studio-worker"}, "install")
	if !errors.Is(err, ErrServiceUnderSudo) {
		t.Fatalf("err = %v, want ErrServiceUnderSudo", err)
	}
	if entries, _ := os.ReadDir(os.Getenv("HOME")); len(entries) != 0 {
		t.Errorf("HOME has %d entries after a refusal", len(entries))
	}
}

func TestServiceControlUnknownAction(t *testing.T) {
	if _, err := ServiceControl(ServiceOptions{ConfigPath: "/tmp/c.toml"}, "restart-everything"); err == nil {
		t.Fatal("no error")
	}
}

// svcFakeSystemctlScript stands in for systemctl, because a systemd user manager cannot run here
// (no user session bus in a container or CI) and a test must never touch the machine's own. It
// records each call and keeps the unit's active state in a file; kardianos runs the real code
// around it: writing the unit, enabling, reloading, asking for the status.
const svcFakeSystemctlScript = `#!/bin/sh
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

type svcFakeSystemctl struct{ dir, home string }

// svcUseFakeSystemctl points HOME at a temporary directory and PATH at the fake systemctl only.
func svcUseFakeSystemctl(t *testing.T) *svcFakeSystemctl {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the systemd user unit is Linux only")
	}
	f := &svcFakeSystemctl{dir: t.TempDir(), home: t.TempDir()}
	if err := os.WriteFile(filepath.Join(f.dir, "systemctl"), []byte(svcFakeSystemctlScript), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", f.dir)
	t.Setenv("HOME", f.home)
	t.Setenv("SVC_FAKE_DIR", f.dir)
	t.Setenv("SUDO_USER", "")
	return f
}

func (f *svcFakeSystemctl) calls(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, "calls"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func (f *svcFakeSystemctl) set(t *testing.T, name string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, name), nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (f *svcFakeSystemctl) unitFile() string {
	return filepath.Join(f.home, ".config", "systemd", "user", svcName+".service")
}

func svcTestOptions(t *testing.T) ServiceOptions {
	t.Helper()
	// A folder name with what systemd would expand or unquote, so that kardianos' escaping is
	// compared with ours wherever the two are.
	dir := filepath.Join(t.TempDir(), `Studio "Worker" 100%$ \x`)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte("# test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return ServiceOptions{ConfigPath: cfg, Executable: "/usr/local/bin/studio-worker"}
}

// TestServiceInstallWritesRenderedUnit runs kardianos' real systemd Install into a temporary HOME:
// the file it writes must be RenderServiceUnit's text, byte for byte.
func TestServiceInstallWritesRenderedUnit(t *testing.T) {
	f := svcUseFakeSystemctl(t)
	opts := svcTestOptions(t)
	s, err := NewService(opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Platform(); got != svcSystemdName {
		t.Fatalf("platform = %q, want %q", got, svcSystemdName)
	}
	if err := s.Install(); err != nil {
		t.Fatal(err)
	}
	written, err := os.ReadFile(f.unitFile())
	if err != nil {
		t.Fatal(err)
	}
	want, err := RenderServiceUnit(opts)
	if err != nil {
		t.Fatal(err)
	}
	if string(written) != want {
		t.Errorf("kardianos wrote:\n%s\nRenderServiceUnit says:\n%s", written, want)
	}
	wantCalls := []string{"enable --user " + svcName + ".service", "daemon-reload --user"}
	if got := f.calls(t); strings.Join(got, "\n") != strings.Join(wantCalls, "\n") {
		t.Errorf("systemctl calls = %q, want %q", got, wantCalls)
	}
	if err := s.Uninstall(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.unitFile()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unit still there after Uninstall: %v", err)
	}
}

func TestServiceControlLifecycle(t *testing.T) {
	f := svcUseFakeSystemctl(t)
	opts := svcTestOptions(t)
	unitShown := "~/.config/systemd/user/" + svcName + ".service"
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
		got, err := ServiceControl(opts, st.action)
		if err != nil {
			t.Fatalf("step %d %s: %v", i, st.action, err)
		}
		if got != st.want {
			t.Fatalf("step %d %s = %q, want %q", i, st.action, got, st.want)
		}
	}
	calls := strings.Join(f.calls(t), "\n")
	for _, want := range []string{"enable --user " + svcName + ".service", "start --user " + svcName + ".service", "stop --user " + svcName + ".service", "disable --user " + svcName + ".service"} {
		if !strings.Contains(calls, want) {
			t.Errorf("systemctl was never called with %q; calls:\n%s", want, calls)
		}
	}
	for _, action := range []string{"start", "stop"} {
		if _, err := ServiceControl(opts, action); !errors.Is(err, service.ErrNotInstalled) {
			t.Errorf("%s when not installed: err = %v, want ErrNotInstalled", action, err)
		}
	}
}

func TestServiceControlInstallFailures(t *testing.T) {
	tests := []struct {
		name    string
		flag    string // fake systemctl state
		opts    func(ServiceOptions) ServiceOptions
		wantErr error
		wantMsg string
	}{
		{name: "no user bus", flag: "nobus", wantErr: ErrNoUserSession, wantMsg: "No medium found"},
		{name: "enable fails", flag: "fail-enable", wantMsg: "exit status 1"},
		{name: "missing config", opts: func(o ServiceOptions) ServiceOptions {
			o.ConfigPath += ".missing"
			return o
		}, wantErr: os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := svcUseFakeSystemctl(t)
			opts := svcTestOptions(t)
			if tt.opts != nil {
				opts = tt.opts(opts)
			}
			if tt.flag != "" {
				f.set(t, tt.flag)
			}
			got, err := ServiceControl(opts, "install")
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
			if _, err := os.Stat(f.unitFile()); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("unit file left behind: %v", err)
			}
		})
	}
}

func TestServiceControlNoBusStillKnowsNotInstalled(t *testing.T) {
	f := svcUseFakeSystemctl(t)
	f.set(t, "nobus")
	got, err := ServiceControl(svcTestOptions(t), "status")
	if err != nil || got != "Not installed" {
		t.Fatalf("status = %q, %v; want Not installed", got, err)
	}
}

func TestServiceControlRefusesADifferentUnit(t *testing.T) {
	f := svcUseFakeSystemctl(t)
	if err := os.MkdirAll(filepath.Dir(f.unitFile()), 0o755); err != nil {
		t.Fatal(err)
	}
	other := "[Service]\nExecStart=/somewhere/else run\n"
	if err := os.WriteFile(f.unitFile(), []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := ServiceControl(svcTestOptions(t), "install"); err == nil || !strings.Contains(err.Error(), "uninstall") {
		t.Fatalf("install over another unit = %q, %v; want an error pointing at uninstall", got, err)
	}
	if b, _ := os.ReadFile(f.unitFile()); string(b) != other {
		t.Errorf("the other unit was changed:\n%s", b)
	}
}

// TestServiceRealInstall installs, queries and removes the real user service of this machine.
func TestServiceRealInstall(t *testing.T) {
	if os.Getenv("STUDIO_WORKER_TEST_SERVICE") != "1" {
		t.Skip("set STUDIO_WORKER_TEST_SERVICE=1 to install a real user service on this machine")
	}
	opts := svcTestOptions(t)
	if got, err := ServiceControl(opts, "status"); err != nil || got != "Not installed" {
		t.Skipf("a studio-worker service is already here (%q, %v): not touching it", got, err)
	}
	got, err := ServiceControl(opts, "install")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("install: %s", got)
	t.Cleanup(func() {
		if got, err := ServiceControl(opts, "uninstall"); err != nil {
			t.Errorf("uninstall: %v", err)
		} else {
			t.Logf("uninstall: %s", got)
		}
		if got, err := ServiceControl(opts, "status"); err != nil || got != "Not installed" {
			t.Errorf("status after uninstall = %q, %v", got, err)
		}
	})
	if got, err := ServiceControl(opts, "status"); err != nil || !strings.HasPrefix(got, "Stopped") {
		t.Errorf("status after install = %q, %v; want Stopped", got, err)
	}
	if runtime.GOOS == "linux" {
		home, _ := os.UserHomeDir()
		written, err := os.ReadFile(filepath.Join(home, ".config", "systemd", "user", svcName+".service"))
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := RenderServiceUnit(opts); string(written) != want {
			t.Errorf("installed unit differs from RenderServiceUnit:\n%s", written)
		}
	}
	if runtime.GOOS == "darwin" {
		written, err := os.ReadFile(svcLaunchdHome() + "/Library/LaunchAgents/" + svcName + ".plist")
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := RenderLaunchAgent(opts); string(written) != want {
			t.Errorf("installed plist differs from RenderLaunchAgent:\n%s", written)
		}
	}
}

func svcHasLine(text, line string) bool {
	for l := range strings.Lines(text) {
		if strings.TrimSuffix(l, "\n") == line {
			return true
		}
	}
	return false
}

// TestServiceTemplateEngineMatchesKardianos feeds templates that use every form of kardianos'
// engine through its real systemd Install and through ours: the texts must be the same.
func TestServiceTemplateEngineMatchesKardianos(t *testing.T) {
	templates := []struct{ name, text string }{
		{"values and pipelines", "A={{Name}} B={{ Path | cmdEscape }} C={{Description | cmd | cmd}}\n"},
		{"range with dot", "{{range Arguments}}[{{.}}|{{. | cmd}}]{{end}}\n"},
		{"range over nothing", "x{{range EnvVars}}never{{end}}y{{range Dependencies}}never{{end}}z\n"},
		{"if else", "{{if Name}}yes{{else}}no{{end}} {{if ChRoot}}yes{{else}}no{{end}} {{if EnvVars}}e{{end}}\n"},
		{"trim markers", "a  \n  {{- Name -}}  \n  b {{if Restart -}}\n  r={{Restart}}  {{- end}}\n"},
		{"nested", "{{if Arguments}}{{range Arguments}}{{if Name}}<{{.}}>{{end}}{{end}}{{end}}\n"},
		{"our unit", svcSystemdTemplate},
	}
	for _, tt := range templates {
		t.Run(tt.name, func(t *testing.T) {
			f := svcUseFakeSystemctl(t)
			exe, args, err := svcCommand(svcTestOptions(t), "linux")
			if err != nil {
				t.Fatal(err)
			}
			c := svcConfig(exe, args)
			c.Option["SystemdScript"] = tt.text
			s, err := svcNewService(c)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Install(); err != nil {
				t.Fatal(err)
			}
			written, err := os.ReadFile(f.unitFile())
			if err != nil {
				t.Fatal(err)
			}
			data, err := svcSystemdData(c)
			if err != nil {
				t.Fatal(err)
			}
			ours, err := svcRenderTemplate(tt.text, data, svcSystemdFuncs())
			if err != nil {
				t.Fatal(err)
			}
			if ours != string(written) {
				t.Errorf("kardianos:\n%q\nours:\n%q", written, ours)
			}
		})
	}
}

func TestServiceTemplateErrors(t *testing.T) {
	for _, text := range []string{"{{Name", "{{Missing}}", "{{Name | nofunc}}", "{{range Name}}x{{end}}", "{{range Arguments}}x", "{{end}}", "{{if}}x{{end}}"} {
		if out, err := svcRenderTemplate(text, map[string]any{"Name": "n", "Arguments": []string{"a"}}, nil); err == nil {
			t.Errorf("%q rendered %q, want an error", text, out)
		}
	}
}
