// cli_test.go: the command table's dispatch (help, version, an unknown name), the commands that
// need no running worker, and the usage errors every command answers with exit code 2.

package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLIUsageAndOfflineCommands(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	cfgPath := filepath.Join(dir, "w", "config.json")
	if err := SaveConfig(cfgPath, DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"unknown command", []string{"frob"}, ExitUsage, "", "unknown command"},
		{"unknown command lists the commands", []string{"frob"}, ExitUsage, "", "studio-worker register --server URL"},
		{"help", []string{"help"}, ExitOK, "studio-worker service install|uninstall", ""},
		{"version", []string{"version"}, ExitOK, "studio-worker  (commit ), protocol v1", ""},
		{"register without flags", []string{"register", "--config", cfgPath}, ExitUsage, "", "--server URL and --pairing-code"},
		{"register insecure", []string{"register", "--config", cfgPath, "--server", "http://studio.example.com", "--pairing-code", "x"}, ExitUsage, "", "http://"},
		{"bad flag", []string{"status", "--nope"}, ExitUsage, "", "flag provided but not defined"},
		{"service without action", []string{"service"}, ExitUsage, "", "needs an action"},
		{"service bad action", []string{"service", "explode"}, ExitUsage, "", "unknown service action"},
		{"status with no worker", []string{"status", "--config", cfgPath}, ExitError, "", "no Studio Worker is running"},
		{"drain with no worker", []string{"drain", "--config", cfgPath}, ExitError, "", "no Studio Worker is running"},
		{"pause with no worker is remembered", []string{"pause", "--config", cfgPath}, ExitOK, "start paused", ""},
		{"auto-accept without on or off", []string{"auto-accept", "--config", cfgPath}, ExitUsage, "", "auto-accept needs on or off"},
		{"auto-accept off with no worker is remembered", []string{"auto-accept", "off", "--config", cfgPath}, ExitOK, "each offer waits for you", ""},
		{"window without a window", []string{"--config", cfgPath}, ExitUsage, "", "no window"},
		{"demo bad jobs", []string{"demo", "--jobs", "0"}, ExitUsage, "", "--jobs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb strings.Builder
			cli := &CLI{Stdout: &out, Stderr: &errb}
			if code := cli.Run(tt.args); code != tt.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tt.code, errb.String())
			}
			if !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errb.String(), tt.stderr) {
				t.Fatalf("stdout %q (want %q), stderr %q (want %q)", out.String(), tt.stdout, errb.String(), tt.stderr)
			}
		})
	}
	cfg, err := LoadConfig(cfgPath)
	if err != nil || !cfg.Paused || cfg.AutoAccept {
		t.Fatalf("pause and auto-accept off with no worker running were not saved: %v paused=%v auto_accept=%v", err, cfg.Paused, cfg.AutoAccept)
	}
}

func TestGPUCommandWithSimulatedGPU(t *testing.T) {
	cfgPath := filepath.Join(t.TempDir(), "config.json")
	cfg := DefaultConfig()
	cfg.GPU.Simulated = &SimulatedGPU{Name: "Demo card", VRAMGB: 16}
	if err := SaveConfig(cfgPath, cfg); err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	cli := &CLI{Stdout: &out, Stderr: &errb}
	if code := cli.Run([]string{"gpu", "--json", "--config", cfgPath}); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), `"simulated": true`) || !strings.Contains(out.String(), "Demo card") {
		t.Fatalf("gpu --json = %s", out.String())
	}
	os.Remove(cfgPath)
}

func TestWindowWithoutADisplaySaysSo(t *testing.T) {
	t.Setenv("DISPLAY", "")
	t.Setenv("WAYLAND_DISPLAY", "")
	var out, errb strings.Builder
	cli := &CLI{Stdout: &out, Stderr: &errb, GUI: func(Source, Controller, GUIOptions) error {
		t.Error("the window was opened without a display")
		return nil
	}}
	if code := cli.Run([]string{"--config", filepath.Join(t.TempDir(), "config.json")}); code != ExitUsage {
		t.Fatalf("exit %d, want %d; stderr %q", code, ExitUsage, errb.String())
	}
	if !strings.Contains(errb.String(), "no display") || !strings.Contains(errb.String(), "studio-worker run") {
		t.Fatalf("stderr %q does not say what to do", errb.String())
	}
}
