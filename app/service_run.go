// When `run` is the body of a Windows service: deciding that it is, and running the worker so that
// a stop from the service manager drains it like a first Ctrl+C. Answering the service manager
// itself is service_run_windows.go's; nothing here knows the Windows API.
package app

import (
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/kardianos/service"
)

// serviceStopWait bounds how long a Windows service stop waits for the running job to finish and
// its result to be delivered; the service manager is told to expect that long.
const serviceStopWait = 18 * time.Second

// underServiceManager reports whether this process was started by the Windows service manager
// (kardianos' session-0 check). systemd and launchd just start the command, so elsewhere it is
// always false.
func underServiceManager() bool {
	return runtime.GOOS == "windows" && !service.Interactive()
}

// runsAsService reports whether `run` must answer the Windows service manager, which otherwise
// stops the service after about 30 s: the service we install says so with --windows-service (the
// session-0 check does not hold under Wine, whose services run in the user's session), and one
// installed by other means is known by the check.
func runsAsService(flagged bool) bool {
	return runtime.GOOS == "windows" && flagged || underServiceManager()
}

// runAsWindowsService runs the worker as the body of the Windows service: a stop or a shutdown
// drains it (the running job finishes, its result is delivered), and a drain that outlasts
// serviceStopWait stops it at once; undelivered results wait in the outbox for the next start.
func (c *CLI) runAsWindowsService(path string, cfg Config, logger *slog.Logger, sink *logSink) int {
	sigs := make(chan os.Signal, 2)
	done := make(chan int, 1)
	inner := *c
	inner.Signals = sigs
	body := serviceBody{
		start: func() { go func() { done <- inner.serveWorker(path, cfg, logger, sink, nil) }() },
		drain: func() { sigs <- os.Interrupt },
		stop: func() {
			logger.Warn("the service stop outlasted its wait: stopping now; undelivered results are sent at the next start", "source", "worker")
			sigs <- os.Interrupt
		},
		done: done,
	}
	code, err := serveService(svcName, body)
	if err != nil {
		c.errorf("service: %v", err)
		return ExitError
	}
	return code
}

// serviceBody is the worker as the service manager sees it: start it, ask it to drain, make it
// stop now, and its exit code once it has ended.
type serviceBody struct {
	start, drain, stop func()
	done               <-chan int
}
