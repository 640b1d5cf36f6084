// dispatch.go: the dispatch figure — POST /v1/jobs to the engine's Run, against a bare fsync and
// a WebSocket echo measured in the same run. It must not know how the hub commits, only where its
// database lies.

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/coder/websocket"

	"studioworker/hub"
	"studioworker/protocol"
)

// zeroWorkJob is a job the synthetic engine answers at once: no duration_ms, a short prompt.
func zeroWorkJob() protocol.JobRequest {
	return protocol.JobRequest{Kind: protocol.KindLLM, Model: "synthetic", Input: json.RawMessage(`{"prompt":"bench"}`)}
}

// sampleOffer is an offer frame as the hub sends it for zeroWorkJob: the echo baseline sends
// frames of the same size.
func sampleOffer() ([]byte, error) {
	return protocol.Encode(protocol.Offer{Claim: protocol.Claim{
		JobID: "j0123456789abcdef01234567", Kind: protocol.KindLLM, Model: "synthetic",
		Input: json.RawMessage(`{"prompt":"bench"}`), ExpiresAt: time.Now().Add(10 * time.Second).UTC(),
	}})
}

// echoRoundTrips is the baseline of the dispatch figure: n text frames of payload's size sent to a
// coder/websocket echo server on loopback, each timed until its echo is read.
func echoRoundTrips(ctx context.Context, n int, payload []byte) ([]time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	var handlers sync.WaitGroup
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlers.Add(1)
		defer handlers.Done()
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(protocol.MaxFrameBytes)
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, b); err != nil {
				return
			}
		}
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		_ = srv.Close()
		<-served
		handlers.Wait()
	}()

	c, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String(), nil)
	if err != nil {
		return nil, fmt.Errorf("dial the echo server: %w", err)
	}
	defer c.CloseNow()
	c.SetReadLimit(protocol.MaxFrameBytes)
	const warmup = 50
	out := make([]time.Duration, 0, n)
	for i := range warmup + n {
		t0 := time.Now()
		if err := c.Write(ctx, websocket.MessageText, payload); err != nil {
			return nil, fmt.Errorf("echo write: %w", err)
		}
		if _, _, err := c.Read(ctx); err != nil {
			return nil, fmt.Errorf("echo read: %w", err)
		}
		if i >= warmup {
			out = append(out, time.Since(t0))
		}
	}
	return out, c.Close(websocket.StatusNormalClosure, "")
}

// fsyncPage is what a bare fsync sample writes first: one page of SQLite's default size.
const fsyncPage = 4096

