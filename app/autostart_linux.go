// autostart_linux.go: "Start with this computer" on Linux is a desktop autostart entry
// (~/.config/autostart/studio-worker.desktop, the XDG Autostart specification) that runs the
// window hidden in the tray (`--tray`) when the user's desktop session starts — what every
// desktop honours, with or without a systemd user bus. The systemd user unit of
// `studio-worker service install` runs the worker headless; it is only read here, to say it is
// there too.

package app

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"studioworker/app/service"
	"studioworker/internal/durable"
)

// autostartEntryName is the entry's file name in the autostart folder.
const autostartEntryName = "studio-worker.desktop"

// xdgAutostart is the Linux autostarter.
type xdgAutostart struct {
	opts service.Options
	unit autostarter // the systemd user unit, read for Status only
}

func newAutostarter(configPath string) autostarter {
	opts := service.Options{ConfigPath: configPath}
	return xdgAutostart{opts: opts, unit: userService{opts: opts}}
}

// entryPath is $XDG_CONFIG_HOME/autostart/studio-worker.desktop, ~/.config by default.
func (x xdgAutostart) entryPath() (string, error) {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" || !filepath.IsAbs(dir) { // the spec says a relative value is to be ignored
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("autostart: %w", err)
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "autostart", autostartEntryName), nil
}

// command is the entry's Exec line: this program, --tray, and --config unless it is the default
// file (the desktop starts the entry without $STUDIO_WORKER_CONFIG).
func (x xdgAutostart) command() (string, error) {
	if x.opts.ConfigPath == "" {
		return "", errors.New("autostart: the config file path is empty")
	}
	cfg, err := filepath.Abs(x.opts.ConfigPath)
	if err != nil {
		return "", fmt.Errorf("autostart: config path: %w", err)
	}
	exe := x.opts.Executable
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return "", fmt.Errorf("autostart: find this program: %w", err)
		}
	}
	if exe, err = filepath.Abs(exe); err != nil {
		return "", fmt.Errorf("autostart: program path: %w", err)
	}
	args := []string{exe, "--tray"}
	if def, err := defaultConfigPath(); err != nil || filepath.Clean(def) != filepath.Clean(cfg) {
		args = append(args, "--config", cfg)
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		if quoted[i], err = quoteExecArg(a); err != nil {
			return "", err
		}
	}
	return strings.Join(quoted, " "), nil
}

// quoteExecArg writes one argument as the Desktop Entry specification's Exec key reads it: in
// double quotes, with ", `, $ and \ escaped by a backslash, % doubled; then, since Exec is a
// string value whose own escapes are read first, every backslash doubled again.
func quoteExecArg(a string) (string, error) {
	if strings.ContainsAny(a, "\n\r\x00") {
		return "", fmt.Errorf("autostart: the path %q cannot be written into a desktop entry (a line break or a NUL): move the program or the config file", a)
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range a {
		switch r {
		case '"', '`', '$', '\\':
			b.WriteByte('\\')
		case '%':
			b.WriteByte('%')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return strings.ReplaceAll(b.String(), `\`, `\\`), nil
}

// entry is the desktop entry's text.
func entry(exec string) string {
	return "[Desktop Entry]\n" +
		"Type=Application\n" +
		"Name=Studio Worker\n" +
		"Comment=Lends this computer's GPU to a Studio; starts in the tray\n" +
		"Exec=" + exec + "\n" +
		"Terminal=false\n" +
		"X-GNOME-Autostart-enabled=true\n"
}

func (x xdgAutostart) where(path, exec string) string {
	return "desktop autostart entry " + service.Tilde(path) + ", which runs " + exec
}

// Enable writes the entry, over an older one of ours (from before the program moved, say).
func (x xdgAutostart) Enable() (string, error) {
	path, err := x.entryPath()
	if err != nil {
		return "", err
	}
	exec, err := x.command()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("autostart: make the folder %s: %w", filepath.Dir(path), err)
	}
	if err := durable.WriteFile(path, []byte(entry(exec)), 0o644); err != nil {
		return "", fmt.Errorf("autostart: write the %s: %w", x.where(path, exec), err)
	}
	out := "Starts when you log in: " + x.where(path, exec)
	if st, err := x.unit.Status(); err == nil && st.On {
		out += "\nA systemd user unit is installed too: it runs the worker without the tray or the window. " +
			`Remove it with "studio-worker service uninstall" if starting at login is enough.`
	}
	return out, nil
}

// Disable removes the entry; one that is not there is not an error.
func (x xdgAutostart) Disable() (string, error) {
	path, err := x.entryPath()
	if err != nil {
		return "", err
	}
	switch err := os.Remove(path); {
	case errors.Is(err, os.ErrNotExist):
		return "Not set: nothing to remove", nil
	case err != nil:
		return "", fmt.Errorf("autostart: remove the desktop autostart entry %s: %w", path, err)
	}
	return "Removed the desktop autostart entry " + service.Tilde(path), nil
}

// Status reads the entry, and the systemd user unit for the headless alternative.
func (x xdgAutostart) Status() (AutoStart, error) {
	path, err := x.entryPath()
	if err != nil {
		return AutoStart{}, err
	}
	var st AutoStart
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		st.Text = "Off: the worker starts only when you open it"
	case err != nil:
		return AutoStart{}, fmt.Errorf("autostart: read the desktop autostart entry %s: %w", path, err)
	case entryTurnedOff(string(data)):
		st.Text = "Off: the desktop autostart entry is there but turned off in your desktop's startup settings"
		st.Where = "desktop autostart entry " + service.Tilde(path)
	default:
		st.On = true
		st.Text = "Starts when you log in, in the tray (desktop autostart entry)"
		st.Where = x.where(path, execLine(string(data)))
	}
	if u, err := x.unit.Status(); err == nil && u.On {
		st.Service = true
		st.Text += "\nA systemd user unit also starts the worker, without the tray or the window: " + u.Text
	}
	return st, nil
}

// entryTurnedOff: the desktop's startup settings turn an entry off by Hidden=true or
// X-GNOME-Autostart-enabled=false rather than deleting it.
func entryTurnedOff(text string) bool {
	for _, line := range strings.Split(text, "\n") {
		switch strings.TrimSpace(line) {
		case "Hidden=true", "X-GNOME-Autostart-enabled=false":
			return true
		}
	}
	return false
}

// execLine is the entry's Exec value as written.
func execLine(text string) string {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Exec="); ok {
			return v
		}
	}
	return "(no Exec line)"
}
