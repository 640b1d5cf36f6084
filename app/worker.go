package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
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
	// autostart is "start with this computer"; nil = this OS's own (newAutostarter) for
	// ConfigPath. Tests give theirs.
	autostart autostarter
}

// slot is a job the worker has taken: accepted and not yet ended.
type slot struct {
	claim   protocol.Claim
	gpu     int
	started time.Time
}

// pendingOffer is an offer waiting for the user.
type pendingOffer struct {
	claim  protocol.Claim
	decide chan bool // true = accept; buffered 1
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
	slots         map[string]*slot
	pending       map[string]*pendingOffer
	thumbs        map[string]string // job id -> thumbnail of its image result, until its end is recorded
	yielder       *gpu.Yielder
	yield         gpu.YieldState
	serveCtx      context.Context      // set by Serve; routers started later live under it
	routerStop    context.CancelFunc   // stops the current router's refresher
	lastMode      protocol.WorkerState // last published, to tell the session when it changes
	lastAccepting bool
	lastRelease   time.Time // when a slot was last freed: an older GPU sample still counts its memory
	drainReq      bool      // finish the running jobs, then pause (not persisted until it completes)
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
		opts:    opts,
		log:     opts.Logger,
		router:  router,
		client:  client,
		now:     opts.Now,
		cfg:     cfg,
		restart: make(chan struct{}, 1),
		slots:   map[string]*slot{},
		pending: map[string]*pendingOffer{},
		thumbs:  map[string]string{},
		own:     gpu.OwnPIDs(uint32(os.Getpid())),
	}
	if w.opts.autostart == nil && opts.ConfigPath != "" {
		w.opts.autostart = newAutostarter(ServiceOptions{ConfigPath: opts.ConfigPath})
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
	w.obs = NewObservers(w.initialState())
	w.rebuildCaps()
	return w, nil
}

