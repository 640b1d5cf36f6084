// upload.go: the upload figure — a large result's upload through the worker against a bare POST
// of the same bytes in the same run.

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"studioworker/protocol"
)

// baselineUploads is the bare baseline of the upload figure: a Go handler that streams a POST
// body to a file and fsyncs it (the hub fsyncs a result before it answers, so the baseline does
// the same durable work, without multipart, hashing, auth or a database). Its files are kept
// until the figure ends, like the hub's: on a VM, writing into page cache that was never used
// before costs several times more than reusing freed pages, and a baseline that deleted its file
// each round would be measured on warm pages while the hub is not.
type baselineUploads struct {
	dir    string
	srv    *http.Server
	ln     net.Listener
	served chan error
}

func startBaselineUploads(dir string) (*baselineUploads, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &baselineUploads{dir: dir, ln: ln, served: make(chan error, 1)}
	b.srv = &http.Server{Handler: http.HandlerFunc(b.handle)}
	go func() { b.served <- b.srv.Serve(ln) }()
	return b, nil
}

func (b *baselineUploads) handle(w http.ResponseWriter, r *http.Request) {
	f, err := os.CreateTemp(b.dir, "upload-*")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_, err = io.Copy(f, r.Body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// post sends the file and returns how long the request took, from the first byte sent to the answer.
func (b *baselineUploads) post(ctx context.Context, client *http.Client, path string) (time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+b.ln.Addr().String()+"/upload", f)
	if err != nil {
		return 0, err
	}
	req.ContentLength = st.Size()
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("baseline upload: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(t0)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("baseline upload: %s", resp.Status)
	}
	return d, nil
}

func (b *baselineUploads) close() {
	_ = b.srv.Close()
	<-b.served
}

// runUpload: an image job whose synthetic result is padded to the upload size runs on a headless
// worker process. The upload is timed from the moment the engine returned (the session's own
// start of the run plus the run's duration, both from its log) to "result uploaded" (the hub
// answered 200: the file is in its data folder, fsynced and committed); it includes the worker's
// sha256 of the file and the move into its outbox. Meanwhile the worker's RSS is sampled every
// 50 ms. The baseline POSTs the same bytes (the hub's stored copy) to a bare handler.
func runUpload(ctx context.Context, e *env) (figureResult, error) {
	var res figureResult
	dir, h, err := startFigureHub(ctx, e, "upload")
	if err != nil {
		return res, err
	}
	defer h.stop()
	hc := h.client()
	base, err := startBaselineUploads(filepath.Join(dir, "baseline"))
	if err != nil {
		return res, err
	}
	defer base.close()
	wp, err := startWorkerProc(ctx, e, filepath.Join(dir, "worker"), hc, h.URL(), "bench-upload")
	if err != nil {
		return res, err
	}
	defer wp.stop()

	input, err := json.Marshal(map[string]any{"prompt": "bench upload", "width": 64, "height": 64, "pad_bytes": e.size.uploadBytes})
	if err != nil {
		return res, err
	}
	req := protocol.JobRequest{Kind: protocol.KindImage, Model: "synthetic", Input: input}
	var upDur, hashDur, baseDur []time.Duration
	var growth, jobGrowth, before []float64
	var size int64
	for round := range e.size.uploadRounds {
		// The RSS before the job is the floor the growth is measured from: the lowest of a few
		// samples, so a collection that has not run yet does not hide growth.
		rss0, err := settledRSS(ctx, wp.pid())
		if err != nil {
			return res, err
		}
		sampler := startRSSSampler(ctx, wp.pid(), 50*time.Millisecond)
		t0 := time.Now()
		id, err := hc.Submit(ctx, req)
		if err != nil {
			sampler.stop()
			return res, err
		}
		up, err := wp.probe.waitUploaded(ctx, id, 5*time.Minute)
		samples, serr := sampler.stop()
		if err != nil {
			return res, fmt.Errorf("round %d: %w; worker's last lines:\n%s", round, err, wp.lastLines())
		}
		if serr != nil {
			return res, serr
		}
		engEnd, ok := wp.probe.engineEnded(id)
		if !ok {
			return res, fmt.Errorf("round %d: no %q and %q lines for job %s", round, msgJobStarted, msgJobDone, id)
		}
		peak, ok1 := maxRSSBetween(samples, engEnd, up.at)
		jobPeak, ok2 := maxRSSBetween(samples, t0, up.at)
		if !ok1 || !ok2 {
			return res, fmt.Errorf("round %d: no RSS sample during the upload", round)
		}
		size = up.bytes
		upDur = append(upDur, up.at.Sub(engEnd))
		// "job done" is logged once the result is hashed and moved into the outbox.
		if done, ok := wp.probe.endedAt(id); ok {
			hashDur = append(hashDur, done.Sub(engEnd))
		}
		growth = append(growth, float64(peak-rss0)/(1<<20))
		jobGrowth = append(jobGrowth, float64(jobPeak-rss0)/(1<<20))
		before = append(before, float64(rss0)/(1<<20))

		stored, err := filepath.Glob(filepath.Join(h.dir, "data", "results", id+".*"))
		if err != nil || len(stored) != 1 {
			return res, fmt.Errorf("round %d: the hub's stored file for %s: %v %v", round, id, stored, err)
		}
		bd, err := base.post(ctx, e.http, stored[0])
		if err != nil {
			return res, err
		}
		baseDur = append(baseDur, bd)
		wp.probe.forget()
	}
	mbps := func(d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }
	u, b := summarize(millis(upDur)), summarize(millis(baseDur))
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	res.detail("file_bytes", size)
	res.detail("rounds", len(upDur))
	res.detail("upload_ms", u)
	res.detail("baseline_ms", b)
	res.detail("of_which_spooling_ms", summarize(millis(hashDur))) // sha256 + move into the outbox, before the POST
	res.detail("rss_before_mib", summarize(before))
	res.detail("rss_growth_during_upload_mib", summarize(growth))
	res.detail("rss_growth_during_job_mib", summarize(jobGrowth))
	med := row{Figure: fmt.Sprintf("upload of a %s result (engine spool → hub data), median round", humanBytes(size)), Key: "upload, median round", Value: mbps(ms(u.P50)), Unit: "MB/s"}.
		withBaseline("bare POST", mbps(ms(b.P50)))
	res.add(med.withGoal("≥ 0.6× baseline", med.Ratio != nil && *med.Ratio >= 0.6)) // issue 19
	res.add(row{Figure: "upload, slowest round", Value: mbps(ms(u.Max)), Unit: "MB/s"}.withBaseline("bare POST slowest", mbps(ms(b.Max))))
	g := summarize(growth)
	res.add(row{Figure: "worker RSS growth during the upload, worst round", Value: g.Max, Unit: "MiB"}.
		withBaseline("RSS before", summarize(before).P50).withGoal("≤ 32 MiB", g.Max <= 32))
	return res, nil
}

// settledRSS is the lowest of five RSS samples 20 ms apart.
func settledRSS(ctx context.Context, pid int) (int64, error) {
	var low int64
	for i := range 5 {
		rss, err := readRSS(pid)
		if err != nil {
			return 0, err
		}
		if i == 0 || rss < low {
			low = rss
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return low, nil
}

// humanBytes names a size in binary units.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) < 1<<20:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d B", n)
}
