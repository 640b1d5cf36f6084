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
	pid := wp.pid()
	cpu0, err := readCPU(pid)
	if err != nil {
		return res, err
	}
	sched0, err := readSchedCPU(pid)
	if err != nil {
		return res, err
	}
	wake0, err := readWakeups(pid)
	if err != nil {
		return res, err
	}
	up0, down0, t0 := t.up.Load(), t.down.Load(), time.Now()
	sampler := startRSSSampler(ctx, pid, time.Second)
	if err := sleepCtx(ctx, e.size.idle); err != nil {
		sampler.stop()
		return res, err
	}
	cpu1, err := readCPU(pid)
	if err != nil {
		sampler.stop()
		return res, err
	}
	sched1, err := readSchedCPU(pid)
	if err != nil {
		sampler.stop()
		return res, err
	}
	wake1, err := readWakeups(pid)
	if err != nil {
		sampler.stop()
		return res, err
	}
	up1, down1, window := t.up.Load(), t.down.Load(), time.Since(t0)
	samples, err := sampler.stop()
	if err != nil {
		return res, err
	}
	rssEnd, err := readRSS(pid)
	if err != nil {
		return res, err
	}
	peak, _ := maxRSSBetween(samples, t0, time.Now())
	peak = max(peak, rssEnd)

	// The scheduler's exact count is the figure; utime+stime (10 ms ticks) is kept beside it.
	cpuPct := 100 * (sched1 - sched0).Seconds() / window.Seconds()
	perMin := func(n int64) float64 { return float64(n) / window.Minutes() }
	res.detail("window_s", window.Seconds())
	res.detail("cpu_seconds_schedstat", (sched1 - sched0).Seconds())
	res.detail("cpu_seconds_utime_stime", (cpu1 - cpu0).Seconds())
	res.detail("context_switches_per_s", float64(wake1-wake0)/window.Seconds())
	res.detail("load_avg_at_end", loadAvg()) // the machine's load decides what a wakeup costs
	res.detail("rss_end_mib", float64(rssEnd)/(1<<20))
	res.detail("rss_peak_mib", float64(peak)/(1<<20))
	res.detail("bytes_sent", up1-up0)
	res.detail("bytes_received", down1-down0)
	label := fmt.Sprintf("idle worker (%.0f s)", window.Seconds())
	res.add(row{Figure: label + ": CPU", Value: cpuPct, Unit: "% of a core"}.withGoal("≤ 0.2 %", cpuPct <= 0.2))
	res.add(row{Figure: label + ": RSS, highest sample", Value: float64(peak) / (1 << 20), Unit: "MiB"}.withGoal("≤ 30 MiB", float64(peak)/(1<<20) <= 30))
	res.add(row{Figure: label + ": bytes sent", Value: perMin(up1 - up0), Unit: "B/min"})
	res.add(row{Figure: label + ": bytes received", Value: perMin(down1 - down0), Unit: "B/min"})
	return res, nil
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
