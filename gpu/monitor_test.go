package gpu

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// scriptedSampler is a fake GPU (there is none here): it plays back a
// script of snapshots, repeating the last, and records misuse that a real
// NVML sampler would not survive: overlapping calls and use after Close.
type scriptedSampler struct {
	mu     sync.Mutex
	script []scriptStep
	calls  int

	inFlight   atomic.Int32
	overlapped atomic.Bool
	afterClose atomic.Bool
	closed     atomic.Int32
	closeErr   error
}

type scriptStep struct {
	snap Snapshot
	err  error
}

func (s *scriptedSampler) Sample(ctx context.Context) (Snapshot, error) {
	if s.inFlight.Add(1) > 1 {
		s.overlapped.Store(true)
	}
	defer s.inFlight.Add(-1)
	if s.closed.Load() > 0 {
		s.afterClose.Store(true)
	}
	if err := ctx.Err(); err != nil {
		return Snapshot{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	step := s.script[min(s.calls, len(s.script)-1)]
	s.calls++
	snap := step.snap
	snap.Source = "scripted"
	// Stamp each sample so callers can tell fresh ones apart.
	snap.Time = time.Unix(int64(s.calls), 0)
	return snap, step.err
}

func (s *scriptedSampler) Close() error {
	s.closed.Add(1)
	return s.closeErr
}

func gpuWith(freeMB int64, procs ...Process) Snapshot {
	return Snapshot{Devices: []Device{{Index: 0, Name: "Scripted GPU", TotalMB: 8192, FreeMB: freeMB, UsedMB: 8192 - freeMB, Processes: procs}}}
}

// collect returns an OnSnapshot that never blocks the monitor and a channel
// of what it saw.
func collect() (func(Snapshot), <-chan Snapshot) {
	ch := make(chan Snapshot, 1024)
	return func(s Snapshot) {
		select {
		case ch <- s:
		default:
		}
	}, ch
}

func next(t *testing.T, ch <-chan Snapshot) Snapshot {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no snapshot within 5s")
		return Snapshot{}
	}
}

// runningMonitor is a Monitor's Run in a goroutine; done closes when Run
// returns, after err is set.
type runningMonitor struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func startMonitor(t *testing.T, m *Monitor) *runningMonitor {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningMonitor{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = m.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of cancel")
		}
	})
	return r
}

// stop cancels Run and returns its error.
func (r *runningMonitor) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of cancel")
		return nil
	}
}

func TestMonitorFollowsTheGPUAndStops(t *testing.T) {
	game := Process{PID: 77, Name: "game.exe", UsedMB: 4096, Graphics: true}
	s := &scriptedSampler{script: []scriptStep{
		{snap: gpuWith(8000)},
		{snap: gpuWith(3000, game)},
		{snap: gpuWith(7000)},
	}}
	onSnap, seen := collect()
	m := NewMonitor(s, time.Millisecond, nil, MonitorOptions{OnSnapshot: onSnap})
	if !m.Latest().Time.IsZero() {
		t.Fatal("Latest before Run should be the zero snapshot")
	}
	run := startMonitor(t, m)

	for i, want := range []int64{8000, 3000, 7000, 7000} {
		got := next(t, seen)
		if f := got.Devices[0].FreeMB; f != want {
			t.Fatalf("snapshot %d: free %d MB, want %d", i, f, want)
		}
		if i == 1 && (len(got.Devices[0].Processes) != 1 || got.Devices[0].Processes[0].Name != "game.exe") {
			t.Errorf("snapshot 1 processes = %+v, want game.exe", got.Devices[0].Processes)
		}
	}
	if l := m.Latest(); l.Source != "scripted" || l.Devices[0].FreeMB != 7000 {
		t.Errorf("Latest = %+v, want the last scripted state", l)
	}

	if err := run.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := s.closed.Load(); n != 1 {
		t.Errorf("sampler closed %d times, want 1", n)
	}
	if s.afterClose.Load() {
		t.Error("sampler used after Close")
	}
	if _, err := m.SampleNow(context.Background()); !errors.Is(err, ErrMonitorStopped) {
		t.Errorf("SampleNow after Run: err = %v, want ErrMonitorStopped", err)
	}
	if err := m.Run(context.Background()); !errors.Is(err, ErrMonitorRunning) {
		t.Errorf("second Run: err = %v, want ErrMonitorRunning", err)
	}
}

