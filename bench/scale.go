// scale.go: the scale figure — thousands of connected, heartbeating workers on one hub: offer
// latency and the hub's memory.

package main

import (
	"context"
	"fmt"
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
	_, h, err := startFigureHub(ctx, e, "scale")
	if err != nil {
		return res, err
	}
	defer h.stop()
	hc := h.client()
	n := e.size.scaleWorkers

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
	if err := waitConnected(ctx, h, n, 30*time.Second); err != nil {
		return res, err
	}
	// One full heartbeat round (plus a margin), so every session has its steady-state buffers.
	if err := sleepCtx(ctx, ws[0].heartbeat+time.Second); err != nil {
		return res, err
	}
	rss1, err := settledRSS(ctx, h.pid())
	if err != nil {
		return res, err
	}
	perConn := float64(rss1-rss0) / float64(n) / 1024

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
	res.detail("offer_ms", o)
	res.detail("heartbeat_ack_ms", hb)
	res.add(row{Figure: fmt.Sprintf("hub RSS per connected worker (%d heartbeating)", n), Key: "hub RSS per connected worker", Value: perConn, Unit: "KiB"})
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
