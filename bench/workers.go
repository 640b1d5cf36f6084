// workers.go: the probe that reads a worker's log lines into a figure's timings.

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"studioworker/app"
	"studioworker/hub"
)

// probe watches the log lines of in-process workers for the moments the figures need: a job
// handed to the engine ("job started", logged by app.Worker as the session calls Run), a job the
// engine finished ("job done"), and a session that got its welcome ("connected"). Reading the
// log keeps the workers exactly as shipped: nothing in app or session is there for the bench.
type probe struct {
	mu        sync.Mutex
	started   map[string]time.Time
	ended     map[string]time.Time
	seconds   map[string]float64 // "job done" took (or seconds): the run's duration as the session measured it
	uploaded  map[string]upload  // "result uploaded"
	runs      int                // "job started" lines, re-runs included
	connected int
	warnings  []string // the latest warnings and errors, for diagnostics
	changed   chan struct{}
}

// Log messages of app.Worker and session the probe relies on; a change there shows here as a
// figure that times out waiting, with these words in the error.
const (
	msgJobStarted = "job started"
	msgJobDone    = "job done"
	msgConnected  = "connected"
	msgUploaded   = "result uploaded"
)

type upload struct {
	at    time.Time
	bytes int64
}

const maxWarnings = 20

func newProbe() *probe {
	return &probe{started: map[string]time.Time{}, ended: map[string]time.Time{}, seconds: map[string]float64{},
		uploaded: map[string]upload{}, changed: make(chan struct{})}
}

// Logger returns a logger for app.Options.Logger.
func (p *probe) Logger() *slog.Logger { return slog.New(&probeHandler{p: p}) }

func (p *probe) record(r slog.Record, source string) {
	var jobID string
	var seconds float64
	var size int64
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "job_id":
			jobID = a.Value.String()
		case "seconds":
			seconds = numberOf(a.Value)
		case "took":
			// app.Worker logs a job's end with took (a duration rounded to the millisecond)
			// since f5d1066, where it said seconds.
			seconds = durationOf(a.Value).Seconds()
		case "bytes":
			size = int64(numberOf(a.Value))
		}
		return true
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case r.Message == msgJobStarted && jobID != "":
		p.runs++
		if _, seen := p.started[jobID]; !seen {
			p.started[jobID] = r.Time
		}
	case r.Message == msgJobDone && jobID != "":
		p.ended[jobID] = r.Time
		p.seconds[jobID] = seconds
	case r.Message == msgUploaded && jobID != "":
		p.uploaded[jobID] = upload{r.Time, size}
	case r.Message == msgConnected && source == "session":
		p.connected++
	case r.Level >= slog.LevelWarn:
		if len(p.warnings) == maxWarnings {
			p.warnings = p.warnings[1:]
		}
		p.warnings = append(p.warnings, fmt.Sprintf("%s %s %s job_id=%s", r.Level, source, r.Message, jobID))
		return
	default:
		return
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

// waitFor blocks until cond (called under the lock) holds, ctx ends, or the deadline passes.
func (p *probe) waitFor(ctx context.Context, timeout time.Duration, what string, cond func(p *probe) bool) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		p.mu.Lock()
		ok, ch := cond(p), p.changed
		p.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
			return fmt.Errorf("waiting for %s: no such log line after %v (recent warnings: %v)", what, timeout, p.recentWarnings())
		}
	}
}

func (p *probe) recentWarnings() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.warnings...)
}

func (p *probe) waitStarted(ctx context.Context, id string, timeout time.Duration) (time.Time, error) {
	var at time.Time
	err := p.waitFor(ctx, timeout, fmt.Sprintf("%q of job %s", msgJobStarted, id), func(p *probe) bool {
		t, ok := p.started[id]
		at = t
		return ok
	})
	return at, err
}

func (p *probe) waitEnded(ctx context.Context, id string, timeout time.Duration) error {
	return p.waitFor(ctx, timeout, fmt.Sprintf("%q of job %s", msgJobDone, id), func(p *probe) bool {
		_, ok := p.ended[id]
		return ok
	})
}

// waitUploaded returns when the job's result was uploaded, and its size.
func (p *probe) waitUploaded(ctx context.Context, id string, timeout time.Duration) (upload, error) {
	var u upload
	err := p.waitFor(ctx, timeout, fmt.Sprintf("%q of job %s", msgUploaded, id), func(p *probe) bool {
		v, ok := p.uploaded[id]
		u = v
		return ok
	})
	return u, err
}

// engineEnded is when the engine's Run returned: the session times a run from just before it
// logs "job started", and "job done" carries that duration.
func (p *probe) engineEnded(id string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	start, ok1 := p.started[id]
	secs, ok2 := p.seconds[id]
	return start.Add(time.Duration(secs * float64(time.Second))), ok1 && ok2
}

// endedAt is when "job done" was logged.
func (p *probe) endedAt(id string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.ended[id]
	return t, ok
}

func (p *probe) waitConnected(ctx context.Context, n int, timeout time.Duration) error {
	return p.waitFor(ctx, timeout, fmt.Sprintf("%d %q sessions", n, msgConnected), func(p *probe) bool {
		return p.connected >= n
	})
}