// SampleNow from many goroutines while Run ticks fast: every caller gets
// its own fresh sample, and the sampler is never entered twice at once.
func TestMonitorSampleNowIsSingleOwner(t *testing.T) {
	s := &scriptedSampler{script: []scriptStep{{snap: gpuWith(5000)}}}
	m := NewMonitor(s, time.Millisecond, nil)
	startMonitor(t, m)

	const callers, each = 8, 25
	var (
		mu    sync.Mutex
		stamp = map[int64]bool{}
		wg    sync.WaitGroup
		errs  = make(chan error, callers*each)
	)
	for range callers {
		wg.Go(func() {
			for range each {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				snap, err := m.SampleNow(ctx)
				cancel()
				if err != nil {
					errs <- err
					continue
				}
				mu.Lock()
				if stamp[snap.Time.Unix()] {
					errs <- errors.New("two SampleNow calls got the same sample")
				}
				stamp[snap.Time.Unix()] = true
				mu.Unlock()
				_ = m.Latest()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s.overlapped.Load() {
		t.Error("the sampler was called from two goroutines at once")
	}
}

func TestMonitorSampleNowWaitsForRun(t *testing.T) {
	s := &scriptedSampler{script: []scriptStep{{snap: gpuWith(1234)}}}
	m := NewMonitor(s, time.Hour, nil)

	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		snap, err := m.SampleNow(ctx)
		if err == nil && snap.Devices[0].FreeMB != 1234 {
			err = errors.New("wrong snapshot")
		}
		got <- err
	}()
	startMonitor(t, m)
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("SampleNow: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SampleNow did not return once Run started")
	}
}

func TestMonitorSampleNowGivesUpWithItsContext(t *testing.T) {
	m := NewMonitor(&scriptedSampler{script: []scriptStep{{snap: gpuWith(1)}}}, 0, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := m.SampleNow(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded (Run never started)", err)
	}
}

// lockedBuffer lets the monitor's goroutine log while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestMonitorFailuresAreShownAndLoggedOnce(t *testing.T) {
	broken := errors.New("GPU 0: GetMemoryInfo: ERROR_GPU_IS_LOST")
	s := &scriptedSampler{script: []scriptStep{
		{snap: gpuWith(100), err: broken},
		{snap: gpuWith(100), err: broken},
		{snap: gpuWith(100), err: broken},
		{snap: gpuWith(6000)},
	}}
	var logs lockedBuffer
	onSnap, seen := collect()
	m := NewMonitor(s, time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)), MonitorOptions{OnSnapshot: onSnap})
	run := startMonitor(t, m)

	for i := range 3 {
		if p := next(t, seen).Problem; p == "" {
			t.Errorf("failed sample %d has no Problem for the creator", i)
		}
	}
	if p := next(t, seen).Problem; p != "" {
		t.Errorf("recovered sample has Problem %q", p)
	}
	if err := run.stop(t); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if n := strings.Count(out, "gpu sample failed"); n != 1 {
		t.Errorf("logged the same failure %d times, want once:\n%s", n, out)
	}
	if !strings.Contains(out, "gpu sampling recovered") {
		t.Errorf("recovery not logged:\n%s", out)
	}
}

func TestMonitorReturnsCloseError(t *testing.T) {
	s := &scriptedSampler{script: []scriptStep{{snap: gpuWith(1)}}, closeErr: errors.New("shutdown failed")}
	m := NewMonitor(s, time.Hour, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Run(ctx); err == nil || !strings.Contains(err.Error(), "shutdown failed") {
		t.Fatalf("Run err = %v, want the Close error", err)
	}
	if s.calls != 0 {
		t.Errorf("sampled %d times with a cancelled context", s.calls)
	}
}

// The demo path: change a Simulated GPU and see the change through
// SampleNow at once, without waiting for the next tick.
func TestMonitorWithSimulatedGPU(t *testing.T) {
	sim := NewSimulated("Demo RTX", 24576)
	m := NewMonitor(sim, time.Hour, nil)
	startMonitor(t, m)

	sim.SetUsedMB(20480)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap, err := m.SampleNow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Simulated || snap.Devices[0].FreeMB != 4096 {
		t.Fatalf("snapshot = %+v, want simulated with 4096 MB free", snap)
	}
	if m.Latest().Devices[0].FreeMB != 4096 {
		t.Error("Latest does not reflect the forced sample")
	}
}
