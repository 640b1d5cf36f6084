// cli_autostart.go: `studio-worker autostart on|off|status`, the Settings checkbox from a
// terminal. What each OS does to start the worker at logon is autostart_*.go's; this file only
// reads the action and prints the OS's answer.

package app

import "fmt"

// cmdAutostart is `studio-worker autostart on|off|status`: what the Settings checkbox does, from
// a terminal. It works on the OS directly, in the caller's own session, never through a running
// worker: a worker that runs as a Windows service belongs to another account, whose logon entries
// are not this user's.
func (c *CLI) cmdAutostart(args []string) int {
	if len(args) == 0 {
		c.errorf("autostart needs an action: on, off or status")
		return ExitUsage
	}
	action := args[0]
	switch action {
	case "on", "off", "status":
	default:
		c.errorf("unknown autostart action %q: use on, off or status", action)
		return ExitUsage
	}
	path, ok := c.parse("autostart", args[1:], nil)
	if !ok {
		return ExitUsage
	}
	as := newAutostarter(path)
	var out string
	var err error
	switch action {
	case "on":
		out, err = as.Enable()
	case "off":
		out, err = as.Disable()
	default:
		var st AutoStart
		st, err = as.Status()
		out = st.Text
		if st.Where != "" {
			out += "\n" + st.Where
		}
	}
	if err != nil {
		c.errorf("autostart %s: %v", action, err)
		return ExitError
	}
	fmt.Fprintln(c.Stdout, out)
	return ExitOK
}