func yieldPolicy(y YieldConfig) gpu.YieldPolicy {
	p := gpu.YieldPolicy{ThresholdMB: y.ThresholdMB, ResumeAfter: time.Duration(y.ResumeAfterS * float64(time.Second))}
	if len(y.Ignore) > 0 {
		p.Ignore = append(gpu.DefaultIgnore(), y.Ignore...)
	}
	return p
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

// ---- session.Handler ----

// Capabilities implements session.Handler.
func (w *Worker) Capabilities() protocol.Capabilities {
	w.caps.mu.Lock()
	defer w.caps.mu.Unlock()
	return w.caps.caps
}

// rebuildCaps recomputes the capabilities from the config, the engines and the GPUs; called when
// any of them changes, never per heartbeat.
func (w *Worker) rebuildCaps() {
	ec := w.engines().Capabilities()
	snap := w.mon.Latest()
	w.mu.Lock()
	cfg := w.cfg
	autoStarts := w.autoStarts
	maxJobs := w.maxJobsLocked(snap)
	w.mu.Unlock()

	c := protocol.Capabilities{
		AgentVersion:           w.opts.AgentVersion,
		Engine:                 ec.Engine,
		AutoAccept:             cfg.AutoAccept,
		AutoStart:              autoStarts,
		MaxConcurrentJobs:      maxJobs,
		TaskKinds:              protocol.List[protocol.Kind]{},
		SupportedModels:        protocol.List[string]{},
		SupportedModelsPerKind: protocol.ModelsPerKind{},
		GPUs:                   protocol.List[protocol.GPUInfo]{},
	}
	c.MachineName, _ = os.Hostname()
	if u, err := user.Current(); err == nil {
		c.Username = u.Username
	}
	seen := map[string]bool{}
	for _, k := range protocol.Kinds() {
		models := ec.Models[k]
		if len(models) == 0 {
			continue
		}
		c.TaskKinds = append(c.TaskKinds, k)
		c.SupportedModelsPerKind[k] = slices.Clone(models)
		for _, m := range models {
			if !seen[m] {
				seen[m] = true
				c.SupportedModels = append(c.SupportedModels, m)
			}
		}
	}
	for _, d := range snap.Devices {
		c.GPUs = append(c.GPUs, protocol.GPUInfo{Index: d.Index, Name: d.Name, UUID: d.UUID, VRAMTotalMB: d.TotalMB})
	}
	reach := vramReach(cfg.VRAMThresholdGB, snap)
	c.VRAMTotalGB, c.VRAMThresholdGB = reach.TotalGB, reach.LimitGB
	w.caps.mu.Lock()
	w.caps.caps = c
	w.caps.mu.Unlock()

	models := map[string][]string{}
	for k, v := range c.SupportedModelsPerKind {
		models[string(k)] = slices.Clone(v)
	}
	down := map[string]string{}
	for k, v := range ec.Down {
		down[string(k)] = v
	}
	// Through update: the idle mode's words follow the reach.
	w.update(func(s *State) {
		s.Engine, s.Models, s.EngineDown, s.MaxJobs, s.VRAM = c.Engine, models, down, maxJobs, reach
	})
}

// memoryUnknown reports whether the driver listed a process on d without saying what it holds.
func memoryUnknown(d gpu.Device) bool {
	for _, p := range d.Processes {
		if p.MemoryUnknown {
			return true
		}
	}
	return false
}

// openGPU is the GPU source a config asks for: its simulated card, or the machine's own.
func openGPU(cfg Config) gpu.Sampler {
	if s := cfg.GPU.Simulated; s != nil {
		return gpu.NewSimulated(s.Name, int64(s.VRAMGB*1024))
	}
	return gpu.Open(gpu.Options{UnifiedReserveMB: cfg.GPU.UnifiedMemoryReserveMB})
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

func (w *Worker) maxJobsLocked(snap gpu.Snapshot) int {
	if w.cfg.MaxConcurrentJobs > 0 {
		return w.cfg.MaxConcurrentJobs
	}
	if n := len(snap.Devices); n > 0 {
		return n
	}
	return 1
}

// Status implements session.Handler.
func (w *Worker) Status() (protocol.WorkerState, bool, []protocol.GPUStat) {
	snap := w.mon.Latest()
	w.mu.Lock()
	mode, _ := w.modeLocked()
	accepting := w.acceptingLocked(mode, snap)
	w.mu.Unlock()
	gpus := make([]protocol.GPUStat, 0, len(snap.Devices))
	for _, d := range snap.Devices {
		gpus = append(gpus, protocol.GPUStat{Index: d.Index, VRAMTotalMB: d.TotalMB, VRAMUsedMB: d.UsedMB, UtilizationPct: d.UtilizationPct, TemperatureC: d.TemperatureC})
	}
	return mode, accepting, gpus
}

// acceptingLocked says whether the worker takes offers in mode: working or idle with a slot free;
// w.mu is held.
func (w *Worker) acceptingLocked(mode protocol.WorkerState, snap gpu.Snapshot) bool {
	return (mode == protocol.StateIdle || mode == protocol.StateBusy) && len(w.slots) < w.maxJobsLocked(snap)
}

// modeLocked derives the worker state and its reason in words from the flags; w.mu is held.
func (w *Worker) modeLocked() (protocol.WorkerState, string) {
	switch {
	case w.cfg.Paused:
		if n := len(w.slots); n > 0 {
			return protocol.StatePaused, fmt.Sprintf("Paused: finishing %d running job(s), taking no new ones", n)
		}
		return protocol.StatePaused, "Paused by you"
	case w.shuttingDown || w.drainReq:
		return protocol.StateDraining, w.drainReasonLocked()
	case w.yield.Yielding:
		return protocol.StateYielding, fmt.Sprintf("Paused while %s uses the GPU — resumes by itself", w.yield.Process)
	case len(w.slots) > 0:
		return protocol.StateBusy, "Working for the Studio"
	}
	return protocol.StateIdle, w.idleReasonLocked()
}

func (w *Worker) drainReasonLocked() string {
	ids := make([]string, 0, len(w.slots))
	for id := range w.slots {
		ids = append(ids, shortID(id))
	}
	sort.Strings(ids)
	verb := "pausing"
	if w.shuttingDown {
		verb = "stopping"
	}
	if len(ids) == 0 {
		return "Finishing, then " + verb
	}
	return fmt.Sprintf("Finishing job %s, then %s", joinWords(ids), verb)
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8] + "…"
	}
	return id
}

func joinWords(ws []string) string {
	switch len(ws) {
	case 0:
		return ""
	case 1:
		return ws[0]
	}
	return fmt.Sprintf("%s and %d more", ws[0], len(ws)-1)
}

