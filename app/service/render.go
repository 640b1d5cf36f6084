// render.go: the systemd user unit and the LaunchAgent plist exactly as kardianos' Install writes
// them — our templates, the data maps kardianos builds, its pipeline functions — so that install
// can tell our own unit from another one. The template engine itself is template.go's.

package service

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"

	kardianos "github.com/kardianos/service"
)

// renderUnit returns the systemd user unit exactly as kardianos' Install writes it: our
// template, the data map it builds from our Config (service_systemd_linux.go), the same engine and
// functions.
func renderUnit(opts Options) (string, error) {
	exe, args, err := commandLine(opts, "linux")
	if err != nil {
		return "", err
	}
	c := kardianosConfig(exe, args)
	data, err := systemdData(c)
	if err != nil {
		return "", err
	}
	out, err := renderTemplate(systemdTemplate, data, systemdFuncs())
	if err != nil {
		return "", fmt.Errorf("service: render the systemd unit: %w", err)
	}
	return out, nil
}

// systemdData is the data map kardianos' systemd Install renders c's template with.
func systemdData(c *kardianos.Config) (map[string]any, error) {
	exe, err := filepath.Abs(c.Executable) // kardianos' execPath
	if err != nil {
		return nil, fmt.Errorf("service: executable path: %w", err)
	}
	return map[string]any{
		"Description":       c.Description,
		"Path":              exe,
		"Name":              c.Name,
		"Dependencies":      c.Dependencies,
		"Arguments":         c.Arguments,
		"ChRoot":            c.ChRoot,
		"WorkingDirectory":  c.WorkingDirectory,
		"UserName":          c.UserName,
		"ReloadSignal":      "",
		"PIDFile":           "",
		"LogDirectory":      "/var/log",
		"OutputFileSupport": "", // LogOutput is off
		"LimitNOFILE":       "",
		"Restart":           "always",
		"SuccessExitStatus": "",
		"EnvVars":           []string(nil),
	}, nil
}

// systemdFuncs are kardianos' pipeline functions for systemd units (service_linux.go).
func systemdFuncs() map[string]func(string) string {
	return map[string]func(string) string{
		"cmd":       func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` },
		"cmdEscape": func(s string) string { return strings.ReplaceAll(s, " ", `\x20`) },
	}
}

// renderLaunchAgent returns the LaunchAgent plist exactly as kardianos' Install writes it
// (service_darwin.go).
func renderLaunchAgent(opts Options) (string, error) {
	exe, args, err := commandLine(opts, "darwin")
	if err != nil {
		return "", err
	}
	c := kardianosConfig(exe, args)
	home := launchdHome()
	tf := func(v bool) string {
		if v {
			return "true"
		}
		return "false"
	}
	data := map[string]any{
		"Name":              c.Name,
		"Path":              exe,
		"Arguments":         c.Arguments,
		"ChRoot":            c.ChRoot,
		"UserName":          c.UserName,
		"WorkingDirectory":  c.WorkingDirectory,
		"KeepAlive":         tf(c.Option["KeepAlive"] == true),
		"RunAtLoad":         tf(c.Option["RunAtLoad"] == true),
		"SessionCreate":     "false",
		"StandardOutPath":   home + "/" + c.Name + ".out.log",
		"StandardErrorPath": home + "/" + c.Name + ".err.log",
		"EnvVars":           []string(nil),
	}
	escaper := strings.NewReplacer(`&`, "&amp;", `'`, "&#39;", `<`, "&lt;", `>`, "&gt;", `"`, "&#34;")
	out, err := renderTemplate(launchdTemplate, data, map[string]func(string) string{
		"html": escaper.Replace,
	})
	if err != nil {
		return "", fmt.Errorf("service: render the LaunchAgent: %w", err)
	}
	return out, nil
}

// launchdHome is the home directory as kardianos finds it on macOS: the account's, then $HOME.
func launchdHome() string {
	if u, err := user.Current(); err == nil {
		return u.HomeDir
	}
	return os.Getenv("HOME")
}
