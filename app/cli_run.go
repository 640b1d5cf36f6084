// cli_run.go: the commands that serve a worker in this process — `run` (headless, and the body of
// a Windows service) and the window with no command — from the control socket and the signals
// that drain it to the exit code it ends with. What a worker does is worker.go's; how the service
// manager is answered is app/service's; this file only starts, stops and reports.

package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"studioworker/app/service"
	"studioworker/session"
)

// drainOutboxWait bounds how long a drain waits, once the jobs have finished, for their results
// to be delivered before it stops anyway (they are sent at the next start).
const drainOutboxWait = 30 * time.Second

func (c *CLI) cmdRun(args []string) int {
	var verbose, asService *bool
	path, ok := c.parse("run", args, func(fs *flag.FlagSet) {
		verbose = fs.Bool("verbose", false, "log debug messages to stderr")
		asService = fs.Bool(service.WindowsFlag, false, "started by the Windows service manager (the service we install passes it)")
	})
	if !ok {
		return ExitUsage
	}
	cfg, code := c.loadForRun(path)
	if code != ExitOK {
		return code
	}
	if !cfg.Registered() {
		c.errorf("%v", session.ErrRegisterFirst)
		return ExitUsage
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger, sink, closeLog := c.setupLogging(level)
	defer closeLog()
	if service.RunsAsBody(*asService) {
		return c.runAsWindowsService(path, cfg, logger, sink)
	}
	return c.serveWorker(path, cfg, logger, sink, nil, GUIOptions{})
}

// serveWorker runs a worker with its control socket until it stops; gui, when set, runs the window
// on the main goroutine meanwhile (with gopt, its Quit set to stop the worker) and quitting it
// stops the worker.
func (c *CLI) serveWorker(path string, cfg Config, logger *slog.Logger, sink *logSink, gui GUIFunc, gopt GUIOptions) int {
	ln, token, err := ListenControl(path)
	if errors.Is(err, ErrAlreadyRunning) {
		c.errorf("%v: use `studio-worker status`", err)
		return ExitError
	}
	if err != nil {
		c.errorf("%v", err)
		return ExitError
	}
	w, err := NewWorker(Options{
		ConfigPath: path, Config: cfg, AgentVersion: c.Build.Version, Logger: logger,
		KeepRunning: gui != nil, Session: c.Session, LogFile: sink.path, DemoHub: c.DemoHub,
	})
	if err != nil {
		ln.Close()
		c.errorf("%v", err)
		return ExitUsage
	}
	sink.set(w)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var wg sync.WaitGroup
	defer wg.Wait()
	graceful := make(chan struct{}, 1) // the window's "quit after this job": a SIGTERM from within
	cs := NewControlServer(w, w, token, logger)
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = cs.Serve(ctx, ln)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.handleSignals(ctx, w, cancel, logger, graceful)
	}()
	logger.Info("Studio Worker started", "source", "worker", "version", c.Build.Version, "config", path, "log_file", sink.path, "server", hostOf(cfg.ServerURL))

	runErr := make(chan error, 1)
	go func() { runErr <- w.Serve(ctx) }()
	if gui != nil {
		gopt.Quit = cancel
		gopt.QuitAfterJobs = func() {
			select {
			case graceful <- struct{}{}:
			default: // asked already
			}
		}
		gopt.Stopped = ctx.Done()
		guiErr := gui(w, w, gopt)
		cancel()
		if err := <-runErr; err != nil {
			logger.Error("worker stopped", "err", err)
		}
		if guiErr != nil {
			c.errorf("window: %v", guiErr)
			return ExitError
		}
		return ExitOK
	}
	err = <-runErr
	cancel()
	return c.exitCode(err)
}

func (c *CLI) exitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, session.ErrAuthFailed):
		c.errorf("%v", err)
		return ExitAuthFailed
	case errors.Is(err, session.ErrSuperseded):
		c.errorf("this worker id is connected elsewhere: %v", err)
		return ExitError
	case errors.Is(err, session.ErrInsecureURL), errors.Is(err, session.ErrRegisterFirst):
		c.errorf("%v", err)
		return ExitUsage
	}
	c.errorf("%v", err)
	return ExitError
}