// applyMode copies the derived mode into a State; w.mu is held or the worker is not shared yet.
func (w *Worker) applyMode(s *State) {
	s.Mode, s.ModeReason = w.modeLocked()
	s.Paused = w.cfg.Paused
	s.Draining = w.drainReq || w.shuttingDown
	s.AutoAccept = w.cfg.AutoAccept
	s.YieldedTo = ""
	if w.yield.Yielding {
		s.YieldedTo = w.yield.Process
	}
}

// publishMode recomputes the mode into the State.
func (w *Worker) publishMode() { w.update(nil) }

// update changes the State with fn (may be nil) and the derived mode in one publication, so that a
// window never sees a job listed under the wrong mode ("Idle" with a job running).
func (w *Worker) update(fn func(*State)) {
	snap := w.mon.Latest()
	w.publish.Lock()
	defer w.publish.Unlock()
	w.mu.Lock()
	var tmp State
	w.applyMode(&tmp)
	accepting := w.acceptingLocked(tmp.Mode, snap)
	changed := tmp.Mode != w.lastMode || accepting != w.lastAccepting
	w.lastMode, w.lastAccepting = tmp.Mode, accepting
	sess := w.sess
	w.mu.Unlock()
	if changed && sess != nil {
		sess.StatusChanged() // the hub should know now whether to offer, not at the next heartbeat
	}
	w.obs.Update(func(s *State) { // the one call: see publish
		if fn != nil {
			fn(s)
		}
		s.Mode, s.ModeReason, s.Paused, s.Draining, s.AutoAccept, s.YieldedTo = tmp.Mode, tmp.ModeReason, tmp.Paused, tmp.Draining, tmp.AutoAccept, tmp.YieldedTo
	})
}

// Offer implements session.Handler: admission, then (auto-accept off) the user's answer. An
// accepted offer holds its slot in a lease, which gives it back when the job ends or is released.
func (w *Worker) Offer(ctx context.Context, claim protocol.Claim) (session.Lease, protocol.DeclineReason) {
	adm := w.admit(claim, false)
	switch adm.Decision {
	case DecisionAccept:
		return w.newLease(claim), ""
	case DecisionWait:
		if ok, reason := w.waitForUser(ctx, claim); !ok {
			return nil, reason
		}
		return w.newLease(claim), ""
	}
	w.log.Info("declined an offer", "source", "worker", "job_id", claim.JobID, "kind", claim.Kind, "model", claim.Model, "reason", string(adm.Decision), "why", adm.Why)
	return nil, protocol.DeclineReason(adm.Decision)
}

// admit runs the admission policy and, on accept, takes a slot at once so that two offers
// decided together cannot both take the last one.
func (w *Worker) admit(claim protocol.Claim, userSaidYes bool) Admission {
	snap := w.liveSnapshot()
	caps := w.Capabilities()
	w.mu.Lock()
	defer w.mu.Unlock()
	in := AdmissionInput{
		Paused:         w.cfg.Paused,
		Draining:       w.drainReq || w.shuttingDown,
		Yielding:       w.yield.Yielding,
		Running:        len(w.slots),
		MaxConcurrent:  w.maxJobsLocked(snap),
		Kind:           string(claim.Kind),
		Model:          claim.Model,
		Supported:      map[string][]string{},
		EstimateGB:     claim.VRAMGBEstimate,
		CapGB:          w.cfg.VRAMThresholdGB,
		NoVRAM:         vramReach(w.cfg.VRAMThresholdGB, snap).noVRAM(),
		SafetyMarginMB: w.cfg.GPU.SafetyMarginMB,
		ExpiresAt:      claim.ExpiresAt,
		Now:            w.now(),
		AutoAccept:     w.cfg.AutoAccept || userSaidYes,
		ReservedMB:     map[int]int64{},
	}
	for k, ms := range caps.SupportedModelsPerKind {
		in.Supported[string(k)] = ms
	}
	if snap.Source != gpu.SourceNone {
		for _, d := range snap.Devices {
			in.GPUs = append(in.GPUs, GPUFree{Index: d.Index, FreeMB: d.FreeMB})
		}
		// Jobs taken since the last sample do not show in its free memory yet.
		for _, sl := range w.slots {
			if !sl.started.Before(snap.Time) {
				in.ReservedMB[sl.gpu] += int64(sl.claim.VRAMGBEstimate * 1024)
			}
		}
	}
	adm := Admit(in)
	if adm.Decision == DecisionAccept {
		w.slots[claim.JobID] = &slot{claim: claim, gpu: max(adm.GPU, 0), started: w.now()}
	}
	return adm
}

