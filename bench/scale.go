// scale.go: the scale figure — thousands of connected, heartbeating workers on one hub: offer
// latency and the hub's memory.

package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"studioworker/hub"
)

// runScale: the studio-hub process with N simulated workers connected and heartbeating at the
// interval it asks for (5 s). The hub's RSS is read with every worker registered but none
// connected, and again with all connected for a full heartbeat round; the difference over N is the
// cost of a connection. Then jobs are submitted by 4 submitters for a while, each timed from its
// POST to the offer arriving at a simulated worker.
func runScale(ctx context.Context, e *env) (figureResult, error) {
	var res figureResult
	n := e.size.scaleWorkers
	// This process holds one socket per simulated worker; the hub raises its own limit (Go sets
	// the soft limit to the hard one at start) and caps its connections at hub.DefaultMaxConns.
	if err := raiseOpenFiles(uint64(n + 1024)); err != nil {
		return res, err
	}
	_, h, err := startFigureHub(ctx, e, "scale")
	if err != nil {
		return res, err
	}
	defer h.stop()
	hc := h.client()

	creds, err := registerMany(ctx, hc, n, 16)
	if err != nil {
		return res, err
	}
	rss0, err := settledRSS(ctx, h.pid())
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	ws, err := dialMany(ctx, h.URL(), creds, 32)
	if err != nil {
		return res, err
	}
	connectTime := time.Since(t0)
	sf := newSimFleet()
	sf.start(ws)
	defer sf.stop()
	if err := waitConnected(ctx, h, n, 30*time.Second+time.Duration(n)*time.Millisecond); err != nil {
		return res, err
	}
	// One full heartbeat round (plus a margin), so every session has its steady-state buffers.
	// The CPU both processes use in it is the cost of n heartbeating workers at idle: the hub's,
	// and this process's (the fleet's), which shares the machine's cores with it.
	idle := ws[0].heartbeat + time.Second
	cpu, err := sampleCPU(ctx, idle, h.pid(), os.Getpid())
	if err != nil {
		return res, err
	}
	rss1, err := settledRSS(ctx, h.pid())
	if err != nil {
		return res, err
	}
	perConn := float64(rss1-rss0) / float64(n) / 1024
	if prof, err := h.writeHeapProfile(ctx); err != nil {
		return res, err
	} else if prof != "" {
		e.log.Info("hub heap profile with every worker connected", "file", prof)
	}
	beats := float64(n) * idle.Seconds() / ws[0].heartbeat.Seconds()
	hubIdle, fleetIdle := cpu[0].Seconds()/idle.Seconds()*100, cpu[1].Seconds()/idle.Seconds()*100

	lat, err := offerLatencies(ctx, hc, sf, 4, e.size.scaleOffers)
	if err != nil {
		return res, err
	}
	m, err := h.metrics(ctx)
	if err != nil {
		return res, err
	}
	if got := int(m["studio_hub_workers_connected"]); got != n {
		return res, fmt.Errorf("%d of %d simulated workers still connected after the offers (fleet failures: %v)", got, n, sf.failureList())
	}
	o, hb := summarize(millis(lat)), summarize(millis(sf.heartbeatAcks()))
	res.detail("workers", n)
	res.detail("connect_all_s", connectTime.Seconds())
	res.detail("hub_rss_registered_mib", float64(rss0)/(1<<20))
	res.detail("hub_rss_connected_mib", float64(rss1)/(1<<20))
	res.detail("hub_cpu_idle_pct", hubIdle)
	res.detail("hub_cpu_per_heartbeat_us", cpu[0].Seconds()/beats*1e6)
	res.detail("fleet_cpu_idle_pct", fleetIdle)
	res.detail("fleet_cpu_per_heartbeat_us", cpu[1].Seconds()/beats*1e6)
	res.detail("offer_ms", o)
	res.detail("heartbeat_ack_ms", hb)
	res.add(row{Figure: fmt.Sprintf("hub RSS per connected worker (%d heartbeating)", n), Key: "hub RSS per connected worker", Value: perConn, Unit: "KiB"})
	res.add(row{Figure: fmt.Sprintf("hub RSS with %d connected", n), Key: "hub RSS connected", Value: float64(rss1) / (1 << 20), Unit: "MiB"}.withGoal("≤ 1 GiB", rss1 <= 1<<30))
	res.add(row{Figure: "hub CPU at idle, all heartbeating (% of one core)", Key: "hub CPU at idle", Value: hubIdle, Unit: "%"})
	res.add(row{Figure: "simulated fleet's CPU beside it (this process)", Key: "fleet CPU at idle", Value: fleetIdle, Unit: "%"})
	res.add(row{Figure: "offer latency under that load p50 (POST → offer at worker)", Value: o.P50, Unit: "ms"})
	res.add(row{Figure: "offer latency under that load p99", Value: o.P99, Unit: "ms"}.withGoal("< 50 ms", o.P99 < 50))
	res.add(row{Figure: "heartbeat → ack under that load p99", Value: hb.P99, Unit: "ms"})
	return res, nil
}

