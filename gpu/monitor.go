// monitor.go: the GPU monitor — samples a Sampler on an interval, keeps the latest snapshot and
// hands each to its listener. It must not know what the worker does with them.

package gpu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval is how often a Monitor samples when given no interval.
const DefaultInterval = 2 * time.Second

var (
	// ErrMonitorStopped is returned by SampleNow once Run has returned.
	ErrMonitorStopped = errors.New("gpu: monitor has stopped")
	// ErrMonitorRunning is returned by a second call to Run.
	ErrMonitorRunning = errors.New("gpu: monitor is already running")
)

// MonitorOptions are the optional parts of a Monitor.
type MonitorOptions struct {
	// OnSnapshot is called on the monitor's goroutine after every sample,
	// including failed ones (their Problem says what went wrong) and those
	// forced by SampleNow. It must return quickly: sampling waits for it.
	OnSnapshot func(Snapshot)
}

// Monitor is the single owner of a Sampler: only the goroutine running Run
// calls Sample and Close, so NVML is never entered from two goroutines.
// Everyone else reads Latest or asks for a fresh sample with SampleNow.
type Monitor struct {
	sampler    Sampler
	interval   time.Duration
	log        *slog.Logger
	onSnapshot func(Snapshot)

	started atomic.Bool
	reqs    chan sampleRequest
	done    chan struct{} // closed when Run returns

	mu     sync.Mutex
	latest Snapshot
}

type sampleRequest struct {
	ctx   context.Context
	reply chan sampleResult // buffered, so Run never waits for a caller that gave up
}

type sampleResult struct {
	snap Snapshot
	err  error
}

// NewMonitor returns a Monitor that will sample s every interval
// (DefaultInterval when interval <= 0) once Run is called. A nil sampler
// behaves like Unavailable and a nil logger discards logs. At most one MonitorOptions is expected; a later one wins.
func NewMonitor(s Sampler, interval time.Duration, logger *slog.Logger, opts ...MonitorOptions) *Monitor {
	if s == nil {
		s = Unavailable("GPU monitoring is off: VRAM checks are off")
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Monitor{
		sampler:  s,
		interval: interval,
		log:      logger,
		reqs:     make(chan sampleRequest),
		done:     make(chan struct{}),
	}
	for _, o := range opts {
		m.onSnapshot = o.OnSnapshot
	}
	return m
}

// Run samples at once and then every interval until ctx ends, serving
// SampleNow requests in between; then it closes the sampler and returns the
// error from Close. It may be called once.
func (m *Monitor) Run(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return ErrMonitorRunning
	}
	defer close(m.done)

	var lastErr string
	sample := func(ctx context.Context) (Snapshot, error) {
		snap, err := m.sampler.Sample(ctx)
		if err != nil && ctx.Err() != nil {
			// Cancelled, not broken: nothing new to show or log.
			return snap, err
		}
		if snap.Time.IsZero() {
			snap.Time = time.Now()
		}
		if err != nil && snap.Problem == "" {
			snap.Problem = "Could not read the GPU: VRAM checks may be wrong"
		}
		// Log changes, not every failing sample: a lost GPU would
		// otherwise write a line every two seconds for hours.
		switch {
		case err != nil && err.Error() != lastErr:
			m.log.Warn("gpu sample failed", "err", err, "problem", snap.Problem)
			lastErr = err.Error()
		case err == nil && lastErr != "":
			m.log.Info("gpu sampling recovered", "source", snap.Source)
			lastErr = ""
		}
		m.mu.Lock()
		m.latest = snap
		m.mu.Unlock()
		if m.onSnapshot != nil {
			m.onSnapshot(snap)
		}
		return snap, err
	}

	if ctx.Err() == nil {
		_, _ = sample(ctx)
	}
	tick := time.NewTicker(m.interval)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			_, _ = sample(ctx)
		case req := <-m.reqs:
			snap, err := sample(req.ctx)
			req.reply <- sampleResult{snap, err}
		}
	}
	if err := m.sampler.Close(); err != nil {
		m.log.Warn("gpu sampler close failed", "err", err)
		return fmt.Errorf("close GPU sampler: %w", err)
	}
	return nil
}

// Latest returns the most recent sample; its Time is zero before the first.
func (m *Monitor) Latest() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.latest
}

// SampleNow takes a fresh sample on the monitor's goroutine and returns it,
// for decisions that must not use a sample two seconds old (admission). It
// waits for Run to start if it has not yet, and fails with
// ErrMonitorStopped once Run has returned.
func (m *Monitor) SampleNow(ctx context.Context) (Snapshot, error) {
	req := sampleRequest{ctx: ctx, reply: make(chan sampleResult, 1)}
	select {
	case m.reqs <- req:
	case <-m.done:
		return Snapshot{}, ErrMonitorStopped
	case <-ctx.Done():
		return Snapshot{}, fmt.Errorf("sample GPUs now: %w", ctx.Err())
	}
	select {
	case res := <-req.reply:
		return res.snap, res.err
	case <-ctx.Done():
		return Snapshot{}, fmt.Errorf("sample GPUs now: %w", ctx.Err())
	}
}