// liveSnapshot returns the latest GPU sample, sampling again when a job ended after it: the memory
// that job held shows as used in the old sample, and admission must see it free.
func (w *Worker) liveSnapshot() gpu.Snapshot {
	snap := w.mon.Latest()
	w.mu.Lock()
	stale := w.lastRelease.After(snap.Time)
	w.mu.Unlock()
	if !stale || snap.Source == gpu.SourceNone {
		return snap
	}
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	if fresh, err := w.mon.SampleNow(ctx); err == nil {
		return fresh
	}
	return snap
}

func (w *Worker) waitForUser(ctx context.Context, claim protocol.Claim) (bool, protocol.DeclineReason) {
	p := &pendingOffer{claim: claim, decide: make(chan bool, 1)}
	w.mu.Lock()
	w.pending[claim.JobID] = p
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.pending, claim.JobID)
		w.mu.Unlock()
	}()
	w.update(func(s *State) {
		for i := range s.Offers {
			if s.Offers[i].JobID == claim.JobID {
				s.Offers[i].WaitingForUser = true
			}
		}
	})
	w.log.Info("an offer waits for you (auto-accept is off)", "source", "worker", "job_id", claim.JobID, "kind", claim.Kind, "model", claim.Model)
	select {
	case yes := <-p.decide:
		if !yes {
			return false, protocol.DeclineUser
		}
		// The world may have changed while the user looked: check again, without asking.
		adm := w.admit(claim, true)
		if adm.Decision == DecisionAccept {
			return true, ""
		}
		return false, protocol.DeclineReason(adm.Decision)
	case <-ctx.Done():
		return false, protocol.DeclineExpired
	}
}

func (w *Worker) thumbDir() string {
	if w.opts.ConfigPath == "" {
		return filepath.Join(os.TempDir(), "studio-worker-thumbs")
	}
	return filepath.Join(filepath.Dir(w.opts.ConfigPath), "thumbs")
}

// release frees a job's slot and finishes a drain when it was the last one. The caller publishes
// the new mode together with its own change (the job's end, the offer's outcome).
func (w *Worker) release(jobID string) {
	w.mu.Lock()
	if _, ok := w.slots[jobID]; ok {
		w.lastRelease = w.now()
	}
	delete(w.slots, jobID)
	finishDrain := w.drainReq && len(w.slots) == 0
	if finishDrain {
		w.drainReq = false
		w.cfg.Paused = true
	}
	w.mu.Unlock()
	if finishDrain {
		w.log.Info("the last job finished: paused", "source", "worker")
		_ = w.persist() // persist logs a failure; the pause holds in memory regardless
	}
	w.updateSimulatedUse()
}

// jobProgress shows a running job's progress; the session has throttled it already.
func (w *Worker) jobProgress(jobID string, f float64, msg string) {
	w.update(func(s *State) {
		for i := range s.Running {
			if s.Running[i].JobID == jobID {
				s.Running[i].Fraction, s.Running[i].Message = f, msg
			}
		}
	})
}

// updateSimulatedUse makes a simulated GPU show the VRAM the running jobs would use, so the demo's
// bars and admission move like a real card's.
func (w *Worker) updateSimulatedUse() {
	if w.sim == nil {
		return
	}
	w.mu.Lock()
	mb := w.opts.SimulatedBaseMB
	for _, sl := range w.slots {
		mb += int64(sl.claim.VRAMGBEstimate * 1024)
	}
	w.mu.Unlock()
	w.sim.SetUsedMB(mb)
}

