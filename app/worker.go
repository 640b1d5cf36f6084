// worker.go is the composition root: the Worker type, how it is built, and its lifecycle (Serve,
// the session and the engine router it runs, restarts, shutdown). The job ledger (ledger.go,
// lease.go), the GPU watch (gpuwatch.go), the mode (mode.go), the session's Handler (handler.go)
// and the creator's commands (commands.go) each live in a file of their own.

package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"studioworker/engine"
	"studioworker/gpu"
	"studioworker/protocol"
	"studioworker/session"
)

// Options build a Worker.
type Options struct {
	ConfigPath   string
	Config       Config
	AgentVersion string
	Logger       *slog.Logger
	// Sampler overrides the GPU source; nil = the config's simulated GPU, else NVML (gpu.Open).
	Sampler gpu.Sampler
	// HTTPClient is used for the hub (registration, uploads) and the backends; nil = defaults.
	HTTPClient *http.Client
	// KeepRunning keeps Run going after the credentials are rejected or the worker id connects
	// elsewhere, waiting for Register or Reconnect (the window); false returns the error (`run`).
	KeepRunning bool
	// Session tunes the session (tests shorten timers); the connection fields are filled from Config.
	Session session.Config
	// SimulatedBaseMB is VRAM a simulated GPU shows in use by other programs (the demo).
	SimulatedBaseMB int64
	// LogFile is the path of the log file, shown in the State.
	LogFile string
	// Now is the clock; nil = time.Now.
	Now func() time.Time
	// DemoHub starts the hub the window's demo runs against (StartDemo); nil = no demo.
	DemoHub DemoHubStarter
	// autostart is "start with this computer"; nil = this OS's own (newAutostarter) for
	// ConfigPath. Tests give theirs.
	autostart autostarter
}

// Worker is the composition root of a running worker: it implements session.Handler (admission,
// running jobs on the engine router) and Controller, and owns the Observers.
type Worker struct {
	opts   Options
	log    *slog.Logger
	obs    *Observers
	router *engine.Router
	mon    *gpu.Monitor
	sim    *gpu.Simulated
	client *http.Client
	now    func() time.Time
	caps   capsCache

	mu            sync.Mutex
	cfg           Config
	sess          *session.Session
	restart       chan struct{} // signals Run to rebuild the session (register, settings)
	backendWake   chan struct{} // a GPU sample was taken: time to ask the backends of VRAM (backendvram.go)
	ledger                      // the jobs taken and the offers waiting (ledger.go), guarded by mu
	hist          *history      // what this worker did, across restarts (history.go)
	yielder       *gpu.Yielder
	yield         gpu.YieldState
	serveCtx      context.Context      // set by Serve; routers started later live under it
	routerStop    context.CancelFunc   // stops the current router's refresher
	lastMode      protocol.WorkerState // last published, to tell the session when it changes
	lastAccepting bool
	drainReq      bool // finish the running jobs, then pause (not persisted until it completes)
	shuttingDown  bool
	own           func(pid uint32) bool
	demo          *demoRun // the window's demo (firstrun_worker.go); nil = none
	autoStarts    bool     // something starts the worker with this computer (the hub's auto_start), as last read

	// autoRead is held from reading the OS to publishing it, so that a slow read (the first,
	// beside the connection) cannot publish after a newer one.
	autoRead sync.Mutex
	// publish is held by update from deriving the mode to publishing it, so that State changes
	// reach the window in the order they were derived: a job event racing a Pause cannot
	// publish the mode it saw after the Pause has published "paused". update is the State's
	// one writer: nothing else in the worker calls obs.Update.
	publish sync.Mutex
	// saving serialises config saves; each saves the config as it is then, so the newest wins.
	saving sync.Mutex
	// saved is the config file's content as this worker last wrote it (nil before the first
	// save), guarded by saving: a save that would write the same bytes writes nothing.
	saved []byte
}

// capsCache holds the capabilities the session reads before every heartbeat.
type capsCache struct {
	mu   sync.Mutex
	caps protocol.Capabilities
}

