//go:build !windows

// autostart_unix.go: the user service of app/service (a systemd user unit, a LaunchAgent) as an
// autostarter. On macOS it is "Start with this computer" (autostart_darwin.go): the LaunchAgent
// runs in the user's session at login. On Linux the checkbox writes a desktop autostart entry
// instead (autostart_linux.go), and the unit is only read, as the headless alternative.

package app

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"studioworker/app/service"
)

// userService is the autostarter of Linux and macOS: service.Control's install and uninstall,
// with the unit file on disk as the record of whether it is set up.
type userService struct{ opts service.Options }

func (u userService) Enable() (string, error)  { return service.Control(u.opts, "install") }
func (u userService) Disable() (string, error) { return service.Control(u.opts, "uninstall") }

// Status looks for the unit file first, so that a machine without it says "off" without asking
// systemd (which may not be reachable, in a container or over ssh).
func (u userService) Status() (AutoStart, error) {
	file, what, err := service.UnitFile(runtime.GOOS)
	if err != nil {
		return AutoStart{}, err
	}
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
		return AutoStart{Text: "Off: the worker starts only when you open it"}, nil
	} else if err != nil {
		return AutoStart{}, fmt.Errorf("autostart: look for the %s: %w", what, err)
	}
	st := AutoStart{On: true, Text: "Starts when you log in (" + what + ")", Where: what + " " + service.Tilde(file)}
	words, err := service.Control(u.opts, "status")
	switch {
	case err != nil:
		// The file says it is set up; say so, and why its state is unknown.
		st.Text += "; its state is unknown: " + err.Error()
	case words == "Running":
		st.Text += ", running now"
	case strings.HasPrefix(words, "Stopped"):
		st.Text += ", not running now"
	default:
		st.Text += ": " + words
	}
	return st, nil
}
