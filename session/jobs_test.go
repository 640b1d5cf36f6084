// jobs_test.go: a job's run, its progress and its end as the session reports them.

package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"studioworker/protocol"
)

func TestFailsCarryTheRetryableFlagAndUserCancel(t *testing.T) {
	hub := newScriptHub(t)
	h := newTestHandler()
	started := make(chan string, 4)
	h.setRun(func(ctx context.Context, j Job, _ func(float64, string)) (Result, error) {
		switch j.Claim.JobID {
		case "unsupported":
			return Result{}, fmt.Errorf("model gone: %w", retryErr{false})
		case "flaky":
			return Result{}, errors.New("backend down")
		case "user":
			started <- j.Claim.JobID
			<-ctx.Done()
			return Result{}, ctx.Err()
		case "bad-ext":
			p := filepath.Join(j.SpoolDir, "x.bmp")
			os.WriteFile(p, []byte("bmp"), 0o600)
			return Result{File: p, Ext: "bmp"}, nil
		case "outside":
			p := filepath.Join(t.TempDir(), "x.png")
			os.WriteFile(p, []byte("png"), 0o600)
			return Result{File: p, Ext: "png"}, nil
		}
		return Result{}, errors.New("unexpected job")
	})
	s := newSession(t, testConfig(t, hub.srv.URL), h)
	startRun(t, s)
	c := hub.next(t)

	tests := []struct {
		id        string
		kind      protocol.Kind
		retryable bool
		msg       string
	}{
		{"unsupported", protocol.KindLLM, false, "model gone: engine error (retryable=false)"},
		{"flaky", protocol.KindLLM, true, "backend down"},
		{"user", protocol.KindLLM, true, userCancelMessage},
		{"bad-ext", protocol.KindImage, true, ""},
		{"outside", protocol.KindImage, true, ""},
	}
	for _, tt := range tests {
		c.send(protocol.Offer{Claim: claim(tt.id, tt.kind)})
		c.expect(t, protocol.TypeAccept)
		if tt.id == "user" {
			<-started
			if !s.CancelJob("user") {
				t.Fatal("CancelJob found no running job")
			}
		}
		f := c.expect(t, protocol.TypeFail, protocol.TypeCompleteJSON).(protocol.Fail)
		if f.JobID != tt.id || f.Retryable != tt.retryable || (tt.msg != "" && f.Error != tt.msg) {
			t.Errorf("%s: fail = %+v, want retryable=%v error=%q", tt.id, f, tt.retryable, tt.msg)
		}
		c.expect(t, protocol.TypeReadyForMore)
		c.send(protocol.FailAck{JobID: tt.id})
	}
	if s.CancelJob("nope") {
		t.Error("CancelJob of an unknown job returned true")
	}
	waitFor(t, "outbox emptied by fail_acks", func() bool { return s.OutboxLen() == 0 })
}

func TestProgressIsThrottledAndNeverFollowsCompletion(t *testing.T) {
	hub := newScriptHub(t)
	h := newTestHandler()
	h.setRun(func(ctx context.Context, j Job, progress func(float64, string)) (Result, error) {
		// 200 reports, spread over several throttle intervals (50 ms each in tests): the engine
		// working, not the test waiting.
		for i := range 200 {
			progress(float64(i)/200, "step")
			if i%10 == 0 {
				time.Sleep(15 * time.Millisecond)
			}
		}
		progress(1, "done")
		return defaultRun(ctx, j, progress)
	})
	cfg := testConfig(t, hub.srv.URL)
	s := newSession(t, cfg, h)
	startRun(t, s)
	c := hub.next(t)
	c.send(protocol.Offer{Claim: claim("job-p", protocol.KindLLM)})
	c.expect(t, protocol.TypeCompleteJSON)
	c.expect(t, protocol.TypeReadyForMore)

	var sends []time.Time
	completed := false
	for _, r := range c.allTimed() {
		switch f := r.f.(type) {
		case protocol.Progress:
			if completed {
				t.Fatalf("progress after complete_json: %+v", f)
			}
			if f.Fraction < 0 || f.Fraction > 1 {
				t.Fatalf("fraction %v out of range", f.Fraction)
			}
			sends = append(sends, r.at)
		case protocol.CompleteJSON:
			completed = true
		}
	}
	// One throttle: the Handler sees the stream the hub sees, not every one of the 200 reports.
	reports := len(h.eventsOf(func(e Event) bool { _, ok := e.(JobProgressEvent); return ok }))
	if reports != len(sends) {
		t.Fatalf("%d progress events reached the Handler and %d frames the hub, want the same", reports, len(sends))
	}
	if len(sends) < 2 {
		t.Fatalf("%d progress frames, want a few", len(sends))
	}
	// The wire is throttled: far fewer frames than reports, at most one per interval over the
	// span they were sent in (+1 for the first, which goes at once).
	span := sends[len(sends)-1].Sub(sends[0])
	if max := int(span/cfg.ProgressInterval) + 2; len(sends) > max {
		t.Fatalf("%d progress frames in %v, want at most %d", len(sends), span, max)
	}
}