// bareFsyncs is the dispatch figure's floor: n samples, each one page written over a file as
// large as the hub's database and its WAL are now, in the same folder (so the same file system and
// disk), and then fsync'd. A commit under synchronous=FULL cannot be faster than this; the file is
// overwritten, not grown, as SQLite overwrites its WAL after a checkpoint.
func bareFsyncs(dbPath string, n int) ([]time.Duration, error) {
	var size int64
	for _, p := range []string{dbPath, dbPath + "-wal"} {
		if st, err := os.Stat(p); err == nil {
			size += st.Size()
		}
	}
	pages := max(1, size/fsyncPage)
	f, err := os.CreateTemp(filepath.Dir(dbPath), "bare-fsync-*")
	if err != nil {
		return nil, fmt.Errorf("bare fsync: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(make([]byte, pages*fsyncPage)); err != nil {
		return nil, fmt.Errorf("bare fsync: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("bare fsync: %w", err)
	}
	page := make([]byte, fsyncPage)
	out := make([]time.Duration, 0, n)
	for i := range n {
		page[0] = byte(i) // not the bytes already there, so the page is dirty for certain
		t0 := time.Now()
		if _, err := f.WriteAt(page, int64(i)%pages*fsyncPage); err != nil {
			return nil, fmt.Errorf("bare fsync: %w", err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("bare fsync: %w", err)
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}

// runDispatch: zero-work jobs submitted one at a time to the studio-hub process, each timed from
// the moment its POST /v1/jobs is sent to the moment app.Worker hands it to the engine ("job
// started", logged as the session calls Run). Each job is completed at the hub before the next
// is submitted, so a sample is one job's dispatch, not a queue.
func runDispatch(ctx context.Context, e *env) (figureResult, error) {
	var res figureResult
	payload, err := sampleOffer()
	if err != nil {
		return res, err
	}
	echo, err := echoRoundTrips(ctx, e.size.echoRounds, payload)
	if err != nil {
		return res, err
	}
	dir, h, err := startFigureHub(ctx, e, "dispatch")
	if err != nil {
		return res, err
	}
	defer h.stop()
	hc := h.client()
	fl, err := startFleet(ctx, filepath.Join(dir, "workers"), hc, h.URL(), 1, 8)
	if err != nil {
		return res, err
	}
	defer fl.stop()

	const warmup = 20
	n := e.size.dispatchJobs
	// The disk's fsync time drifts over seconds on a shared machine: half the floor's samples are
	// taken before the jobs and half after, against the database as it is then.
	dbPath := filepath.Join(dir, "hub", "hub.db")
	fsyncs, err := bareFsyncs(dbPath, n/2)
	if err != nil {
		return res, err
	}
	lat := make([]time.Duration, 0, n)
	post := make([]time.Duration, 0, n)
	after := make([]time.Duration, 0, n) // POST answered → Run: negative when the offer beat the answer
	for i := range warmup + n {
		t0 := time.Now()
		id, err := hc.Submit(ctx, zeroWorkJob())
		if err != nil {
			return res, fmt.Errorf("submit: %w", err)
		}
		t1 := time.Now()
		started, err := fl.probe.waitStarted(ctx, id, 10*time.Second)
		if err != nil {
			return res, err
		}
		if i >= warmup {
			lat = append(lat, started.Sub(t0))
			post = append(post, t1.Sub(t0))
			after = append(after, started.Sub(t1))
		}
		if _, err := waitJobDone(ctx, hc, id, 10*time.Second); err != nil {
			return res, err
		}
	}
	more, err := bareFsyncs(dbPath, n-n/2)
	if err != nil {
		return res, err
	}
	fsyncs = append(fsyncs, more...)
	d, b, p, a := summarize(millis(lat)), summarize(millis(echo)), summarize(millis(post)), summarize(millis(after))
	f := summarize(millis(fsyncs))
	res.detail("jobs", n)
	res.detail("dispatch_ms", d)
	res.detail("echo_round_trip_ms", b)
	res.detail("bare_fsync_ms", f)
	res.detail("submit_post_round_trip_ms", p)
	res.detail("post_answered_to_run_ms", a)
	res.detail("echo_frame_bytes", len(payload))
	const base = "WS echo"
	res.add(row{Figure: "dispatch latency p50 (POST /v1/jobs → engine Run)", Value: d.P50, Unit: "ms"}.withBaseline(base+" p50", b.P50))
	// The goal is against the physical limit: a job the POST answered is durable, so dispatch is at
	// least one fsync (two at its tail, when the POST waits behind a commit already syncing) plus
	// getting the offer to the worker, which is what the echo measures.
	p99 := row{Figure: "dispatch latency p99", Value: d.P99, Unit: "ms"}.withBaseline("bare fsync p99 + "+base+" p99", f.P99+b.P99)
	res.add(p99.withGoal("≤ 2× baseline", p99.Ratio != nil && *p99.Ratio <= 2))
	res.add(row{Figure: "↳ bare fsync p50 (a page, a file the database's size, same folder)", Value: f.P50, Unit: "ms"})
	res.add(row{Figure: "↳ bare fsync p99", Value: f.P99, Unit: "ms"})
	res.add(row{Figure: "↳ WS echo p99", Value: b.P99, Unit: "ms"})
	res.add(row{Figure: "dispatch latency max", Value: d.Max, Unit: "ms"}.withBaseline(base+" max", b.Max))
	res.add(row{Figure: "↳ of which POST /v1/jobs answered (job committed), p99", Value: p.P99, Unit: "ms"})
	res.add(row{Figure: "↳ of which POST answered → engine Run, p99", Value: a.P99, Unit: "ms"})
	return res, nil
}

// waitJobDone polls the hub until the job's status is final and returns its last answer, which
// carries a JSON result. It polls tightly: a zero-work job is done a few milliseconds after it
// starts, and a slower poll would only stretch the figure's wall time (the sample is already
// taken).
func waitJobDone(ctx context.Context, hc *hub.Client, id string, timeout time.Duration) (protocol.JobInfo, error) {
	deadline := time.Now().Add(timeout)
	for {
		info, err := hc.Job(ctx, id)
		if err != nil {
			return info, fmt.Errorf("job %s: %w", id, err)
		}
		if info.Status.Done() {
			if info.Status != protocol.JobCompleted {
				return info, fmt.Errorf("job %s ended %s: %s", id, info.Status, info.Error)
			}
			return info, nil
		}
		if time.Now().After(deadline) {
			return info, fmt.Errorf("job %s still %s after %v", id, info.Status, timeout)
		}
		select {
		case <-ctx.Done():
			return info, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}