// Event implements session.Handler: session events become State changes and notices.
func (w *Worker) Event(e session.Event) {
	now := w.now()
	switch ev := e.(type) {
	case session.ConnEvent:
		ci := ConnInfo{State: string(ev.State), Server: ev.Server, Attempt: ev.Attempt, NextRetry: ev.NextRetry, Since: now}
		if ev.Err != nil {
			ci.LastError = ev.Err.Error()
		}
		w.setConn(ci)
		if ev.State == session.ConnAuthFailed {
			w.obs.Notify(Notice{Kind: NoticeAuthFailed, Time: now, Level: protocol.LevelError, Source: "session",
				Text: "This worker was removed from the Studio — register again"})
		}
	case session.OfferEvent:
		c := ev.Claim
		po := PendingOffer{JobID: c.JobID, Kind: c.Kind, Model: c.Model, VRAMGBEstimate: c.VRAMGBEstimate, ExpiresAt: c.ExpiresAt}
		w.update(func(s *State) {
			s.Offers = append(s.Offers, po)
			if len(s.Offers) > maxOffersShown {
				s.Offers = s.Offers[len(s.Offers)-maxOffersShown:]
			}
		})
		w.obs.Notify(Notice{Kind: NoticeOffer, Time: now, Text: fmt.Sprintf("Offer: %s · %s", c.Kind, c.Model), JobID: c.JobID, Offer: &po})
	case session.OfferResolvedEvent:
		outcome := "accepted"
		if !ev.Accepted {
			outcome = string(ev.Reason) // an accept that was overruled was released by the session already
		}
		w.update(func(s *State) {
			s.Offers = slices.DeleteFunc(s.Offers, func(o PendingOffer) bool { return o.JobID == ev.JobID })
			if !ev.Accepted {
				s.Counters.Declined[string(ev.Reason)]++
			}
		})
		w.obs.Notify(Notice{Kind: NoticeOfferResolved, Time: now, JobID: ev.JobID, Outcome: outcome, Text: "Offer " + shortID(ev.JobID) + ": " + outcome})
	case session.JobStartedEvent:
		c := ev.Claim
		w.mu.Lock()
		g := 0
		if sl, ok := w.slots[c.JobID]; ok { // its lease holds it from admission to the end
			g = sl.gpu
		}
		w.mu.Unlock()
		w.updateSimulatedUse()
		w.update(func(s *State) {
			s.Running = append(s.Running, RunningJob{JobID: c.JobID, Kind: c.Kind, Model: c.Model, Started: now, GPU: g})
		})
		w.log.Info("job started", "source", "worker", "job_id", c.JobID, "kind", c.Kind, "model", c.Model)
	case session.JobProgressEvent:
		w.jobProgress(ev.JobID, ev.Fraction, ev.Message)
	case session.JobEndedEvent:
		w.mu.Lock()
		thumb := w.thumbs[ev.JobID]
		delete(w.thumbs, ev.JobID)
		w.mu.Unlock()
		rj := RecentJob{JobID: ev.JobID, Kind: ev.Kind, Model: ev.Model, Duration: ev.Duration, Ended: now, File: thumb}
		switch {
		case ev.Cancelled:
			rj.Status = "cancelled"
		case ev.Err != nil:
			rj.Status, rj.Error = "failed", ev.Err.Error()
		default:
			rj.Status = "done"
		}
		w.update(func(s *State) {
			s.Running = slices.DeleteFunc(s.Running, func(r RunningJob) bool { return r.JobID == ev.JobID })
			s.addRecent(rj)
			switch rj.Status {
			case "done":
				s.Counters.Done++
			case "failed":
				s.Counters.Failed++
			default:
				s.Counters.Cancelled++
			}
		})
		level := protocol.LevelInfo
		if rj.Status == "failed" {
			level = protocol.LevelWarn
		}
		w.obs.Notify(Notice{Kind: NoticeJobFinished, Time: now, Level: level, JobID: ev.JobID, Job: &rj,
			Text: fmt.Sprintf("%s · %s %s in %.1f s", ev.Kind, ev.Model, rj.Status, ev.Duration.Seconds())})
		if rj.Status == "failed" {
			w.log.Warn("job failed", "source", "worker", "job_id", ev.JobID, "retryable", ev.Retryable, "err", ev.Err)
		} else {
			w.log.Info("job "+rj.Status, "source", "worker", "job_id", ev.JobID, "seconds", ev.Duration.Seconds())
		}
	case session.DeliveredEvent:
		if ev.Bytes > 0 {
			w.update(func(s *State) { s.Counters.BytesUploaded += ev.Bytes })
		}
	case session.CancelEvent:
		w.mu.Lock()
		if p, ok := w.pending[ev.JobID]; ok {
			select {
			case p.decide <- false:
			default:
			}
		}
		w.mu.Unlock()
		w.log.Info("the Studio cancelled a job", "source", "worker", "job_id", ev.JobID, "reason", string(ev.Reason))
	}
}

