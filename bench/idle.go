// idle.go: the idle figure — a headless worker connected and doing nothing: CPU, RSS, bytes.

package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// runIdle: a headless worker process connected to the hub through a counting tap, left idle.
// After it connects and settles, the window measures its CPU time (/proc/PID/task/*/schedstat,
// with /proc/PID/stat beside it), its RSS, and the bytes it sent and received (the tap counts them). The worker runs with its
// defaults: heartbeat every 5 s, ping every 15 s, GPU sampled every 2 s.
func runIdle(ctx context.Context, e *env) (figureResult, error) {
	var res figureResult
	dir, h, err := startFigureHub(ctx, e, "idle")
	if err != nil {
		return res, err
	}
	defer h.stop()
	t, err := newTap(h.addr, nil)
	if err != nil {
		return res, err
	}
	defer t.Close()
	wp, err := startWorkerProc(ctx, e, filepath.Join(dir, "worker"), h.client(), t.URL(), "bench-idle")
	if err != nil {
		return res, err
	}
	defer wp.stop()

	// Settle: the start-up (config, first GPU samples, hello, the first log batch) is not idling.
	if err := sleepCtx(ctx, 3*time.Second); err != nil {
		return res, err
	}
	up0, down0 := t.up.Load(), t.down.Load()
	m, err := measureIdle(ctx, wp.pid(), e.size.idle)
	if err != nil {
		return res, err
	}
	up1, down1, window := t.up.Load(), t.down.Load(), m.window

	cpuPct := m.cpuPct()
	peak := m.rssPeak
	perMin := func(n int64) float64 { return float64(n) / window.Minutes() }
	m.details(&res, "")
	res.detail("load_avg_at_end", loadAvg()) // the machine's load decides what a wakeup costs
	res.detail("bytes_sent", up1-up0)
	res.detail("bytes_received", down1-down0)
	label := fmt.Sprintf("idle worker (%.0f s)", window.Seconds())
	res.add(row{Figure: label + ": CPU", Key: "CPU", Value: cpuPct, Unit: "% of a core"}.withGoal("≤ 0.2 %", cpuPct <= 0.2))
	res.add(row{Figure: label + ": RSS, highest sample", Key: "RSS, highest sample", Value: float64(peak) / (1 << 20), Unit: "MiB"}.withGoal("≤ 30 MiB", float64(peak)/(1<<20) <= 30))
	res.add(row{Figure: label + ": bytes sent", Key: "bytes sent", Value: perMin(up1 - up0), Unit: "B/min"})
	res.add(row{Figure: label + ": bytes received", Key: "bytes received", Value: perMin(down1 - down0), Unit: "B/min"})
	return res, nil
}

// idleMeasure is what one idle window saw of a process.
type idleMeasure struct {
	window   time.Duration
	sched    time.Duration // CPU time in the window, the scheduler's exact count
	stat     time.Duration // the same from utime+stime (10 ms ticks), kept beside it
	switches int64         // context switches in the window
	rssEnd   int64
	rssPeak  int64   // the highest sample in the window, or rssEnd if higher
	rssMean  float64 // the mean of the samples in the window
}

// cpuPct is the CPU used in the window, in % of one core.
func (m idleMeasure) cpuPct() float64 { return 100 * m.sched.Seconds() / m.window.Seconds() }

// details records m under the figure's details, each key prefixed with prefix.
func (m idleMeasure) details(res *figureResult, prefix string) {
	res.detail(prefix+"window_s", m.window.Seconds())
	res.detail(prefix+"cpu_seconds_schedstat", m.sched.Seconds())
	res.detail(prefix+"cpu_seconds_utime_stime", m.stat.Seconds())
	res.detail(prefix+"context_switches_per_s", float64(m.switches)/m.window.Seconds())
	res.detail(prefix+"rss_end_mib", float64(m.rssEnd)/(1<<20))
	res.detail(prefix+"rss_peak_mib", float64(m.rssPeak)/(1<<20))
	res.detail(prefix+"rss_mean_mib", m.rssMean/(1<<20))
}

// measureIdle watches process pid for d: its CPU time (/proc/PID/task/*/schedstat, with
// /proc/PID/stat beside it), its context switches, and its RSS sampled every second.
func measureIdle(ctx context.Context, pid int, d time.Duration) (idleMeasure, error) {
	var m idleMeasure
	cpu0, err := readCPU(pid)
	if err != nil {
		return m, err
	}
	sched0, err := readSchedCPU(pid)
	if err != nil {
		return m, err
	}
	wake0, err := readWakeups(pid)
	if err != nil {
		return m, err
	}
	t0 := time.Now()
	sampler := startRSSSampler(ctx, pid, time.Second)
	if err := sleepCtx(ctx, d); err != nil {
		sampler.stop()
		return m, err
	}
	cpu1, err := readCPU(pid)
	if err != nil {
		sampler.stop()
		return m, err
	}
	sched1, err := readSchedCPU(pid)
	if err != nil {
		sampler.stop()
		return m, err
	}
	wake1, err := readWakeups(pid)
	if err != nil {
		sampler.stop()
		return m, err
	}
	m.window = time.Since(t0)
	samples, err := sampler.stop()
	if err != nil {
		return m, err
	}
	if m.rssEnd, err = readRSS(pid); err != nil {
		return m, err
	}
	end := time.Now()
	peak, _ := maxRSSBetween(samples, t0, end)
	m.rssPeak = max(peak, m.rssEnd)
	m.rssMean = meanRSSBetween(samples, t0, end)
	m.sched, m.stat, m.switches = sched1-sched0, cpu1-cpu0, wake1-wake0
	return m, nil
}

// sleepCtx waits d unless ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
