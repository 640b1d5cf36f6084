// hostile.go: the hostile-connections figure (issue 17): offer latency for one well-behaved
// worker while 10,000 hostile idle connections are open against the hub process, beside the same
// figure with none, both measured on the same hub in the same run. It must not know the hub's
// internals: it sees sockets, the job API and a simulated worker's frames.

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"studioworker/hub"
	"studioworker/protocol"
)

// runHostile: one simulated worker (1 slot, every offer answered at once) on a fresh hub; jobs
// are submitted one at a time, each timed from its POST to its offer at the worker, the next
// posted once the previous one's result is acknowledged. First with no other connection, then
// with N idle keep-alive connections open (each sent one GET /healthz and then nothing, as the
// attack in the issue did), on the same hub. They are opened and the figure measured within the
// hub's default --idle-timeout (60 s), and the figure fails unless all are still open at its end.
func runHostile(ctx context.Context, e *env) (figureResult, error) {
	var res figureResult
	n := e.size.hostileConns
	if err := raiseOpenFiles(uint64(n + 1024)); err != nil {
		return res, err
	}
	_, h, err := startFigureHub(ctx, e, "hostile")
	if err != nil {
		return res, err
	}
	defer h.stop()
	hc := h.client()
	creds, err := registerMany(ctx, hc, 1, 1)
	if err != nil {
		return res, err
	}
	ws, err := dialMany(ctx, h.URL(), creds, 1)
	if err != nil {
		return res, err
	}
	sf := newSimFleet()
	sf.start(ws)
	defer sf.stop()
	if err := waitConnected(ctx, h, 1, 30*time.Second); err != nil {
		return res, err
	}

	none, err := soloOfferLatencies(ctx, hc, sf, e.size.hostileOffers)
	if err != nil {
		return res, fmt.Errorf("with no idle connections: %w", err)
	}
	rss0, err := settledRSS(ctx, h.pid())
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	conns, err := openIdleMany(ctx, h.addr, n, 64)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if err != nil {
		return res, err
	}
	opened := time.Since(t0)
	with, err := soloOfferLatencies(ctx, hc, sf, e.size.hostileOffers)
	if err != nil {
		return res, fmt.Errorf("with %d idle connections open: %w", n, err)
	}
	measured := time.Since(t0)
	rss1, err := settledRSS(ctx, h.pid())
	if err != nil {
		return res, err
	}
	open := stillOpen(conns)
	if open != n {
		return res, fmt.Errorf("only %d of the %d idle connections were still open after the measurement (%v after the first was opened): the figure would not be what it says",
			open, n, measured)
	}

	a, b := summarize(millis(none)), summarize(millis(with))
	res.detail("idle_connections", n)
	res.detail("open_all_s", opened.Seconds())
	res.detail("still_open_at_end", open)
	res.detail("hub_rss_before_mib", float64(rss0)/(1<<20))
	res.detail("hub_rss_with_idle_mib", float64(rss1)/(1<<20))
	res.detail("offer_ms_none", a)
	res.detail("offer_ms_idle", b)
	res.add(row{Figure: fmt.Sprintf("offer latency p50, 1 worker, %d hostile idle connections open", n), Key: "offer latency p50 with them open", Value: b.P50, Unit: "ms"}.
		withBaseline("none open p50", a.P50))
	res.add(row{Figure: fmt.Sprintf("offer latency p99, 1 worker, %d hostile idle connections open", n), Key: "offer latency p99 with them open", Value: b.P99, Unit: "ms"}.
		withBaseline("none open p99", a.P99))
	res.add(row{Figure: fmt.Sprintf("↳ hub RSS with the %d idle connections open, per connection", n), Key: "hub RSS per idle connection", Value: float64(rss1-rss0) / float64(n) / 1024, Unit: "KiB"})
	return res, nil
}

// soloOfferLatencies submits jobs one at a time for d, each timed from its POST to its offer's
// arrival; the next is posted once the previous result is acknowledged, so a job never waits for
// the worker's one slot and the figure is the hub's path alone.
func soloOfferLatencies(ctx context.Context, hc *hub.Client, sf *simFleet, d time.Duration) ([]time.Duration, error) {
	end := time.Now().Add(d)
	var out []time.Duration
	for time.Now().Before(end) && len(out) < maxSimRecords {
		t0 := time.Now()
		id, err := hc.Submit(ctx, zeroWorkJob())
		if err != nil {
			return nil, err
		}
		at, err := sf.waitOffered(ctx, id, 10*time.Second)
		if err != nil {
			return nil, err
		}
		out = append(out, at.Sub(t0))
		if _, err := sf.waitAcked(ctx, id, 10*time.Second); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// openIdleMany opens n keep-alive connections to addr, `parallel` at a time, each answered one
// GET /healthz and then left idle. The slice holds what was opened, also on error.
func openIdleMany(ctx context.Context, addr string, n, parallel int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	var mu sync.Mutex
	err := parallelDo(ctx, n, parallel, func(i int) error {
		c, err := openIdle(addr)
		if err != nil {
			return fmt.Errorf("idle connection %d: %w", i, err)
		}
		mu.Lock()
		conns[i] = c
		mu.Unlock()
		return nil
	})
	return conns, err
}

func openIdle(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", protocol.PathHealthz, addr); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// stillOpen counts the connections the hub has not closed: a read that times out found nothing
// to read, not even the end of the stream.
func stillOpen(conns []net.Conn) int {
	var mu sync.Mutex
	open := 0
	_ = parallelDo(context.Background(), len(conns), 64, func(i int) error {
		c := conns[i]
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			mu.Lock()
			open++
			mu.Unlock()
		}
		return nil
	})
	return open
}
