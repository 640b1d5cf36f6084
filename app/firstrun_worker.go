// firstrun_worker.go: the worker's side of the first run — backend detection, the window's demo
// (a local hub the worker registers with in memory, never in the config), and the engines a
// registration brings. It must not know the window.

package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"studioworker/engine"
	"studioworker/protocol"
	"studioworker/session"
)

// Errors of the first-run controls.
var (
	ErrDemoRunning       = errors.New("the demo is already running")
	ErrNoDemo            = errors.New("no demo is running")
	ErrAlreadyRegistered = errors.New("this worker is registered with a Studio: the demo is for a worker that is not")
	ErrNotServing        = errors.New("the worker is not running yet")
)

// demoRun is a demo the window started: this worker registered, in memory only, with a reference
// hub in this process that submits the demo jobs.
type demoRun struct {
	prev   Config // the config before the demo: what the file keeps meanwhile, and what comes back after
	hub    DemoHub
	cancel context.CancelFunc
	done   chan struct{} // closed when the job loop has ended
	ending bool          // endDemo is under way; w.mu
}

// DetectBackends finds the inference backends on this machine (Detector; loopback and PATH only).
func (w *Worker) DetectBackends(ctx context.Context) ([]Detected, error) {
	d := Detector{}
	if w.opts.ConfigPath != "" {
		d.WorkflowDir = filepath.Dir(w.opts.ConfigPath)
	}
	return d.Detect(ctx)
}

// StartDemo starts a reference hub in this process on a free loopback port, registers this worker
// with it (in memory: the config file keeps its own settings), and submits the demo jobs, the same
// loop as `studio-worker demo`. Each job's line and the summary go to the log. StopDemo, a real
// Register or the end of Serve ends it.
func (w *Worker) StartDemo(ctx context.Context) error {
	d := &demoRun{done: make(chan struct{})}
	w.mu.Lock()
	switch {
	case w.opts.DemoHub == nil:
		w.mu.Unlock()
		return ErrNoDemoHub
	case w.demo != nil:
		w.mu.Unlock()
		return ErrDemoRunning
	case w.cfg.Registered():
		w.mu.Unlock()
		return ErrAlreadyRegistered
	case w.serveCtx == nil || w.serveCtx.Err() != nil:
		w.mu.Unlock()
		return ErrNotServing
	}
	w.demo = d // reserved: a second StartDemo meanwhile is refused
	d.prev = w.cfg
	serveCtx := w.serveCtx
	w.mu.Unlock()

	fail := func(err error) error {
		w.mu.Lock()
		w.demo = nil
		w.mu.Unlock()
		if d.hub != nil {
			d.hub.Close()
		}
		return fmt.Errorf("start the demo: %w", err)
	}
	dh, err := w.opts.DemoHub(serveCtx, w.log.With("source", "demo hub"))
	if err != nil {
		return fail(err)
	}
	d.hub = dh
	name := demoName()
	workerID, authToken, err := dh.Register(ctx, name)
	if err != nil {
		return fail(err)
	}
	engines := demoEngines()
	if err := w.swapEngines(engines); err != nil {
		return fail(err)
	}
	dctx, cancel := context.WithCancel(serveCtx)
	d.cancel = cancel
	w.mu.Lock()
	w.cfg.ServerURL, w.cfg.WorkerID, w.cfg.AuthToken, w.cfg.Name = dh.URL(), workerID, authToken, name
	w.cfg.Engines = engines
	w.cfg.SpoolDir = filepath.Join(dh.Dir(), "spool") // demo results never wait in the real outbox
	w.mu.Unlock()
	w.rebuildCaps()
	w.update(func(s *State) { s.Demo = true })
	w.log.Info("demo: a local Studio hub in this app sends test jobs to this worker", "source", "demo", "hub", dh.URL())
	w.setConn(ConnInfo{State: string(session.ConnConnecting)})
	w.requestRestart()

	go func() {
		defer close(d.done)
		out := &logLines{log: w.log, level: slog.LevelInfo}
		errOut := &logLines{log: w.log, level: slog.LevelWarn}
		// Not the job to be declined for VRAM: it needs the demo command's simulated GPU with
		// another program on it.
		dh.RunJobs(dctx, w, DemoPlan{Jobs: 12, NoVRAMDecline: true}, out, errOut)
		out.flush()
		errOut.flush()
	}()
	return nil
}

// StopDemo ends the demo: the jobs stop, the hub closes, and the worker is back as it was, waiting
// to be registered.
func (w *Worker) StopDemo(ctx context.Context) error {
	if !w.endDemo() {
		return ErrNoDemo
	}
	return nil
}

// demoDrainWait bounds how long ending a demo waits for the worker to finish with its jobs.
const demoDrainWait = 10 * time.Second