func TestBinaryResultIsUploadedStreamedWithItsChecksum(t *testing.T) {
	hub := newScriptHub(t)
	type upload struct {
		ext, sha, prompt, auth, worker string
		body                           []byte
		length                         int64
	}
	uploads := make(chan upload, 4)
	hub.set(func(h *scriptHub) {
		h.uploadFn = func(w http.ResponseWriter, r *http.Request) {
			mr, err := r.MultipartReader()
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			u := upload{auth: r.Header.Get("Authorization"), worker: r.Header.Get(protocol.HeaderWorkerID), length: r.ContentLength}
			for {
				p, err := mr.NextPart()
				if err != nil {
					break
				}
				b, _ := io.ReadAll(p)
				switch p.FormName() {
				case "ext":
					u.ext = string(b)
				case "sha256":
					u.sha = string(b)
				case "prompt":
					u.prompt = string(b)
				case "file":
					u.body = b
				}
			}
			uploads <- u
			w.WriteHeader(http.StatusOK)
		}
	})
	h := newTestHandler()
	big := make([]byte, 3<<20+17)
	for i := range big {
		big[i] = byte(i * 7)
	}
	h.setRun(func(ctx context.Context, j Job, _ func(float64, string)) (Result, error) {
		p := filepath.Join(j.SpoolDir, "sub", "out.PNG")
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, big, 0o600); err != nil {
			return Result{}, err
		}
		return Result{File: p, Ext: "PNG", Prompt: "a cat"}, nil
	})
	s := newSession(t, testConfig(t, hub.srv.URL), h)
	startRun(t, s)
	c := hub.next(t)
	c.send(protocol.Offer{Claim: claim("img-1", protocol.KindImage)})
	c.expect(t, protocol.TypeAccept)
	c.expect(t, protocol.TypeReadyForMore)
	var u upload
	select {
	case u = <-uploads:
	case <-time.After(10 * time.Second):
		t.Fatal("no upload")
	}
	sum := sha256.Sum256(big)
	if u.ext != "png" || u.sha != hex.EncodeToString(sum[:]) || u.prompt != "a cat" || string(u.body) != string(big) {
		t.Fatalf("upload: ext %q sha %q prompt %q body %d bytes", u.ext, u.sha, u.prompt, len(u.body))
	}
	if u.auth != "Bearer tok" || u.worker != "w1" {
		t.Fatalf("upload headers: %q %q", u.auth, u.worker)
	}
	if u.length <= int64(len(big)) {
		t.Fatalf("Content-Length %d: the upload was not sent with its exact length", u.length)
	}
	d := h.waitEvent(t, "delivered", func(e Event) bool { _, ok := e.(DeliveredEvent); return ok }).(DeliveredEvent)
	if d.JobID != "img-1" || d.Bytes != int64(len(big)) || d.Status != protocol.AckStored {
		t.Fatalf("delivered = %+v", d)
	}
	waitFor(t, "outbox empty", func() bool { return s.OutboxLen() == 0 })
	entries, _ := os.ReadDir(filepath.Join(s.cfg.SpoolDir, "outbox"))
	if len(entries) != 0 {
		t.Fatalf("outbox folder not empty: %v", names(entries))
	}
	for _, f := range c.all() {
		if _, ok := f.(protocol.CompleteJSON); ok {
			t.Fatal("a binary result was sent as complete_json")
		}
	}
}