func (w *Worker) setConn(ci ConnInfo) {
	cfg := w.Config()
	if ci.Server == "" {
		ci.Server = hostOf(cfg.ServerURL)
	}
	if ci.Since.IsZero() {
		ci.Since = w.now()
	}
	w.update(func(s *State) {
		s.Conn = ci
		s.Registered = cfg.Registered()
		s.ServerURL, s.WorkerID, s.Name = cfg.ServerURL, cfg.WorkerID, cfg.Name
	})
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return raw
	}
	return u.Host
}

// onSnapshot runs on the GPU monitor's goroutine for every sample.
func (w *Worker) onSnapshot(snap gpu.Snapshot) {
	w.mu.Lock()
	prev := w.yield
	if w.cfg.GPU.Yield.Enabled {
		w.yield = w.yielder.Observe(snap, w.own, snap.Time)
	} else {
		w.yield = gpu.YieldState{}
	}
	cur := w.yield
	cancelRunning := cur.Yielding && !prev.Yielding && w.cfg.GPU.Yield.CancelRunning
	var running []string
	if cancelRunning {
		for id := range w.slots {
			running = append(running, id)
		}
	}
	capGB := w.cfg.VRAMThresholdGB
	w.mu.Unlock()

	devicesChanged := false
	w.update(func(s *State) {
		old := s.GPU.Cards
		s.GPU.Source, s.GPU.Simulated, s.GPU.Problem, s.GPU.CapGB = snap.Source, snap.Simulated, snap.Problem, capGB
		cards := make([]GPUCard, len(snap.Devices))
		for i, d := range snap.Devices {
			var hist []GPUSample
			for _, o := range old {
				if o.Index == d.Index && o.UUID == d.UUID {
					hist = o.History
				}
			}
			hist = append(hist, GPUSample{Time: snap.Time, UsedMB: d.UsedMB, UtilizationPct: d.UtilizationPct})
			if len(hist) > maxGPUHistory {
				hist = slices.Clone(hist[len(hist)-maxGPUHistory:])
			}
			cards[i] = GPUCard{Index: d.Index, Name: d.Name, UUID: d.UUID, TotalMB: d.TotalMB, UsedMB: d.UsedMB, FreeMB: d.FreeMB,
				UtilizationPct: d.UtilizationPct, HasUtilization: d.HasUtilization, TemperatureC: d.TemperatureC,
				HasTemperature: d.HasTemperature, PowerW: d.PowerW, UnifiedMemory: d.UnifiedMemory, ProcessMemoryUnknown: memoryUnknown(d), History: hist}
		}
		if len(old) != len(cards) {
			devicesChanged = true
		} else {
			for i := range old {
				if old[i].UUID != cards[i].UUID || old[i].TotalMB != cards[i].TotalMB || old[i].Name != cards[i].Name {
					devicesChanged = true
				}
			}
		}
		s.GPU.Cards = cards
		if vramReach(capGB, snap) != s.VRAM {
			devicesChanged = true // the first sample, or a GPU lost or found: the capabilities follow
		}
	})
	if devicesChanged {
		w.rebuildCaps()
	}
	if cur.Yielding != prev.Yielding {
		text := "The GPU is free again: taking jobs"
		if cur.Yielding {
			text = fmt.Sprintf("Paused while %s uses the GPU — resumes by itself", cur.Process)
		}
		w.log.Info(text, "source", "gpu", "process", cur.Process, "pid", cur.PID)
		w.obs.Notify(Notice{Kind: NoticeYield, Time: snap.Time, Text: text, State: map[bool]protocol.WorkerState{true: protocol.StateYielding, false: protocol.StateIdle}[cur.Yielding]})
		w.publishMode()
	}
	if s := w.session(); s != nil {
		for _, id := range running {
			s.CancelJob(id)
		}
	}
}

// ---- Controller ----

// Pause stops taking offers; running jobs finish. It is remembered across restarts.
func (w *Worker) Pause(ctx context.Context) error {
	return w.changeConfig(func(c *Config) { c.Paused = true; w.drainReq = false }, "paused by you")
}

// Resume takes offers again.
func (w *Worker) Resume(ctx context.Context) error {
	return w.changeConfig(func(c *Config) { c.Paused = false; w.drainReq = false }, "resumed by you")
}

