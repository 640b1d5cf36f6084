// autostart.go: "Start with this computer" for the window and the tray, behind one interface that
// each OS implements in its own file. The `studio-worker autostart` command is cli_autostart.go's.

package app

// The window and the tray must come back in the user's own session after logon. A Windows service
// cannot do that (it runs in session 0: no tray, no window), so on Windows the checkbox writes a
// per-user logon entry (autostart_windows.go), and `studio-worker service` keeps the Windows
// service for headless machines. On Linux and macOS the user unit and the LaunchAgent already run
// in the user's session at login, so the checkbox installs them (autostart_unix.go).

// AutoStart is what this computer has set up to start the worker, read from the OS each time and
// never kept anywhere else, so the window cannot show something the OS does not hold.
type AutoStart struct {
	On      bool   `json:"on"`                // the user's session starts the worker at logon: what the checkbox shows
	Service bool   `json:"service,omitempty"` // a service starts it headless, without the tray: a Windows service (session 0), a systemd user unit on Linux
	Text    string `json:"text,omitempty"`    // what is in use, in words, for the window
	Where   string `json:"where,omitempty"`   // the OS's own record: the logon entry and its command, the unit file
}

// Starts reports whether anything starts the worker with this computer (the hub's auto_start).
func (a AutoStart) Starts() bool { return a.On || a.Service }

// autostarter is how this OS brings the worker back at logon. Enable and Disable say what they
// did in a sentence that names the mechanism; Status reads what the OS holds.
type autostarter interface {
	Enable() (string, error)
	Disable() (string, error)
	Status() (AutoStart, error)
}
