// render_test.go: the unit and plist texts — what they run, how paths are escaped, what systemd's
// own parser and a plist reader make of them.

package service

import (
	"bytes"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestServiceUnitText(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		execLine string
	}{
		{
			name:     "plain paths",
			opts:     Options{ConfigPath: "/home/ada/.config/studio-worker/config.toml", Executable: "/usr/local/bin/studio-worker"},
			execLine: `ExecStart=/usr/local/bin/studio-worker "run" "--config" "/home/ada/.config/studio-worker/config.toml"`,
		},
		{
			name:     "spaces, quotes and systemd specials",
			opts:     Options{ConfigPath: `/home/ada/My "Worker"/100%$ \x.toml`, Executable: "/opt/Studio Worker/studio-worker%1"},
			execLine: `ExecStart=/opt/Studio\x20Worker/studio-worker%%1 "run" "--config" "/home/ada/My \"Worker\"/100%%$$ \\x.toml"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			unit, err := renderUnit(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range []string{
				tt.execLine,
				"WantedBy=default.target",
				"Restart=on-failure",
				"RestartPreventExitStatus=3",
				"Description=" + description,
			} {
				if !hasLine(unit, line) {
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
	unit, err := renderUnit(Options{ConfigPath: "config.toml", Executable: "/usr/bin/studio-worker"})
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
		opts Options
	}{
		{"no config", Options{Executable: "/usr/bin/studio-worker"}},
		{"newline in config", Options{ConfigPath: "/tmp/a\nb.toml", Executable: "/usr/bin/studio-worker"}},
		{"dollar in program", Options{ConfigPath: "/tmp/c.toml", Executable: "/opt/$HOME/studio-worker"}},
		{"quote in program", Options{ConfigPath: "/tmp/c.toml", Executable: `/opt/"x"/studio-worker`}},
		{"backslash in program", Options{ConfigPath: "/tmp/c.toml", Executable: `/opt/a\b/studio-worker`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if unit, err := renderUnit(tt.opts); err == nil {
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
	unit, err := renderUnit(Options{ConfigPath: filepath.Join(dir, `my "config" $x \y.toml`), Executable: exe})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), Name+".service")
	if err := os.WriteFile(file, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", file).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s\nunit:\n%s", err, out, unit)
	}
}

func TestServiceLaunchAgentText(t *testing.T) {
	opts := Options{ConfigPath: "/Users/ada/Library/Application Support/studio-worker/a&b <c>.toml", Executable: "/Applications/Studio Worker.app/Contents/MacOS/studio-worker"}
	plist, err := renderLaunchAgent(opts)
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
	if got := top["Label"].Text; got != Name {
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

func hasLine(text, line string) bool {
	for l := range strings.Lines(text) {
		if strings.TrimSuffix(l, "\n") == line {
			return true
		}
	}
	return false
}
