package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"studioworker/protocol"
	"studioworker/session"
)

// Exit codes of studio-worker (PROTOCOL.md).
const (
	ExitOK          = 0
	ExitError       = 1
	ExitUsage       = 2
	ExitAuthFailed  = 3
	drainOutboxWait = 30 * time.Second
)

// BuildInfo says which build this is.
type BuildInfo struct {
	Version, Commit string
}

// GUIFunc opens the window and the tray on a Source and a Controller and blocks until the user
// quits. main.go passes ui.Run; app cannot import ui.
type GUIFunc func(src Source, ctl Controller, quit func()) error

// CLI runs the studio-worker subcommands.
type CLI struct {
	Stdout, Stderr io.Writer
	Build          BuildInfo
	GUI            GUIFunc
	// Session tunes the worker's session (tests shorten timers).
	Session session.Config
	// Signals delivers shutdown requests; nil = SIGINT and SIGTERM.
	Signals <-chan os.Signal
}

func (c *CLI) errorf(format string, args ...any) {
	fmt.Fprintf(c.Stderr, "studio-worker: "+format+"\n", args...)
}

// parse parses a subcommand's flags (--config and those that extra adds) and resolves the config
// file's path; false means the usage error was already printed.
func (c *CLI) parse(name string, args []string, extra func(*flag.FlagSet)) (string, bool) {
	fs := flag.NewFlagSet("studio-worker "+name, flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	cfgFlag := fs.String("config", "", "config file (default: $"+EnvConfig+" or the user config folder)")
	if extra != nil {
		extra(fs)
	}
	if fs.Parse(args) != nil {
		return "", false
	}
	path, err := ConfigPath(*cfgFlag)
	if err != nil {
		c.errorf("%v", err)
		return "", false
	}
	return path, true
}

// loadForRun loads the config for a command that needs one, mapping problems to exit codes.
func (c *CLI) loadForRun(path string) (Config, int) {
	cfg, err := LoadConfig(path)
	if errors.Is(err, ErrNoConfig) {
		c.errorf("no configuration at %s: register first (studio-worker register --server URL --pairing-code CODE)", path)
		return Config{}, ExitUsage
	}
	if err != nil {
		c.errorf("%v", err)
		return Config{}, ExitUsage
	}
	return cfg, ExitOK
}

// setupLogging logs to stderr and to the rotating log file; the returned sink, once set, also
// hands entries to the worker (the hub's log stream and the window's log view).
func (c *CLI) setupLogging(level slog.Level) (*slog.Logger, *logSink, func()) {
	sink := &logSink{}
	handlers := []slog.Handler{slog.NewTextHandler(c.Stderr, &slog.HandlerOptions{Level: level})}
	closeFn := func() {}
	var logPath string
	if dir, err := LogDir(); err == nil {
		if lf, err := OpenLogFile(filepath.Join(dir, "worker.log"), 0, 0); err == nil {
			handlers = append(handlers, slog.NewTextHandler(lf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			closeFn = func() { lf.Close() }
			logPath = lf.Path()
		} else {
			fmt.Fprintf(c.Stderr, "studio-worker: no log file: %v\n", err)
		}
	}
	handlers = append(handlers, sink)
	sink.path = logPath
	return slog.New(fanout(handlers)), sink, closeFn
}

// Run dispatches one subcommand (args without the program name); "" is the window.
func (c *CLI) Run(args []string) int {
	name := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	switch name {
	case "":
		return c.cmdGUI(args)
	case "run":
		return c.cmdRun(args)
	case "register":
		return c.cmdRegister(args)
	case "demo":
		return c.cmdDemo(args)
	case "service":
		return c.cmdService(args)
	case "autostart":
		return c.cmdAutostart(args)
	case "status":
		return c.cmdStatus(args)
	case "pause", "resume", "drain":
		return c.cmdControl(name, args)
	case "gpu":
		return c.cmdGPU(args)
	}
	c.errorf("unknown command %q (try --help)", name)
	return ExitUsage
}

func (c *CLI) cmdRun(args []string) int {
	var verbose, asService *bool
	path, ok := c.parse("run", args, func(fs *flag.FlagSet) {
		verbose = fs.Bool("verbose", false, "log debug messages to stderr")
		asService = fs.Bool(svcWindowsFlag, false, "started by the Windows service manager (the service we install passes it)")
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
	if runsAsService(*asService) {
		return c.runAsWindowsService(path, cfg, logger, sink)
	}
	return c.serveWorker(path, cfg, logger, sink, nil)
}

// serveWorker runs a worker with its control socket until it stops; gui, when set, runs the window
// on the main goroutine meanwhile and quitting it stops the worker.
func (c *CLI) serveWorker(path string, cfg Config, logger *slog.Logger, sink *logSink, gui GUIFunc) int {
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
		KeepRunning: gui != nil, Session: c.Session, LogFile: sink.path,
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
	cs := NewControlServer(w, w, token, logger)
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = cs.Serve(ctx, ln)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.handleSignals(ctx, w, cancel, logger)
	}()
	logger.Info("Studio Worker started", "source", "worker", "version", c.Build.Version, "config", path, "log_file", sink.path, "server", hostOf(cfg.ServerURL))

	runErr := make(chan error, 1)
	go func() { runErr <- w.Serve(ctx) }()
	if gui != nil {
		guiErr := gui(w, w, cancel)
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

// handleSignals: the first SIGINT/SIGTERM drains (no new offers, running jobs finish, results
// are delivered) and then stops; the second stops at once, cancelling running jobs.
func (c *CLI) handleSignals(ctx context.Context, w *Worker, stop context.CancelFunc, logger *slog.Logger) {
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
	}
	logger.Info("stopping: finishing the running jobs first (signal again to stop at once)", "source", "worker")
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
	path, ok := c.parse("", args, nil)
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
	// A worker already runs (a service, another window): attach to it instead of a second session.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	cl, err := DialControl(ctx, path)
	if err == nil {
		err = cl.Follow(context.Background())
	}
	cancel()
	if err == nil {
		defer cl.Close()
		if err := c.GUI(cl, cl, nil); err != nil {
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
	return c.serveWorker(path, cfg, logger, sink, c.GUI)
}

func (c *CLI) cmdRegister(args []string) int {
	var server, code, name *string
	var insecure *bool
	path, ok := c.parse("register", args, func(fs *flag.FlagSet) {
		server = fs.String("server", "", "the Studio hub's URL, e.g. https://studio.example.com")
		code = fs.String("pairing-code", "", "the pairing code from the Studio")
		name = fs.String("name", "", "a name for this worker (default: the computer's name)")
		insecure = fs.Bool("allow-insecure", false, "allow plain http:// to a host that is not this machine")
	})
	if !ok {
		return ExitUsage
	}
	if *server == "" || *code == "" {
		c.errorf("register needs --server URL and --pairing-code CODE")
		return ExitUsage
	}
	cfg, err := LoadConfig(path)
	if errors.Is(err, ErrNoConfig) {
		cfg = DefaultConfig()
	} else if err != nil {
		c.errorf("%v (fix or remove it; it was not changed)", err)
		return ExitUsage
	}
	if *insecure {
		cfg.AllowInsecure = true
	}
	if *name == "" {
		*name = cfg.Name
	}
	if *name == "" {
		*name, _ = os.Hostname()
	}
	if err := session.CheckServerURL(*server, cfg.AllowInsecure); err != nil {
		c.errorf("%v", err)
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := session.Register(ctx, nil, *server, cfg.AllowInsecure, *name, *code)
	if err != nil {
		c.errorf("register: %v", err)
		return ExitError
	}
	cfg.ServerURL, cfg.Name, cfg.WorkerID, cfg.AuthToken = *server, *name, resp.WorkerID, resp.AuthToken
	if err := SaveConfig(path, cfg); err != nil {
		c.errorf("%v", err)
		return ExitError
	}
	fmt.Fprintf(c.Stdout, "Registered %q as worker %s with %s.\nSaved to %s. Start it with `studio-worker` (window) or `studio-worker run`.\n", *name, resp.WorkerID, hostOf(*server), path)
	return ExitOK
}

func (c *CLI) cmdStatus(args []string) int {
	var asJSON *bool
	path, ok := c.parse("status", args, func(fs *flag.FlagSet) {
		asJSON = fs.Bool("json", false, "print the state as JSON")
	})
	if !ok {
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := DialControl(ctx, path)
	if err != nil {
		c.errorf("%v", err)
		if dir, derr := LogDir(); derr == nil {
			fmt.Fprintf(c.Stderr, "The log file is %s\n", filepath.Join(dir, "worker.log"))
		}
		return ExitError
	}
	defer cl.Close()
	st, err := cl.State(ctx)
	if err != nil {
		c.errorf("%v", err)
		return ExitError
	}
	if *asJSON {
		enc := json.NewEncoder(c.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
		return ExitOK
	}
	fmt.Fprint(c.Stdout, StatusText(st))
	return ExitOK
}

// StatusText is the state in words, for `studio-worker status`.
func StatusText(st State) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	conn := st.Conn.State
	switch st.Conn.State {
	case "connected":
		conn = "connected to " + st.Conn.Server
	case "reconnecting":
		conn = fmt.Sprintf("reconnecting to %s (attempt %d)", st.Conn.Server, st.Conn.Attempt)
	}
	if st.Conn.LastError != "" && st.Conn.State != "connected" {
		conn += ": " + st.Conn.LastError
	}
	fmt.Fprintf(tw, "Connection\t%s\n", conn)
	fmt.Fprintf(tw, "State\t%s — %s\n", st.Mode, st.ModeReason)
	fmt.Fprintf(tw, "Auto-accept\t%v\n", st.AutoAccept)
	fmt.Fprintf(tw, "Engine\t%s\n", st.Engine)
	if st.GPU.Problem != "" {
		fmt.Fprintf(tw, "GPU\t%s\n", st.GPU.Problem)
	}
	for _, g := range st.GPU.Cards {
		name := g.Name
		if st.GPU.Simulated {
			name += " (simulated)"
		}
		fmt.Fprintf(tw, "GPU %d\t%s · %.1f / %.1f GB\n", g.Index, name, float64(g.UsedMB)/1024, float64(g.TotalMB)/1024)
	}
	if line := vramStatusLine(st); line != "" {
		fmt.Fprintf(tw, "VRAM\t%s\n", line)
	}
	for _, j := range st.Running {
		fmt.Fprintf(tw, "Running\t%s · %s · %s · %.0f %%\n", j.Kind, j.Model, j.JobID, j.Fraction*100)
	}
	for _, o := range st.Offers {
		fmt.Fprintf(tw, "Offer\t%s · %s · %s (expires %s)\n", o.Kind, o.Model, o.JobID, o.ExpiresAt.Format(time.TimeOnly))
	}
	fmt.Fprintf(tw, "Jobs\t%d done, %d failed, %d cancelled\n", st.Counters.Done, st.Counters.Failed, st.Counters.Cancelled)
	fmt.Fprintf(tw, "Config\t%s\n", st.ConfigPath)
	fmt.Fprintf(tw, "Log file\t%s\n", st.LogFile)
	tw.Flush()
	return b.String()
}

func (c *CLI) cmdControl(action string, args []string) int {
	path, ok := c.parse(action, args, nil)
	if !ok {
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := DialControl(ctx, path)
	if err != nil {
		if action == "drain" {
			c.errorf("%v", err)
			return ExitError
		}
		// Nothing runs: remember the choice for the next start.
		cfg, lerr := LoadConfig(path)
		if lerr != nil {
			c.errorf("%v", err)
			return ExitError
		}
		cfg.Paused = action == "pause"
		if err := SaveConfig(path, cfg); err != nil {
			c.errorf("%v", err)
			return ExitError
		}
		fmt.Fprintf(c.Stdout, "No worker is running; it will start %s.\n", map[bool]string{true: "paused", false: "taking jobs"}[cfg.Paused])
		return ExitOK
	}
	defer cl.Close()
	switch action {
	case "pause":
		err = cl.Pause(ctx)
	case "resume":
		err = cl.Resume(ctx)
	case "drain":
		err = cl.Drain(ctx)
	}
	if err != nil {
		c.errorf("%s: %v", action, err)
		return ExitError
	}
	st, err := cl.State(ctx)
	if err == nil {
		fmt.Fprintf(c.Stdout, "%s — %s\n", st.Mode, st.ModeReason)
	}
	return ExitOK
}

func (c *CLI) cmdGPU(args []string) int {
	var asJSON *bool
	path, ok := c.parse("gpu", args, func(fs *flag.FlagSet) {
		asJSON = fs.Bool("json", false, "print JSON")
	})
	if !ok {
		return ExitUsage
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		cfg = DefaultConfig() // no config yet: the machine's own GPU is still worth showing
	}
	sampler := openGPU(cfg)
	defer sampler.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snap, err := sampler.Sample(ctx)
	if err != nil && len(snap.Devices) == 0 && snap.Problem == "" {
		c.errorf("gpu: %v", err)
		return ExitError
	}
	if *asJSON {
		enc := json.NewEncoder(c.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(snap)
		return ExitOK
	}
	fmt.Fprint(c.Stdout, snap.Text())
	return ExitOK
}

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

// logSink is the slog handler that feeds the worker: log entries for the hub and the window.
type logSink struct {
	mu    sync.Mutex
	w     *Worker
	path  string
	attrs []slog.Attr
}

func (s *logSink) set(w *Worker) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}

func (s *logSink) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	s.mu.Lock()
	w := s.w
	s.mu.Unlock()
	if w == nil {
		return nil
	}
	e := protocol.LogEntry{TS: r.Time.UTC(), Level: levelOf(r.Level), Source: "worker", Message: r.Message}
	var extra []string
	visit := func(a slog.Attr) bool {
		switch a.Key {
		case "source":
			e.Source = a.Value.String()
		case "job_id":
			e.JobID = a.Value.String()
		default:
			extra = append(extra, a.Key+"="+a.Value.String())
		}
		return true
	}
	for _, a := range s.attrs {
		visit(a)
	}
	r.Attrs(visit)
	if len(extra) > 0 {
		e.Message += " (" + strings.Join(extra, " ") + ")"
	}
	w.Log(e)
	return nil
}

func (s *logSink) WithAttrs(as []slog.Attr) slog.Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &logSinkView{parent: s, attrs: append(append([]slog.Attr{}, s.attrs...), as...)}
}

func (s *logSink) WithGroup(string) slog.Handler { return s }

// logSinkView is a logSink with attributes bound (logger.With), sharing the parent's worker.
type logSinkView struct {
	parent *logSink
	attrs  []slog.Attr
}

func (v *logSinkView) Enabled(ctx context.Context, l slog.Level) bool {
	return v.parent.Enabled(ctx, l)
}

func (v *logSinkView) Handle(ctx context.Context, r slog.Record) error {
	r2 := r.Clone()
	r2.AddAttrs(v.attrs...)
	return v.parent.Handle(ctx, r2)
}

func (v *logSinkView) WithAttrs(as []slog.Attr) slog.Handler {
	return &logSinkView{parent: v.parent, attrs: append(append([]slog.Attr{}, v.attrs...), as...)}
}

func (v *logSinkView) WithGroup(string) slog.Handler { return v }

func levelOf(l slog.Level) protocol.LogLevel {
	switch {
	case l >= slog.LevelError:
		return protocol.LevelError
	case l >= slog.LevelWarn:
		return protocol.LevelWarn
	case l >= slog.LevelInfo:
		return protocol.LevelInfo
	}
	return protocol.LevelDebug
}

// fanout sends every record to several handlers.
type fanout []slog.Handler

func (f fanout) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range f {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, h := range f {
		if h.Enabled(ctx, r.Level) {
			if err := h.Handle(ctx, r.Clone()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (f fanout) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(as)
	}
	return out
}

func (f fanout) WithGroup(name string) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(name)
	}
	return out
}