// handleSignals: the first SIGINT/SIGTERM, or a value on graceful (the window's "quit after this
// job"), drains (no new offers, running jobs finish, results are delivered) and then stops; a
// signal after that stops at once, cancelling running jobs.
func (c *CLI) handleSignals(ctx context.Context, w *Worker, stop context.CancelFunc, logger *slog.Logger, graceful <-chan struct{}) {
	sigs := c.Signals
	if sigs == nil {
		ch := make(chan os.Signal, 2)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(ch)
		sigs = ch
	}
	select {
	case <-ctx.Done():
		return
	case <-sigs:
		logger.Info("stopping: finishing the running jobs first (signal again to stop at once)", "source", "worker")
	case <-graceful:
		logger.Info("quitting after the running jobs, as you asked: no new offers meanwhile", "source", "worker")
	}
	w.Shutdown()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var jobsDone time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-sigs:
			logger.Warn("stopping now: running jobs are cancelled", "source", "worker")
			stop()
			return
		case <-tick.C:
			running, outbox := w.pendingWork()
			if running > 0 {
				continue
			}
			if jobsDone.IsZero() {
				jobsDone = time.Now()
			}
			if outbox == 0 || time.Since(jobsDone) > drainOutboxWait {
				if outbox > 0 {
					logger.Warn("stopping with undelivered results; they are sent at the next start", "source", "worker", "outbox", outbox)
				}
				stop()
				return
			}
		}
	}
}

func (c *CLI) cmdGUI(args []string) int {
	var tray *bool
	path, ok := c.parse("", args, func(fs *flag.FlagSet) {
		tray = fs.Bool("tray", false, "start hidden in the tray (what \"start with this computer\" runs)")
	})
	if !ok {
		return ExitUsage
	}
	if c.GUI == nil {
		c.errorf("this build has no window: use `studio-worker run`")
		return ExitUsage
	}
	if !haveDisplay() {
		// Without this the window's toolkit panics deep inside GLFW.
		c.errorf("no display: the window needs a graphical session (DISPLAY or WAYLAND_DISPLAY). Use `studio-worker run` for a headless worker, or --help for the commands")
		return ExitUsage
	}
	// One window per user and config folder: a second launch shows the first window and leaves.
	gopt := GUIOptions{StartHidden: *tray}
	lock, err := ClaimWindow(path)
	switch {
	case err == ErrWindowOpen:
		if !*tray {
			fmt.Fprintln(c.Stdout, "Studio Worker is already open: its window is shown.")
		}
		return ExitOK
	case errors.Is(err, ErrWindowOpen):
		c.errorf("%v. Look for Studio Worker in the tray, or quit it there and start it again", err)
		return ExitError
	case err != nil:
		// The window still opens; only a second launch would not find it.
		c.errorf("%v (a second launch will open a second window)", err)
	default:
		defer lock.Close()
		gopt.Raise = lock.Raise()
	}
	// A worker already runs (a service, `run`): attach to it instead of a second session.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	cl, err := DialControl(ctx, path)
	if err == nil {
		err = cl.Follow(context.Background())
	}
	cancel()
	if err == nil {
		defer cl.Close()
		if err := c.GUI(cl, cl, gopt); err != nil {
			c.errorf("window: %v", err)
			return ExitError
		}
		return ExitOK
	}
	cfg, err := LoadConfig(path)
	if errors.Is(err, ErrNoConfig) {
		cfg = DefaultConfig() // first run: the window shows the first-run page
	} else if err != nil {
		c.errorf("%v", err)
		return ExitUsage
	}
	logger, sink, closeLog := c.setupLogging(slog.LevelInfo)
	defer closeLog()
	return c.serveWorker(path, cfg, logger, sink, c.GUI, gopt)
}
