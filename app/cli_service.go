// cli_service.go: `studio-worker service install|uninstall|start|stop|status`, and `run` as the
// body of a Windows service. Installing, controlling and answering the service manager are
// app/service's; this file only turns flags into its calls and its answers into exit codes.

package app

import "fmt"

func (c *CLI) cmdService(args []string) int {
	if len(args) == 0 {
		c.errorf("service needs an action: install, uninstall, start, stop or status")
		return ExitUsage
	}
	action := args[0]
	switch action {
	case "install", "uninstall", "start", "stop", "status":
	default:
		c.errorf("unknown service action %q: use install, uninstall, start, stop or status", action)
		return ExitUsage
	}
	path, ok := c.parse("service", args[1:], nil)
	if !ok {
		return ExitUsage
	}
	out, err := ServiceControl(ServiceOptions{ConfigPath: path}, action)
	if err != nil {
		c.errorf("service %s: %v", action, err)
		return ExitError
	}
	fmt.Fprintln(c.Stdout, out)
	return ExitOK
}
