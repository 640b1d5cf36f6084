//go:build windows

// autostart_windows.go: "Start with this computer" on Windows is a per-user logon entry that
// brings the window and the tray back at logon; a Windows service cannot (session 0 has no tray).
package app

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/windows/registry"

	"studioworker/app/service"
)

const (
	// autostartRunKey is the per-user list Explorer starts at logon, in the user's own session;
	// writing it needs no administrator, unlike a service or HKLM.
	autostartRunKey = `Software\Microsoft\Windows\CurrentVersion\Run`
	// autostartValue names this program's entry there (what Task Manager's Startup tab shows).
	autostartValue = "Studio Worker"
)

// logonEntry is the Windows autostarter: the value autostartValue under HKCU's Run key holding
// the quoted path of this program, and --config when the config file is not the default one.
type logonEntry struct {
	opts  service.Options
	value string // the value's name; tests use their own, to leave a real entry alone
}

func newAutostarter(configPath string) autostarter {
	return logonEntry{opts: service.Options{ConfigPath: configPath}, value: autostartValue}
}

func (e logonEntry) where(command string) string {
	return `logon entry HKCU\` + autostartRunKey + `\` + e.value + ", which runs " + command
}

// command is what the entry runs: the window, started hidden in the tray, with this config file. --config is left out for the default file and written out otherwise, because
// Explorer starts the entry without $STUDIO_WORKER_CONFIG or any flag given to this process.
func (e logonEntry) command() (string, error) {
	if e.opts.ConfigPath == "" {
		return "", errors.New("autostart: the config file path is empty")
	}
	cfg, err := filepath.Abs(e.opts.ConfigPath)
	if err != nil {
		return "", fmt.Errorf("autostart: config path: %w", err)
	}
	exe := e.opts.Executable
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return "", fmt.Errorf("autostart: find this program: %w", err)
		}
	}
	if exe, err = filepath.Abs(exe); err != nil {
		return "", fmt.Errorf("autostart: program path: %w", err)
	}
	cmd, err := quoteWindowsPath(exe)
	if err != nil {
		return "", err
	}
	cmd += " --tray" // at logon, in the tray: the creator did not ask for the window just now
	if def, err := defaultConfigPath(); err == nil && strings.EqualFold(filepath.Clean(def), filepath.Clean(cfg)) {
		return cmd, nil
	}
	qc, err := quoteWindowsPath(cfg)
	if err != nil {
		return "", err
	}
	return cmd + " --config " + qc, nil
}

// quoteWindowsPath puts a path between double quotes, as Windows splits a command line: spaces
// are kept, and only a quote or a backslash right before the closing quote would change the path.
func quoteWindowsPath(p string) (string, error) {
	if strings.ContainsAny(p, "\"\x00") || strings.HasSuffix(p, `\`) {
		return "", fmt.Errorf("autostart: the path %q cannot be written into a logon entry (a quote, a NUL or a trailing backslash): move the program or the config file", p)
	}
	return `"` + p + `"`, nil
}

// Enable writes the entry (over an older one of ours, e.g. from before the program moved).
func (e logonEntry) Enable() (string, error) {
	if service.UnderManager() {
		return "", errors.New("autostart: this worker runs as a Windows service, under another account than yours, so a logon entry written here would not be yours: " +
			`run "studio-worker autostart on" in your own session, or remove the service with "studio-worker service uninstall" and open the window yourself`)
	}
	cmd, err := e.command()
	if err != nil {
		return "", err
	}
	k, _, err := registry.CreateKey(registry.CURRENT_USER, autostartRunKey, registry.QUERY_VALUE|registry.SET_VALUE)
	if err != nil {
		return "", fmt.Errorf("autostart: open HKCU\\%s: %w (check that your account may change its own startup programs)", autostartRunKey, err)
	}
	defer k.Close()
	if err := k.SetStringValue(e.value, cmd); err != nil {
		return "", fmt.Errorf("autostart: write the %s: %w", e.where(cmd), err)
	}
	out := "Starts at logon: " + e.where(cmd)
	if installed, _, err := service.WindowsState(e.opts); err == nil && installed {
		out += "\nA Windows service is installed too: it runs the worker without the tray or the window. " +
			`Remove it with "studio-worker service uninstall" (as administrator) if starting at logon is enough.`
	}
	return out, nil
}

// Disable removes the entry; one that is not there is not an error.
func (e logonEntry) Disable() (string, error) {
	if service.UnderManager() {
		return "", errors.New(`autostart: this worker runs as a Windows service, under another account than yours: run "studio-worker autostart off" in your own session`)
	}
	k, err := registry.OpenKey(registry.CURRENT_USER, autostartRunKey, registry.SET_VALUE)
	if errors.Is(err, registry.ErrNotExist) {
		return "Not set: nothing to remove", nil
	}
	if err != nil {
		return "", fmt.Errorf("autostart: open HKCU\\%s: %w", autostartRunKey, err)
	}
	defer k.Close()
	switch err := k.DeleteValue(e.value); {
	case errors.Is(err, registry.ErrNotExist):
		return "Not set: nothing to remove", nil
	case err != nil:
		return "", fmt.Errorf("autostart: remove the logon entry HKCU\\%s\\%s: %w", autostartRunKey, e.value, err)
	}
	return `Removed the logon entry HKCU\` + autostartRunKey + `\` + e.value, nil
}

// Status reads the entry and asks for a Windows service, so the window says which one is in use.
func (e logonEntry) Status() (AutoStart, error) {
	if service.UnderManager() {
		// A window attached to this worker asks it, but the HKCU here is the service account's,
		// not the user's: say so rather than show the user's entry as missing.
		return AutoStart{Service: true, Text: "Installed as a Windows service: runs without the tray or this window (running now)\n" +
			`This window is attached to the service, which cannot see your own logon entry: "studio-worker autostart status" shows it`}, nil
	}
	have, err := e.read()
	if err != nil {
		return AutoStart{}, err
	}
	var st AutoStart
	var lines []string
	if have != "" {
		st.On, st.Where = true, e.where(have)
		line := "Starts at logon (Windows logon entry)"
		if want, err := e.command(); err == nil && have != want {
			line += ", but it starts " + have + ": turn this off and on again to start this copy with this config file"
		}
		lines = append(lines, line)
	}
	installed, running, err := service.WindowsState(e.opts)
	switch {
	case err != nil:
		lines = append(lines, "Could not ask the service manager whether a Windows service is installed: "+err.Error())
	case installed:
		st.Service = true
		now := "stopped now"
		if running {
			now = "running now"
		}
		lines = append(lines, "Installed as a Windows service: runs without the tray or this window ("+now+")")
	}
	if len(lines) == 0 {
		lines = append(lines, "Off: the worker starts only when you open it")
	}
	st.Text = strings.Join(lines, "\n")
	return st, nil
}

// read returns the entry's command, "" when there is none.
func (e logonEntry) read() (string, error) {
	k, err := registry.OpenKey(registry.CURRENT_USER, autostartRunKey, registry.QUERY_VALUE)
	if errors.Is(err, registry.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("autostart: open HKCU\\%s: %w", autostartRunKey, err)
	}
	defer k.Close()
	v, _, err := k.GetStringValue(e.value)
	if errors.Is(err, registry.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("autostart: read the logon entry HKCU\\%s\\%s: %w", autostartRunKey, e.value, err)
	}
	return v, nil
}