// NewWorker builds a worker from its config; nothing runs until Run.
func NewWorker(opts Options) (*Worker, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AgentVersion == "" {
		opts.AgentVersion = "dev"
	}
	client := opts.HTTPClient
	if client == nil {
		client = session.DefaultHTTPClient()
	}
	cfg := opts.Config
	router, err := engine.NewRouter(cfg.Engines, opts.Logger, client)
	if err != nil {
		return nil, fmt.Errorf("engines: %w", err)
	}
	w := &Worker{
		opts:        opts,
		log:         opts.Logger,
		router:      router,
		client:      client,
		now:         opts.Now,
		cfg:         cfg,
		restart:     make(chan struct{}, 1),
		backendWake: make(chan struct{}, 1),
		ledger:      newLedger(),
		own:         gpu.OwnPIDs(uint32(os.Getpid())),
	}
	if w.opts.autostart == nil && opts.ConfigPath != "" {
		w.opts.autostart = newAutostarter(opts.ConfigPath)
	}
	w.yielder = gpu.NewYielder(yieldPolicy(cfg.GPU.Yield))
	sampler := opts.Sampler
	if sampler == nil {
		sampler = openGPU(cfg)
		w.sim, _ = sampler.(*gpu.Simulated)
	} else if sim, ok := sampler.(*gpu.Simulated); ok {
		w.sim = sim
	}
	interval := time.Duration(cfg.GPU.SampleIntervalS * float64(time.Second))
	if interval <= 0 {
		interval = gpu.DefaultInterval
	}
	w.mon = gpu.NewMonitor(sampler, interval, opts.Logger.With("source", "gpu"), gpu.MonitorOptions{OnSnapshot: w.onSnapshot})
	histPath := ""
	if opts.ConfigPath != "" {
		histPath = filepath.Join(filepath.Dir(opts.ConfigPath), historyFile)
	}
	var recent []RecentJob
	w.hist, recent = loadHistory(histPath, opts.Logger)
	st := w.initialState()
	st.Recent, st.Days = recent, w.hist.week()
	w.obs = NewObservers(st)
	w.rebuildCaps()
	return w, nil
}

func (w *Worker) initialState() State {
	cfg := w.cfg
	s := State{
		Registered: cfg.Registered(),
		ServerURL:  cfg.ServerURL,
		WorkerID:   cfg.WorkerID,
		Name:       cfg.Name,
		Paused:     cfg.Paused,
		AutoAccept: cfg.AutoAccept,
		ConfigPath: w.opts.ConfigPath,
		LogFile:    w.opts.LogFile,
		Started:    w.now(),
		Conn:       ConnInfo{State: "offline", Server: hostOf(cfg.ServerURL)},
		GPU:        GPUState{CapGB: cfg.VRAMThresholdGB, Source: gpu.SourceNone},
		Counters:   Counters{Declined: map[string]int{}},
	}
	if !cfg.Registered() {
		s.Conn.State = "unregistered"
	}
	w.applyMode(&s)
	return s
}

// Observers returns the worker's state hub.
func (w *Worker) Observers() *Observers { return w.obs }

// Subscribe implements Source.
func (w *Worker) Subscribe() (State, *Subscription) { return w.obs.Subscribe() }

// Config returns a copy of the current config.
func (w *Worker) Config() Config {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cfg
}

// Serve runs the GPU monitor, the engine refresher and the session until ctx ends. It returns nil
// on a clean stop, session.ErrRegisterFirst when there are no credentials (unless KeepRunning),
// and session.ErrAuthFailed / ErrSuperseded / ErrGaveUp when the session ends for good (unless
// KeepRunning).
func (w *Worker) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := w.mon.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			w.log.Warn("GPU monitor stopped", "source", "gpu", "err", err)
		}
	}()
	// Reading what starts the worker may ask systemd or the service manager: not before the
	// first connection, so it runs beside it.
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.refreshAutoStart()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.hist.run(ctx, func() []RecentJob { return w.obs.Snapshot().Recent })
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.watchBackendVRAM(ctx)
	}()
	w.mu.Lock()
	w.serveCtx = ctx
	w.startRouterLocked(w.router)
	w.mu.Unlock()
	defer func() {
		cancel() // before waiting: the monitor and the refresher end with ctx
		w.endDemo()
		w.mu.Lock()
		stop, r := w.routerStop, w.router
		w.mu.Unlock()
		if stop != nil {
			stop()
			r.Wait()
		}
		wg.Wait()
	}()

	for {
		cfg := w.Config()
		if !cfg.Registered() {
			if !w.opts.KeepRunning {
				return session.ErrRegisterFirst
			}
			w.setConn(ConnInfo{State: "unregistered"})
			if !w.waitRestart(ctx) {
				return nil
			}
			continue
		}
		err := w.runSession(ctx, cfg)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errRestart):
			continue
		case err == nil:
			return nil
		}
		if !w.opts.KeepRunning {
			return err
		}
		w.log.Error("the session ended; waiting for you", "source", "session", "err", err)
		if !w.waitRestart(ctx) {
			return nil
		}
	}
}

