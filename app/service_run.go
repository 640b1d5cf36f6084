package app

import (
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/kardianos/service"
)

// serviceStopWait bounds how long a Windows service stop waits for the running job to finish and
// its result to be delivered; the service manager gives a service about 20 s.
const serviceStopWait = 18 * time.Second

// svcRunner is the service.Interface of `run` under the Windows service manager: Start runs the
// worker on a goroutine (kardianos wants Start to return at once), Stop drains it like a SIGTERM.
type svcRunner struct {
	start func()
	stop  func()
}

func (r *svcRunner) Start(service.Service) error { r.start(); return nil }
func (r *svcRunner) Stop(service.Service) error  { r.stop(); return nil }

// underServiceManager reports whether `run` was started by the Windows service manager, which
// must be answered through kardianos' Run or it stops the service after about 30 s. systemd and
// launchd just start the command, so elsewhere `run` runs as it is.
func underServiceManager() bool {
	return runtime.GOOS == "windows" && !service.Interactive()
}

// runAsWindowsService runs the worker as the body of a Windows service.
func (c *CLI) runAsWindowsService(path string, cfg Config, logger *slog.Logger, sink *logSink) int {
	sigs := make(chan os.Signal, 2)
	code := make(chan int, 1)
	inner := *c
	inner.Signals = sigs
	prog := &svcRunner{
		start: func() { go func() { code <- inner.serveWorker(path, cfg, logger, sink, nil) }() },
		stop: func() {
			select {
			case sigs <- os.Interrupt: // drain: finish the job, deliver its result
			default:
			}
		},
	}
	exe, args, err := svcCommand(ServiceOptions{ConfigPath: path}, runtime.GOOS)
	if err != nil {
		c.errorf("service: %v", err)
		return ExitError
	}
	s, err := service.New(prog, svcConfig(exe, args))
	if err != nil {
		c.errorf("service: %v", err)
		return ExitError
	}
	if err := s.Run(); err != nil {
		c.errorf("service: %v", err)
		return ExitError
	}
	select {
	case rc := <-code:
		return rc
	case <-time.After(serviceStopWait):
		sigs <- os.Interrupt // the second signal stops at once
		select {
		case rc := <-code:
			return rc
		case <-time.After(2 * time.Second):
			logger.Warn("stopped before the worker finished; undelivered results are sent at the next start", "source", "worker")
			return ExitOK
		}
	}
}