func TestUploadAnswersFollowTheContract(t *testing.T) {
	hub := newScriptHub(t)
	var mu sync.Mutex
	script := map[string][]int{ // status answers per job, in order; the last one repeats
		"ok-after-503": {503, 503, 200},
		"conflict":     {409},
		"too-large":    {413},
		"bad-request":  {400},
	}
	calls := map[string]int{}
	hub.set(func(h *scriptHub) {
		h.uploadFn = func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			id := r.PathValue("id")
			mu.Lock()
			answers := script[id]
			n := calls[id]
			calls[id]++
			mu.Unlock()
			w.WriteHeader(answers[min(n, len(answers)-1)])
		}
	})
	h := newTestHandler()
	s := newSession(t, testConfig(t, hub.srv.URL), h)
	startRun(t, s)
	c := hub.next(t)
	for _, id := range []string{"ok-after-503", "conflict", "too-large", "bad-request"} {
		c.send(protocol.Offer{Claim: claim(id, protocol.KindImage)})
		c.expect(t, protocol.TypeAccept)
		c.expect(t, protocol.TypeReadyForMore)
	}
	// Fails may come while the test waits for other frames: look at everything seen.
	fails := map[string]protocol.Fail{}
	waitFor(t, "two fails", func() bool {
		for _, f := range c.all() {
			if fl, ok := f.(protocol.Fail); ok && fails[fl.JobID] == (protocol.Fail{}) {
				fails[fl.JobID] = fl
				c.send(protocol.FailAck{JobID: fl.JobID})
			}
		}
		return len(fails) == 2
	})
	if f := fails["too-large"]; f.Retryable {
		t.Errorf("413: fail = %+v, want not retryable", f)
	}
	if f := fails["bad-request"]; f.Retryable {
		t.Errorf("400: fail = %+v, want not retryable", f)
	}
	waitFor(t, "outbox empty", func() bool { return s.OutboxLen() == 0 })
	mu.Lock()
	defer mu.Unlock()
	// 409 is asked again twice (the hub may not have read the accept yet), then believed.
	if calls["ok-after-503"] != 3 || calls["conflict"] != 1+notHeldUploadRetries || calls["too-large"] != 1 {
		t.Errorf("upload calls = %v", calls)
	}
	if calls["bad-request"] != 1 {
		// The checksum did not change on disk, so the second attempt is skipped.
		t.Errorf("400 was retried %d times with an unchanged checksum", calls["bad-request"])
	}
	h.waitEvent(t, "conflict reported as rejected", func(e Event) bool {
		d, ok := e.(DeliveredEvent)
		return ok && d.Status == protocol.AckRejected && d.JobID == "conflict"
	})
	if rejected := h.eventsOf(func(e Event) bool { d, ok := e.(DeliveredEvent); return ok && d.Status == protocol.AckRejected }); len(rejected) != 1 {
		t.Errorf("rejected deliveries = %v, want only the 409", rejected)
	}
}

func TestASlowUploadDoesNotStopHeartbeats(t *testing.T) {
	hub := newScriptHub(t)
	inUpload := make(chan struct{})
	release := make(chan struct{})
	hub.set(func(h *scriptHub) {
		h.uploadFn = func(w http.ResponseWriter, r *http.Request) {
			close(inUpload)
			<-release // the hub reads nothing for a while: the worker's upload is stuck
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusOK)
		}
	})
	h := newTestHandler()
	h.setRun(func(ctx context.Context, j Job, _ func(float64, string)) (Result, error) {
		p := filepath.Join(j.SpoolDir, "big.png")
		f, _ := os.Create(p)
		f.Truncate(16 << 20) // larger than the socket buffers
		f.Close()
		return Result{File: p, Ext: "png"}, nil
	})
	s := newSession(t, testConfig(t, hub.srv.URL), h)
	startRun(t, s)
	c := hub.next(t)
	c.send(protocol.Offer{Claim: claim("slow", protocol.KindImage)})
	c.expect(t, protocol.TypeAccept)
	<-inUpload
	// Heartbeats keep coming, and list the job whose result is uploading (its lease must live).
	for range 3 {
		hb := c.expect(t, protocol.TypeHeartbeat).(protocol.Heartbeat)
		if len(hb.Status.Running) != 1 || hb.Status.Running[0] != "slow" {
			t.Fatalf("heartbeat during the upload lists %v", hb.Status.Running)
		}
	}
	// And the worker still answers offers.
	c.send(protocol.Offer{Claim: claim("next", protocol.KindLLM)})
	c.expect(t, protocol.TypeAccept)
	close(release)
	h.waitEvent(t, "upload delivered", func(e Event) bool { d, ok := e.(DeliveredEvent); return ok && d.JobID == "slow" })
}