var errRestart = errors.New("restart the session")

// runSession runs one session.Session until ctx ends, it fails for good, or a restart is asked.
func (w *Worker) runSession(ctx context.Context, cfg Config) error {
	scfg := w.opts.Session
	scfg.ServerURL, scfg.WorkerID, scfg.AuthToken = cfg.ServerURL, cfg.WorkerID, cfg.AuthToken
	scfg.AllowInsecure = cfg.AllowInsecure
	scfg.SpoolDir = cfg.SpoolPath(w.opts.ConfigPath)
	scfg.AgentVersion = w.opts.AgentVersion
	scfg.ReconnectAttempts = cfg.ReconnectAttempts
	scfg.MaxInputBytes = cfg.InputLimitMB << 20
	scfg.Logger = w.log.With("source", "session")
	if scfg.HTTPClient == nil {
		scfg.HTTPClient = w.client
	}
	s, err := session.New(scfg, w)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.sess = s
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.sess = nil
		w.mu.Unlock()
	}()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(sctx) }()
	select {
	case err := <-done:
		return err
	case <-w.restart:
		cancel()
		<-done
		return errRestart
	}
}

// startRouterLocked starts a router's refresher under the serve context; w.mu is held.
func (w *Worker) startRouterLocked(r *engine.Router) {
	if w.serveCtx == nil {
		return
	}
	rctx, stop := context.WithCancel(w.serveCtx)
	r.OnChange(func(engine.Capabilities) { w.rebuildCaps() })
	r.Start(rctx)
	w.routerStop = stop
}

// engines returns the current engine router.
func (w *Worker) engines() *engine.Router {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.router
}

// swapEngines replaces the router after a settings change; running jobs finish on the old one.
func (w *Worker) swapEngines(cfg engine.Config) error {
	nr, err := engine.NewRouter(cfg, w.log, w.client)
	if err != nil {
		return err
	}
	w.mu.Lock()
	old, oldStop := w.router, w.routerStop
	w.router, w.routerStop = nr, nil
	w.startRouterLocked(nr)
	w.mu.Unlock()
	if oldStop != nil {
		oldStop()
		old.Wait()
	}
	return nil
}

func (w *Worker) waitRestart(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-w.restart:
		return true
	}
}

func (w *Worker) requestRestart() {
	select {
	case w.restart <- struct{}{}:
	default:
	}
}

func (w *Worker) session() *session.Session {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sess
}

// Log hands a log entry to the session for shipping to the hub (dropped when not connected yet:
// the session keeps its own bounded buffer once it exists).
func (w *Worker) Log(e protocol.LogEntry) {
	if s := w.session(); s != nil {
		s.Log(e)
	}
	w.obs.Notify(Notice{Kind: NoticeLog, Time: e.TS, Level: e.Level, Source: e.Source, Text: e.Message, JobID: e.JobID})
}

// Shutdown starts a graceful stop: no new offers; Idle reports when running jobs have ended.
func (w *Worker) Shutdown() {
	w.mu.Lock()
	w.shuttingDown = true
	w.mu.Unlock()
	w.publishMode()
}

// pendingWork returns the jobs running and the results not yet acknowledged.
func (w *Worker) pendingWork() (running, outbox int) {
	w.mu.Lock()
	running = len(w.slots)
	s := w.sess
	w.mu.Unlock()
	if s != nil {
		// A job's slot is freed when the engine returns, and the session holds the job a moment
		// longer, until its result is in the outbox: counting only slots let a drain see no job
		// and an empty outbox in between, and stop before the result was kept (seen in the
		// Windows lane's service stop). Running is read before OutboxLen, since a job enters the
		// outbox before the session lets go of it.
		running = max(running, len(s.Running()))
		outbox = s.OutboxLen()
	}
	return running, outbox
}
