// cli_service.go: `studio-worker service install|uninstall|start|stop|status`, and `run` as the
// body of a Windows service. Installing, controlling and answering the service manager are
// app/service's; this file only turns flags into its calls and its answers into exit codes.

package app

import (
	"fmt"
	"log/slog"
	"os"

	"studioworker/app/service"
)

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
	out, err := service.Control(service.Options{ConfigPath: path}, action)
	if err != nil {
		c.errorf("service %s: %v", action, err)
		return ExitError
	}
	fmt.Fprintln(c.Stdout, out)
	return ExitOK
}

// runAsWindowsService runs the worker as the body of the Windows service: a stop or a shutdown
// drains it as a first Ctrl+C does (the running job finishes, its result is delivered), and a
// drain that outlasts the service's wait stops it at once; undelivered results wait in the outbox
// for the next start.
func (c *CLI) runAsWindowsService(path string, cfg Config, logger *slog.Logger, sink *logSink) int {
	sigs := make(chan os.Signal, 2)
	done := make(chan int, 1)
	inner := *c
	inner.Signals = sigs
	body := service.Body{
		Start: func() { go func() { done <- inner.serveWorker(path, cfg, logger, sink, nil, GUIOptions{}) }() },
		Drain: func() { sigs <- os.Interrupt },
		Stop: func() {
			logger.Warn("the service stop outlasted its wait: stopping now; undelivered results are sent at the next start", "source", "worker")
			sigs <- os.Interrupt
		},
		Done: done,
	}
	code, err := service.Serve(body)
	if err != nil {
		c.errorf("service: %v", err)
		return ExitError
	}
	return code
}