// Drain finishes the running jobs, takes no new ones, then pauses.
func (w *Worker) Drain(ctx context.Context) error {
	w.mu.Lock()
	idle := len(w.slots) == 0
	w.mu.Unlock()
	if idle {
		return w.Pause(ctx)
	}
	w.mu.Lock()
	w.drainReq = true
	w.mu.Unlock()
	w.log.Info("finishing the running job, then pausing", "source", "worker")
	w.publishMode()
	return nil
}

// SetAutoAccept turns auto-accept on or off; turning it on answers the offers waiting for the user.
func (w *Worker) SetAutoAccept(ctx context.Context, on bool) error {
	err := w.changeConfig(func(c *Config) { c.AutoAccept = on }, map[bool]string{true: "auto-accept on", false: "auto-accept off"}[on])
	if err != nil {
		return err
	}
	if on {
		w.mu.Lock()
		for _, p := range w.pending {
			select {
			case p.decide <- true:
			default:
			}
		}
		w.mu.Unlock()
	}
	w.rebuildCaps()
	return nil
}

// changeConfig applies a change under the lock, persists it and republishes the mode.
func (w *Worker) changeConfig(fn func(*Config), what string) error {
	w.mu.Lock()
	fn(&w.cfg)
	w.mu.Unlock()
	w.log.Info(what, "source", "worker")
	w.publishMode()
	return w.persist()
}

// persist saves the config as it is now. Saves take turns, and each reads the config when its
// turn comes, so the file always ends as the newest config: two changes racing cannot leave the
// older one on disk.
func (w *Worker) persist() error {
	if w.opts.ConfigPath == "" {
		return nil
	}
	w.saving.Lock()
	defer w.saving.Unlock()
	cfg := w.withoutDemo(w.Config())
	if err := SaveConfig(w.opts.ConfigPath, cfg); err != nil {
		w.log.Error("could not save the settings", "source", "worker", "err", err)
		return fmt.Errorf("save settings: %w", err)
	}
	return nil
}

// AcceptOffer answers an offer that waits for the user.
func (w *Worker) AcceptOffer(ctx context.Context, jobID string) error { return w.decide(jobID, true) }

// DeclineOffer answers an offer that waits for the user.
func (w *Worker) DeclineOffer(ctx context.Context, jobID string) error { return w.decide(jobID, false) }

func (w *Worker) decide(jobID string, yes bool) error {
	w.mu.Lock()
	p, ok := w.pending[jobID]
	w.mu.Unlock()
	if !ok {
		return noSuch(ErrNoSuchOffer, jobID)
	}
	select {
	case p.decide <- yes:
	default: // already answered
	}
	return nil
}

// CancelJob stops a running job; the hub gets a retryable fail and offers it elsewhere.
func (w *Worker) CancelJob(ctx context.Context, jobID string) error {
	s := w.session()
	if s == nil || !s.CancelJob(jobID) {
		return noSuch(ErrNoSuchJob, jobID)
	}
	w.log.Info("job cancelled by you", "source", "worker", "job_id", jobID)
	return nil
}

// Reconnect drops the connection and dials again at once (or retries after a rejection).
func (w *Worker) Reconnect(ctx context.Context) error {
	if s := w.session(); s != nil {
		s.Reconnect()
		return nil
	}
	w.requestRestart()
	return nil
}

// Register pairs the worker with a Studio, saves the credentials and (re)connects.
func (w *Worker) Register(ctx context.Context, req RegisterRequest) error {
	w.endDemo() // registering for real ends a demo
	cfg := w.Config()
	if req.ServerURL == "" {
		req.ServerURL = cfg.ServerURL
	}
	if req.Name == "" {
		req.Name = cfg.Name
	}
	if req.Name == "" {
		req.Name, _ = os.Hostname()
	}
	if err := session.CheckServerURL(req.ServerURL, cfg.AllowInsecure); err != nil {
		return &ValidationError{Fields: map[string]string{"server_url": err.Error()}}
	}
	if req.PairingCode == "" {
		return &ValidationError{Fields: map[string]string{"pairing_code": "enter the pairing code from your Studio"}}
	}
	engines, err := w.registerEngines(req.Engines) // checked before anything is sent
	if err != nil {
		return err
	}
	resp, err := session.Register(ctx, w.client, req.ServerURL, cfg.AllowInsecure, req.Name, req.PairingCode)
	if errors.Is(err, session.ErrPairingRejected) {
		return &ValidationError{Fields: map[string]string{"pairing_code": err.Error()}}
	}
	if err != nil {
		return &ValidationError{Fields: map[string]string{"server_url": err.Error()}}
	}
	if engines != nil {
		if err := w.swapEngines(engines); err != nil {
			return &ValidationError{Fields: map[string]string{"engines": err.Error()}}
		}
		w.rebuildCaps() // the new router may never report a change: it starts knowing its programs
	}
	w.mu.Lock()
	w.cfg.ServerURL, w.cfg.Name = req.ServerURL, req.Name
	w.cfg.WorkerID, w.cfg.AuthToken = resp.WorkerID, resp.AuthToken
	if engines != nil {
		w.cfg.Engines = engines
	}
	w.mu.Unlock()
	if err := w.persist(); err != nil {
		return err
	}
	w.log.Info("registered with the Studio", "source", "worker", "server", hostOf(req.ServerURL), "worker_id", resp.WorkerID)
	w.setConn(ConnInfo{State: string(session.ConnConnecting)})
	w.requestRestart()
	return nil
}