func TestInputIsDownloadedAndItsErrorsClassified(t *testing.T) {
	hub := newScriptHub(t)
	var authOK atomic.Bool
	var notOursCalls atomic.Int32
	hub.set(func(h *scriptHub) {
		h.inputFn = func(w http.ResponseWriter, r *http.Request) {
			authOK.Store(r.Header.Get("Authorization") == "Bearer tok" && r.Header.Get(protocol.HeaderWorkerID) == "w1")
			switch r.PathValue("id") {
			case "ok":
				w.Header().Set("Content-Type", "audio/wav")
				w.Write([]byte("RIFF audio"))
			case "not-ours":
				notOursCalls.Add(1)
				http.Error(w, `{"error":"not your job"}`, http.StatusForbidden)
			case "gone":
				http.Error(w, "gone", http.StatusNotFound)
			case "too-large":
				http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			case "down":
				http.Error(w, "down", http.StatusServiceUnavailable)
			}
		}
	})
	h := newTestHandler()
	got := make(chan string, 1)
	h.setRun(func(ctx context.Context, j Job, _ func(float64, string)) (Result, error) {
		b, err := os.ReadFile(j.InputFile)
		if err != nil {
			return Result{}, err
		}
		got <- string(b) + " " + filepath.Ext(j.InputFile)
		return Result{JSON: []byte(`{"text":"hi","language":"en","segments":[]}`)}, nil
	})
	s := newSession(t, testConfig(t, hub.srv.URL), h)
	startRun(t, s)
	c := hub.next(t)
	offer := func(id string) {
		cl := claim(id, protocol.KindSTT)
		cl.InputURL = hub.srv.URL + protocol.InputPath(id)
		c.send(protocol.Offer{Claim: cl})
		c.expect(t, protocol.TypeAccept)
	}
	offer("ok")
	if g := <-got; g != "RIFF audio .wav" {
		t.Fatalf("the handler read %q", g)
	}
	if !authOK.Load() {
		t.Fatal("the download did not carry the worker's headers")
	}
	c.expect(t, protocol.TypeCompleteJSON)
	c.expect(t, protocol.TypeReadyForMore)

	for _, tt := range []struct {
		id        string
		retryable bool
	}{{"not-ours", true}, {"gone", false}, {"too-large", false}, {"down", true}} {
		offer(tt.id)
		f := c.expect(t, protocol.TypeFail).(protocol.Fail)
		if f.JobID != tt.id || f.Retryable != tt.retryable {
			t.Errorf("%s: fail = %+v, want retryable=%v", tt.id, f, tt.retryable)
		}
		c.expect(t, protocol.TypeReadyForMore)
	}
	// A 403 is asked again a few times first: the hub may not have read the accept yet.
	if n := notOursCalls.Load(); n != notHeldRetries+1 {
		t.Errorf("403 asked %d times, want %d", n, notHeldRetries+1)
	}
	// Each accepted offer's lease ends once: run when its input arrived, released otherwise.
	ends := h.leaseEnds(t)
	released := 0
	for _, how := range ends {
		if how == "released" {
			released++
		}
	}
	if len(ends) != 5 || released != 4 {
		t.Errorf("leases = %v, want 5 with 4 released (the failed downloads) and 1 run", ends)
	}
}