func (p *probe) counts() (runs, connected int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runs, p.connected
}

func (p *probe) firstStart() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var first time.Time
	for _, t := range p.started {
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	return first
}

// forget drops what the probe learned about jobs, keeping its connection count, so a long figure
// holds only one round's jobs.
func (p *probe) forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.started)
	clear(p.ended)
	clear(p.seconds)
	clear(p.uploaded)
}

// numberOf reads a numeric attribute, whether it came as a number (in-process) or as text
// (parsed from a worker process's log).
func numberOf(v slog.Value) float64 {
	switch v.Kind() {
	case slog.KindFloat64:
		return v.Float64()
	case slog.KindInt64:
		return float64(v.Int64())
	case slog.KindUint64:
		return float64(v.Uint64())
	}
	f, _ := strconv.ParseFloat(v.String(), 64)
	return f
}

// durationOf reads a duration attribute, whether it came as a time.Duration (in-process) or as
// text such as "40.01s" (parsed from a worker process's log).
func durationOf(v slog.Value) time.Duration {
	if v.Kind() == slog.KindDuration {
		return v.Duration()
	}
	d, _ := time.ParseDuration(v.String())
	return d
}

type probeHandler struct {
	p      *probe
	source string
}

func (h *probeHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *probeHandler) Handle(_ context.Context, r slog.Record) error {
	source := h.source
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "source" {
			source = a.Value.String()
			return false
		}
		return true
	})
	h.p.record(r, source)
	return nil
}

func (h *probeHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	for _, a := range attrs {
		if a.Key == "source" {
			c.source = a.Value.String()
		}
	}
	return &c
}

func (h *probeHandler) WithGroup(string) slog.Handler { return h }

// workerConfig is the config of a benchmark worker: the synthetic engine, a simulated 24 GB GPU
// (no NVML), auto-accept, no yielding (nothing else uses the simulated card).
func workerConfig(serverURL, id, token, name string, slots int) app.Config {
	cfg := app.DefaultConfig()
	cfg.ServerURL, cfg.WorkerID, cfg.AuthToken, cfg.Name = serverURL, id, token, name
	cfg.MaxConcurrentJobs = slots
	cfg.AutoAccept = true
	cfg.GPU.Simulated = &app.SimulatedGPU{Name: "Simulated bench GPU", VRAMGB: 24}
	cfg.GPU.Yield.Enabled = false
	return cfg
}

// fleet is a set of in-process workers: the real app.Worker with its real session.
type fleet struct {
	workers []*app.Worker
	probe   *probe
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errs    chan error
}

// startFleet registers n workers with the hub at hubURL and serves them against serverURL (the
// hub, or a tap in front of it) until stop. Each tweak changes every worker's config before it is
// saved (another engine for a kind, say).
func startFleet(ctx context.Context, dir string, hc *hub.Client, serverURL string, n, slots int, tweaks ...func(*app.Config)) (*fleet, error) {
	f := &fleet{probe: newProbe(), errs: make(chan error, n)}
	var ws []*app.Worker
	for i := range n {
		name := fmt.Sprintf("bench-%d", i)
		reg, err := hc.Register(ctx, name, "any")
		if err != nil {
			return nil, fmt.Errorf("register %s: %w", name, err)
		}
		wdir := filepath.Join(dir, name)
		if err := os.MkdirAll(wdir, 0o700); err != nil {
			return nil, err
		}
		cfg := workerConfig(serverURL, reg.WorkerID, reg.AuthToken, name, slots)
		for _, t := range tweaks {
			t(&cfg)
		}
		path := filepath.Join(wdir, "config.json")
		if err := app.SaveConfig(path, cfg); err != nil {
			return nil, err
		}
		w, err := app.NewWorker(app.Options{
			ConfigPath: path, Config: cfg, AgentVersion: "bench", Logger: f.probe.Logger(),
		})
		if err != nil {
			return nil, fmt.Errorf("worker %s: %w", name, err)
		}
		ws = append(ws, w)
	}
	sctx, cancel := context.WithCancel(context.Background())
	f.workers, f.cancel = ws, cancel
	for _, w := range ws {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			if err := w.Serve(sctx); err != nil {
				f.errs <- err
			}
		}()
	}
	if err := f.probe.waitConnected(ctx, n, 30*time.Second); err != nil {
		f.stop()
		return nil, err
	}
	return f, nil
}

// pause pauses (true) or resumes every worker.
func (f *fleet) pause(ctx context.Context, on bool) error {
	var errs []error
	for _, w := range f.workers {
		if on {
			errs = append(errs, w.Pause(ctx))
		} else {
			errs = append(errs, w.Resume(ctx))
		}
	}
	return errors.Join(errs...)
}

// stop ends every worker and reports the first error a worker stopped with.
func (f *fleet) stop() error {
	f.cancel()
	f.wg.Wait()
	select {
	case err := <-f.errs:
		return err
	default:
		return nil
	}
}