// endDemo ends a running demo and reports whether there was one.
func (w *Worker) endDemo() bool {
	w.mu.Lock()
	d := w.demo
	if d == nil || d.cancel == nil || d.ending { // none, one still starting (it cleans up after itself), or one ending
		w.mu.Unlock()
		return false
	}
	d.ending = true
	serving := w.serveCtx != nil && w.serveCtx.Err() == nil
	w.mu.Unlock()

	d.cancel()
	<-d.done
	if serving {
		w.drainDemo(d)
	}
	w.mu.Lock()
	w.demo = nil
	w.cfg.ServerURL, w.cfg.WorkerID, w.cfg.AuthToken, w.cfg.Name = d.prev.ServerURL, d.prev.WorkerID, d.prev.AuthToken, d.prev.Name
	w.cfg.Engines, w.cfg.SpoolDir = d.prev.Engines, d.prev.SpoolDir
	w.mu.Unlock()
	if serving {
		if err := w.swapEngines(d.prev.Engines); err != nil {
			w.log.Error("the engines from before the demo do not start", "source", "demo", "err", err)
		}
		w.rebuildCaps()
		w.requestRestart()
	}
	w.update(func(s *State) { s.Demo = false })
	w.setConn(ConnInfo{State: "unregistered"})
	d.hub.Close()
	w.log.Info("demo ended", "source", "demo")
	return true
}

// drainDemo cancels the demo's jobs at its hub, which cancels them here, and waits (bounded) until
// the worker has no job running and no result waiting to upload, so the session stops with
// nothing in flight.
func (w *Worker) drainDemo(d *demoRun) {
	ctx, cancel := context.WithTimeout(context.Background(), demoDrainWait)
	defer cancel()
	d.hub.CancelJobs(ctx)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if running, outbox := w.pendingWork(); running == 0 && outbox == 0 {
			return
		}
		select {
		case <-ctx.Done():
			w.log.Warn("the demo ended with jobs still in flight", "source", "demo")
			return
		case <-tick.C:
		}
	}
}

// withoutDemo is what the config file gets while a demo runs: the demo's hub, credentials and
// engines never reach it.
func (w *Worker) withoutDemo(cfg Config) Config {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d := w.demo; d != nil {
		cfg.ServerURL, cfg.WorkerID, cfg.AuthToken, cfg.Name = d.prev.ServerURL, d.prev.WorkerID, d.prev.AuthToken, d.prev.Name
		cfg.Engines, cfg.SpoolDir = d.prev.Engines, d.prev.SpoolDir
	}
	return cfg
}

// registerEngines checks the engines a Register brings (the backends ticked on the first-run
// page), writing the example ComfyUI workflow a detected ComfyUI points at. nil means keep the
// engines as they are.
func (w *Worker) registerEngines(req *BackendForms) (engine.Config, error) {
	if req == nil {
		return nil, nil
	}
	engines := req.config()
	if engines == nil {
		engines = engine.Config{} // ticked nothing, explicitly: no kind is offered
	}
	if w.opts.ConfigPath != "" {
		example := filepath.Join(filepath.Dir(w.opts.ConfigPath), ComfyUIWorkflowFile)
		for _, bc := range engines {
			if bc.Backend == engine.BackendComfyUI && bc.Workflow == example {
				if err := writeComfyUIWorkflow(example); err != nil {
					return nil, &ValidationError{Fields: map[string]string{"engines": err.Error()}}
				}
			}
		}
	}
	if err := engines.Validate(); err != nil {
		return nil, &ValidationError{Fields: map[string]string{"engines": err.Error()}}
	}
	return engines, nil
}

// demoEngines is the synthetic engine on every kind, with the demo's VRAM figures.
func demoEngines() engine.Config {
	c := engine.DefaultConfig()
	for k, bc := range c {
		bc.VRAMGB = demoVRAM(k)
		c[k] = bc
	}
	return c
}

// demoVRAM is the VRAM figure of each kind in the demo, as `studio-worker demo` sets them.
func demoVRAM(k protocol.Kind) float64 {
	switch k {
	case protocol.KindLLM:
		return 6
	case protocol.KindImage:
		return 8
	case protocol.KindTTS:
		return 1.5
	case protocol.KindSTT:
		return 2
	case protocol.KindVideo:
		return 12
	}
	return 0
}

// logLines is a writer that logs each line written to it (the demo's report).
type logLines struct {
	log   *slog.Logger
	level slog.Level
	mu    sync.Mutex
	buf   []byte
}

const maxLogLine = 4 << 10

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.emit(l.buf[:i])
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > maxLogLine { // a line without an end is cut rather than held forever
		l.emit(l.buf)
		l.buf = nil
	}
	return len(p), nil
}

func (l *logLines) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.emit(l.buf)
		l.buf = nil
	}
}

func (l *logLines) emit(line []byte) {
	if s := string(bytes.TrimRight(line, " \r")); s != "" {
		l.log.Log(context.Background(), l.level, "demo: "+s, "source", "demo")
	}
}