type credential struct{ id, token, name string }

func registerMany(ctx context.Context, hc *hub.Client, n, parallel int) ([]credential, error) {
	out := make([]credential, n)
	err := parallelDo(ctx, n, parallel, func(i int) error {
		name := fmt.Sprintf("sim-%d", i)
		reg, err := hc.Register(ctx, name, "any")
		if err != nil {
			return fmt.Errorf("register %s: %w", name, err)
		}
		out[i] = credential{reg.WorkerID, reg.AuthToken, name}
		return nil
	})
	return out, err
}

func dialMany(ctx context.Context, serverURL string, creds []credential, parallel int) ([]*simWorker, error) {
	out := make([]*simWorker, len(creds))
	err := parallelDo(ctx, len(creds), parallel, func(i int) error {
		w, err := dialSim(ctx, serverURL, creds[i].id, creds[i].token, creds[i].name)
		out[i] = w
		return err
	})
	if err != nil {
		for _, w := range out {
			if w != nil {
				w.ws.CloseNow()
			}
		}
		return nil, err
	}
	return out, nil
}

// parallelDo runs fn(0..n-1) on `parallel` goroutines and returns the first error.
func parallelDo(ctx context.Context, n, parallel int, fn func(i int) error) error {
	next := make(chan int)
	errs := make(chan error, parallel)
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for i := range n {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

// sampleCPU returns the CPU time each process (pids) uses over the next d.
func sampleCPU(ctx context.Context, d time.Duration, pids ...int) ([]time.Duration, error) {
	read := func() ([]time.Duration, error) {
		out := make([]time.Duration, len(pids))
		for i, pid := range pids {
			t, err := readSchedCPU(pid)
			if err != nil {
				return nil, err
			}
			out[i] = t
		}
		return out, nil
	}
	before, err := read()
	if err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, d); err != nil {
		return nil, err
	}
	after, err := read()
	if err != nil {
		return nil, err
	}
	for i := range after {
		after[i] -= before[i]
	}
	return after, nil
}

// waitConnected polls the hub's metrics until n workers are connected.
func waitConnected(ctx context.Context, h *hubProc, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		m, err := h.metrics(ctx)
		if err == nil && int(m["studio_hub_workers_connected"]) >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d workers connected after %v (%v)", int(m["studio_hub_workers_connected"]), n, timeout, err)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// offerLatencies submits jobs from `parallel` submitters for d, each one at a time, and times
// each from its POST to its offer's arrival.
func offerLatencies(ctx context.Context, hc *hub.Client, sf *simFleet, parallel int, d time.Duration) ([]time.Duration, error) {
	end := time.Now().Add(d)
	var mu sync.Mutex
	var out []time.Duration
	err := parallelDo(ctx, parallel, parallel, func(int) error {
		for time.Now().Before(end) {
			t0 := time.Now()
			id, err := hc.Submit(ctx, zeroWorkJob())
			if err != nil {
				return err
			}
			at, err := sf.waitOffered(ctx, id, 10*time.Second)
			if err != nil {
				return err
			}
			mu.Lock()
			if len(out) < maxSimRecords {
				out = append(out, at.Sub(t0))
			}
			mu.Unlock()
		}
		return nil
	})
	return out, err
}