func TestCutInTheMiddleOfAnUploadIsRetried(t *testing.T) {
	hub := newScriptHub(t)
	var complete atomic.Int32
	var gotSum atomic.Value
	hub.set(func(h *scriptHub) {
		h.uploadFn = func(w http.ResponseWriter, r *http.Request) {
			mr, err := r.MultipartReader()
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			var want, got string
			for {
				p, err := mr.NextPart()
				if err != nil {
					if err != io.EOF {
						return // cut: the body ended early
					}
					break
				}
				switch p.FormName() {
				case "sha256":
					b, _ := io.ReadAll(p)
					want = string(b)
				case "file":
					hs := sha256.New()
					if _, err := io.Copy(hs, p); err != nil {
						return
					}
					got = hex.EncodeToString(hs.Sum(nil))
				}
			}
			if got != want {
				http.Error(w, "sha256 mismatch", http.StatusBadRequest)
				return
			}
			complete.Add(1)
			gotSum.Store(got)
			w.WriteHeader(http.StatusOK)
		}
	})
	proxy := newTCPProxy(t, strings.TrimPrefix(hub.srv.URL, "http://"))
	h := newTestHandler()
	payload := make([]byte, 2<<20)
	for i := range payload {
		payload[i] = byte(i % 251)
	}
	ready := make(chan struct{})
	h.setRun(func(ctx context.Context, j Job, _ func(float64, string)) (Result, error) {
		<-ready
		p := filepath.Join(j.SpoolDir, "v.mp4")
		return Result{File: p, Ext: "mp4"}, os.WriteFile(p, payload, 0o600)
	})
	s := newSession(t, testConfig(t, proxy.url()), h)
	startRun(t, s)
	c := hub.next(t)
	c.send(protocol.Offer{Claim: claim("vid", protocol.KindVideo)})
	c.expect(t, protocol.TypeAccept)
	proxy.cutAfterBytes(600_000) // the upload is cut after about a quarter of the file
	close(ready)
	h.waitEvent(t, "delivered after the cut", func(e Event) bool { d, ok := e.(DeliveredEvent); return ok && d.JobID == "vid" })
	sum := sha256.Sum256(payload)
	if complete.Load() != 1 || gotSum.Load() != hex.EncodeToString(sum[:]) {
		t.Fatalf("%d complete uploads, sum %v", complete.Load(), gotSum.Load())
	}
	if logs := h.eventsOf(func(e Event) bool { _, ok := e.(LogEvent); return ok }); len(logs) != 0 {
		// An upload cut by the network is retried quietly; nothing for the user to act on.
		t.Logf("log events: %v", logs)
	}
}

func TestLargeUploadMemoryStaysFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 96 MiB")
	}
	hub := newScriptHub(t)
	const size = 96 << 20
	var received atomic.Int64
	var peak atomic.Uint64
	hub.set(func(h *scriptHub) {
		h.uploadFn = func(w http.ResponseWriter, r *http.Request) {
			n, _ := io.Copy(io.Discard, r.Body)
			received.Store(n)
			w.WriteHeader(http.StatusOK)
		}
	})
	h := newTestHandler()
	h.setRun(func(ctx context.Context, j Job, _ func(float64, string)) (Result, error) {
		p := filepath.Join(j.SpoolDir, "big.webm")
		f, err := os.Create(p)
		if err != nil {
			return Result{}, err
		}
		defer f.Close()
		return Result{File: p, Ext: "webm"}, f.Truncate(size) // sparse: no memory, little disk
	})
	s := newSession(t, testConfig(t, hub.srv.URL), h)
	startRun(t, s)
	c := hub.next(t)
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	c.send(protocol.Offer{Claim: claim("big", protocol.KindVideo)})
	h.waitEvent(t, "delivered", func(e Event) bool { d, ok := e.(DeliveredEvent); return ok && d.JobID == "big" })
	close(stop)
	<-sampled
	if received.Load() < size {
		t.Fatalf("the hub received %d bytes", received.Load())
	}
	growth := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("heap in use grew by %d KiB for a %d MiB result", growth>>10, size>>20)
	if growth > 32<<20 {
		t.Fatalf("heap grew by %d MiB while uploading %d MiB: the result is held in memory", growth>>20, size>>20)
	}
}

// Stopping while a result's upload is in the air must end Run: the cancelled upload comes back
// due at once, and the uploader used to pick it up again forever.
func TestStopDuringAnUploadEndsRun(t *testing.T) {
	hub := newScriptHub(t)
	inUpload := make(chan struct{})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before the server's Close, which waits for handlers
	var once sync.Once
	hub.set(func(h *scriptHub) {
		h.uploadFn = func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			once.Do(func() { close(inUpload) })
			select { // no answer while the worker stops
			case <-release:
			case <-r.Context().Done():
			}
		}
	})
	h := newTestHandler()
	h.setRun(func(ctx context.Context, j Job, _ func(float64, string)) (Result, error) {
		p := filepath.Join(j.SpoolDir, "r.png")
		if err := os.WriteFile(p, []byte("png"), 0o600); err != nil {
			return Result{}, err
		}
		return Result{File: p, Ext: "png"}, nil
	})
	s := newSession(t, testConfig(t, hub.srv.URL), h)
	r := startRun(t, s)
	c := hub.next(t)
	c.send(protocol.Offer{Claim: claim("up", protocol.KindImage)})
	c.expect(t, protocol.TypeAccept)
	<-inUpload
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s of being stopped during an upload")
	}
	if s.OutboxLen() != 1 {
		t.Fatalf("outbox = %d, want the undelivered result kept for the next start", s.OutboxLen())
	}
}