// Settings returns the editable settings.
func (w *Worker) Settings(ctx context.Context) (Settings, error) {
	// The settings page loading (or its Reload) is when a person looks: read the OS again, for a
	// change made meanwhile by `studio-worker autostart` or by hand.
	w.refreshAutoStart()
	return SettingsOf(w.Config()), nil
}

// SaveSettings validates, persists and applies settings.
func (w *Worker) SaveSettings(ctx context.Context, s Settings) error {
	old := w.Config()
	next := s.apply(old)
	if err := next.Validate(); err != nil {
		return validationOf(err)
	}
	if !reflect.DeepEqual(old.Engines, next.Engines) {
		if err := w.swapEngines(next.Engines); err != nil {
			return &ValidationError{Fields: map[string]string{"engines": err.Error()}}
		}
	}
	w.mu.Lock()
	// Applied to the config as it is now, not to the copy read above: a Pause or an auto-accept
	// toggle made meanwhile is not the form's to undo.
	w.cfg = s.apply(w.cfg)
	w.yielder = gpu.NewYielder(yieldPolicy(w.cfg.GPU.Yield))
	w.mu.Unlock()
	if err := w.persist(); err != nil {
		return err
	}
	w.rebuildCaps()
	w.publishMode()
	w.update(func(st *State) {
		st.GPU.CapGB = next.VRAMThresholdGB
		st.ServerURL = next.ServerURL
		st.Name = next.Name
	})
	if old.ServerURL != next.ServerURL || old.AllowInsecure != next.AllowInsecure {
		w.requestRestart()
	}
	w.log.Info("settings saved", "source", "worker")
	return nil
}

// TestBackend asks a backend what it serves.
func (w *Worker) TestBackend(ctx context.Context, kind protocol.Kind, b engine.BackendConfig) ([]string, error) {
	if b.APIKey == "(set)" {
		b.APIKey = w.Config().Engines[kind].APIKey
	}
	return engine.ProbeBackend(ctx, kind, b, w.client)
}

// SetService turns "start with this computer" on or off through this OS's autostarter, then
// publishes what the OS holds, whether or not the change worked.
func (w *Worker) SetService(ctx context.Context, install bool) (string, error) {
	as := w.opts.autostart
	if as == nil {
		return "", errors.New("start with this computer: this worker has no config file to start with: save the settings or register first")
	}
	set := as.Disable
	if install {
		set = as.Enable
	}
	done, err := set()
	w.refreshAutoStart()
	if err != nil {
		return "", err
	}
	w.log.Info("start with this computer: "+done, "source", "worker")
	return done, nil
}

// refreshAutoStart reads what starts the worker with this computer into the State, and into the
// capabilities when that changes. A read that fails says so in the State's words.
func (w *Worker) refreshAutoStart() {
	as := w.opts.autostart
	if as == nil {
		return
	}
	w.autoRead.Lock()
	defer w.autoRead.Unlock()
	st, err := as.Status()
	if err != nil {
		st = AutoStart{Text: "Could not tell what starts the worker with this computer: " + err.Error()}
	}
	w.mu.Lock()
	changed := w.autoStarts != st.Starts()
	w.autoStarts = st.Starts()
	w.mu.Unlock()
	w.update(func(s *State) { s.AutoStart = st })
	if changed {
		w.rebuildCaps()
	}
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
