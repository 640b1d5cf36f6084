package app

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"studioworker/engine"
	"studioworker/gpu"
	"studioworker/hub"
	"studioworker/protocol"
)

// demoJob is one job the demo submits and what it expects of it.
type demoJob struct {
	kind     protocol.Kind
	input    string
	vramGB   float64
	expect   protocol.JobStatus
	why      string // what the job shows
	withWAV  bool   // stt: attach a generated WAV
	declined bool   // expected to be declined for VRAM, then cancelled by the demo
}

// demoPlan mixes every kind, a failure on purpose and a VRAM decline; it repeats to make n jobs.
func demoPlan(n int) []demoJob {
	base := []demoJob{
		{kind: protocol.KindLLM, input: `{"prompt":"Write a two-line poem about a render farm at night.","max_tokens":48,"duration_ms":700}`, vramGB: 6, expect: protocol.JobCompleted, why: "LLM text"},
		{kind: protocol.KindImage, input: `{"prompt":"a lighthouse at dusk, oil painting","width":512,"height":320,"seed":7,"duration_ms":1200}`, vramGB: 8, expect: protocol.JobCompleted, why: "image (PNG)"},
		{kind: protocol.KindTTS, input: `{"text":"Hello from your studio worker. The render is ready.","duration_ms":600}`, vramGB: 1.5, expect: protocol.JobCompleted, why: "speech (WAV)"},
		{kind: protocol.KindSTT, input: `{"language":"en","duration_ms":500}`, vramGB: 2, expect: protocol.JobCompleted, why: "transcript of an uploaded WAV", withWAV: true},
		{kind: protocol.KindVideo, input: `{"prompt":"waves rolling in","width":160,"height":96,"frames":12,"fps":8,"duration_ms":1500}`, vramGB: 12, expect: protocol.JobCompleted, why: "video (GIF)"},
		{kind: protocol.KindLLM, input: `{"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Name three primary colours."}],"duration_ms":400}`, vramGB: 6, expect: protocol.JobCompleted, why: "LLM chat"},
		{kind: protocol.KindLLM, input: `{"prompt":"this one fails","fail":"the model ran out of patience (failing on purpose)"}`, vramGB: 6, expect: protocol.JobFailed, why: "fails on purpose"},
		{kind: protocol.KindImage, input: `{"prompt":"a 16K panorama","width":1024,"height":1024}`, vramGB: 20, expect: protocol.JobCancelled, why: "too big for the free VRAM: declined, then cancelled", declined: true},
		{kind: protocol.KindTTS, input: `{"text":"Second take, a little slower.","speed":0.8,"duration_ms":500}`, vramGB: 1.5, expect: protocol.JobCompleted, why: "speech (WAV)"},
		{kind: protocol.KindImage, input: `{"prompt":"isometric studio desk, soft light","width":384,"height":384,"seed":42,"duration_ms":900}`, vramGB: 8, expect: protocol.JobCompleted, why: "image (PNG)"},
		{kind: protocol.KindLLM, input: `{"prompt":"Summarise today's jobs in one sentence.","max_tokens":32,"duration_ms":500}`, vramGB: 6, expect: protocol.JobCompleted, why: "LLM text"},
		{kind: protocol.KindVideo, input: `{"prompt":"a spinning top","width":96,"height":96,"frames":8,"fps":12,"duration_ms":800}`, vramGB: 10, expect: protocol.JobCompleted, why: "video (GIF)"},
	}
	out := make([]demoJob, 0, n)
	for i := 0; len(out) < n; i++ {
		out = append(out, base[i%len(base)])
	}
	return out
}

// demoOtherAppMB is what the simulated GPU shows another program using, so that one demo job is
// declined for VRAM by the worker's live check.
const demoOtherAppMB = 8 * 1024

func (c *CLI) cmdDemo(args []string) int {
	fs := flag.NewFlagSet("studio-worker demo", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	headless := fs.Bool("headless", false, "no window, even with a display")
	jobs := fs.Int("jobs", 12, "how many jobs to submit")
	verbose := fs.Bool("verbose", false, "log the worker's and the hub's messages")
	if fs.Parse(args) != nil {
		return ExitUsage
	}
	if *jobs < 1 || *jobs > 10000 {
		c.errorf("--jobs must be between 1 and 10000")
		return ExitUsage
	}
	withWindow := !*headless && c.GUI != nil && haveDisplay()
	res, err := c.runDemo(*jobs, *verbose, withWindow)
	if err != nil {
		c.errorf("demo: %v", err)
		return ExitError
	}
	if !res {
		return ExitError
	}
	return ExitOK
}

func haveDisplay() bool {
	if runtime.GOOS == "windows" || runtime.GOOS == "darwin" {
		return true
	}
	return os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != ""
}

func (c *CLI) runDemo(n int, verbose, withWindow bool) (bool, error) {
	dir, err := os.MkdirTemp("", "studio-worker-demo-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(dir)
	level := slog.LevelError // the failure on purpose is expected; --verbose shows everything
	if verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(c.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	dh, err := startDemoHub(ctx, logger.With("source", "hub"))
	if err != nil {
		return false, err
	}
	defer dh.Close()
	base, client := dh.URL, dh.Client
	fmt.Fprintf(c.Stdout, "Studio Worker demo\n  hub:    %s (reference studio-hub, temporary database)\n", base)

	reg, err := client.Register(ctx, demoName(), "demo")
	if err != nil {
		return false, fmt.Errorf("register: %w", err)
	}

	cfg := DefaultConfig()
	cfg.ServerURL, cfg.WorkerID, cfg.AuthToken, cfg.Name = base, reg.WorkerID, reg.AuthToken, demoName()
	cfg.Engines = engine.DefaultConfig()
	for k, vram := range map[protocol.Kind]float64{protocol.KindLLM: 6, protocol.KindImage: 8, protocol.KindTTS: 1.5, protocol.KindSTT: 2, protocol.KindVideo: 12} {
		bc := cfg.Engines[k]
		bc.VRAMGB = vram
		cfg.Engines[k] = bc
	}
	// Where NVML sees no GPU, a simulated 24 GB card (always labelled simulated) with another
	// program holding 8 GB, so the live-VRAM check has something to say.
	var sampler gpu.Sampler
	real := gpu.Open(gpu.Options{})
	snapCtx, snapCancel := context.WithTimeout(ctx, 5*time.Second)
	snap, _ := real.Sample(snapCtx)
	snapCancel()
	if snap.Source == gpu.SourceNVML && len(snap.Devices) > 0 {
		sampler = real
		fmt.Fprintf(c.Stdout, "  gpu:    %s (NVML)\n", snap.Devices[0].Name)
	} else {
		real.Close()
		cfg.GPU.Simulated = &SimulatedGPU{Name: "Simulated GPU (24 GB)", VRAMGB: 24}
		sim := gpu.NewSimulated(cfg.GPU.Simulated.Name, 24*1024)
		sim.SetUsedMB(demoOtherAppMB)
		sim.SetProcesses([]gpu.Process{{PID: 1, Name: "editor (simulated)", UsedMB: demoOtherAppMB}})
		sampler = sim
		why := snap.Problem
		if why == "" {
			why = "no NVIDIA GPU found"
		}
		fmt.Fprintf(c.Stdout, "  gpu:    simulated 24 GB GPU, 8 GB held by another program (%s)\n", why)
	}
	cfg.GPU.SampleIntervalS = 0.5
	configPath := filepath.Join(dir, "worker", "config.json")
	if err := SaveConfig(configPath, cfg); err != nil {
		return false, err
	}
	fmt.Fprintf(c.Stdout, "  worker: %s (synthetic engine), config %s\n\n", reg.WorkerID, configPath)

	ctlLn, token, err := ListenControl(configPath)
	if err != nil {
		return false, err
	}
	w, err := NewWorker(Options{
		ConfigPath: configPath, Config: cfg, AgentVersion: c.Build.Version,
		Logger: logger, Sampler: sampler, Session: c.Session,
		SimulatedBaseMB: demoOtherAppMB, KeepRunning: withWindow,
	})
	if err != nil {
		ctlLn.Close()
		return false, err
	}
	var wg sync.WaitGroup
	defer wg.Wait() // after wcancel, which the next defer runs first
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	cs := NewControlServer(w, w, token, logger)
	runErr := make(chan error, 1)
	go func() { runErr <- w.Serve(wctx) }()

	report := make(chan bool, 1)
	wg.Add(2)
	go func() { defer wg.Done(); _ = cs.Serve(wctx, ctlLn) }()
	go func() { defer wg.Done(); report <- runDemoJobs(wctx, c.Stdout, c.Stderr, client, w, demoPlan(n)) }()

	if withWindow {
		fmt.Fprintf(c.Stdout, "The window is open; close it (or Quit in the tray) to end the demo.\n")
		if err := c.GUI(w, w, wcancel); err != nil {
			c.errorf("window: %v", err)
		}
		wcancel()
		ok := false
		select {
		case ok = <-report:
		default:
		}
		<-runErr
		return ok, nil
	}
	var ok bool
	select {
	case ok = <-report:
	case err := <-runErr:
		return false, fmt.Errorf("the worker stopped: %w", err)
	}
	wcancel()
	if err := <-runErr; err != nil {
		return false, err
	}
	return ok, nil
}

// demoHub is the reference hub run in-process on a free loopback port, on a temporary database
// that Close removes. Registration is open: any pairing code is accepted.
type demoHub struct {
	URL    string
	Client *hub.Client // with the admin token: register, submit, follow jobs
	dir    string
	h      *hub.Hub
	srv    *http.Server
	done   chan struct{}
}

// startDemoHub starts a demo hub; Close stops it.
func startDemoHub(ctx context.Context, logger *slog.Logger) (*demoHub, error) {
	dir, err := os.MkdirTemp("", "studio-worker-demo-hub-")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	base := "http://" + ln.Addr().String()
	h, err := hub.Open(ctx, hub.Config{
		DBPath: filepath.Join(dir, "hub.db"), OpenRegistration: true, AdminToken: "demo-admin",
		Logger: logger, ServerVersion: "studio-hub (demo)", PublicURL: base,
	})
	if err != nil {
		ln.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start the hub: %w", err)
	}
	d := &demoHub{URL: base, Client: &hub.Client{BaseURL: base, AdminToken: "demo-admin"}, dir: dir, h: h,
		srv: &http.Server{Handler: h.Handler(), ReadHeaderTimeout: 10 * time.Second}, done: make(chan struct{})}
	go func() { defer close(d.done); _ = d.srv.Serve(ln) }()
	return d, nil
}

// Close stops the hub, waits for it and removes its files.
func (d *demoHub) Close() {
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	_ = d.h.Close(cctx)
	_ = d.srv.Shutdown(cctx)
	<-d.done
	os.RemoveAll(d.dir)
}

func demoName() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "this computer"
	}
	return "demo worker on " + host
}

type demoOutcome struct {
	job     demoJob
	id      string
	info    protocol.JobInfo
	took    time.Duration
	summary string
	err     error
}

// runDemoJobs submits the plan, follows every job to its end and prints a line per job and a
// summary to out (problems to errOut); true when every job ended as expected.
func runDemoJobs(ctx context.Context, out, errOut io.Writer, client *hub.Client, w *Worker, plan []demoJob) bool {
	// Wait for the session before submitting, so the first dispatch time means something.
	_, sub := w.Subscribe()
	defer sub.Close()
	deadline := time.After(30 * time.Second)
	for st := w.Observers().Snapshot(); st.Conn.State != "connected"; {
		select {
		case s, ok := <-sub.States():
			if !ok {
				return false
			}
			st = s
		case <-deadline:
			fmt.Fprintf(errOut, "studio-worker: the worker did not connect within 30 s\n")
			return false
		case <-ctx.Done():
			return false
		}
	}
	var mu sync.Mutex
	outcomes := make([]*demoOutcome, len(plan))
	var wg sync.WaitGroup
	start := time.Now()
	for i, dj := range plan {
		est := dj.vramGB
		req := protocol.JobRequest{Kind: dj.kind, Model: "synthetic", Input: protocol.Object(dj.input), VRAMGBEstimate: &est}
		var id string
		var err error
		if dj.withWAV {
			id, err = client.SubmitWithFile(ctx, req, "hello.wav", bytes.NewReader(demoWAV(2*time.Second)))
		} else {
			id, err = client.Submit(ctx, req)
		}
		o := &demoOutcome{job: dj, id: id, err: err}
		outcomes[i] = o
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.info, o.err = followDemoJob(ctx, client, w, o)
			o.took = time.Since(start)
			o.summary = demoSummary(ctx, client, o.info)
			mu.Lock()
			defer mu.Unlock()
			mark := "✓"
			if !o.asExpected() {
				mark = "✗"
			}
			fmt.Fprintf(out, "%s %-6s %-9s %-10s %s\n", mark, o.job.kind, o.info.Status, shortID(o.id), o.summary)
		}()
	}
	wg.Wait()

	st := w.Observers().Snapshot()
	fmt.Fprintf(out, "\nSummary\n")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "job\tkind\tshows\texpected\tgot\tattempts\tresult")
	all := true
	for _, o := range outcomes {
		got := string(o.info.Status)
		if o.err != nil {
			got = "error: " + o.err.Error()
		}
		if !o.asExpected() {
			all = false
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", shortID(o.id), o.job.kind, o.job.why, o.job.expect, got, o.info.Attempts, o.summary)
	}
	tw.Flush()
	fmt.Fprintf(out, "\nWorker: %d done, %d failed, %d declined (%s), %.1f MB uploaded, in %.1f s\n",
		st.Counters.Done, st.Counters.Failed, sumDeclined(st.Counters.Declined), declinedWords(st.Counters.Declined),
		float64(st.Counters.BytesUploaded)/1e6, time.Since(start).Seconds())
	if all {
		fmt.Fprintf(out, "All %d jobs ended as expected.\n", len(outcomes))
	} else {
		fmt.Fprintf(out, "Some jobs did not end as expected (marked ✗).\n")
	}
	return all
}

func (o *demoOutcome) asExpected() bool { return o.err == nil && o.info.Status == o.job.expect }

// followDemoJob waits for a job to end; the job meant to be declined is cancelled through the
// job API once the worker has declined it.
func followDemoJob(ctx context.Context, client *hub.Client, w *Worker, o *demoOutcome) (protocol.JobInfo, error) {
	if o.job.declined {
		_, sub := w.Subscribe()
		func() {
			defer sub.Close()
			timeout := time.After(60 * time.Second)
			for {
				select {
				case n, ok := <-sub.Notices():
					if !ok {
						return
					}
					if n.Kind == NoticeOfferResolved && n.JobID == o.id && n.Outcome != "accepted" {
						return
					}
				case <-timeout:
					return
				case <-ctx.Done():
					return
				}
			}
		}()
		if err := client.Cancel(ctx, o.id); err != nil {
			return protocol.JobInfo{}, fmt.Errorf("cancel: %w", err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return client.WaitJob(wctx, o.id)
}

// demoSummary describes a result in a few words: the text, or the file's type and size.
func demoSummary(ctx context.Context, client *hub.Client, info protocol.JobInfo) string {
	switch {
	case info.Status == protocol.JobFailed:
		return "error: " + info.Error
	case info.Status == protocol.JobCancelled:
		return "cancelled after the worker declined it for VRAM"
	case info.Status != protocol.JobCompleted:
		return string(info.Status)
	case len(info.Result) > 0:
		var r struct {
			Text  string `json:"text"`
			Usage *struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
		}
		_ = json.Unmarshal(info.Result, &r)
		text := strings.Join(strings.Fields(r.Text), " ")
		if len(text) > 60 {
			text = text[:57] + "..."
		}
		if r.Usage != nil {
			return fmt.Sprintf("%q (%d tokens)", text, r.Usage.CompletionTokens)
		}
		return fmt.Sprintf("%q", text)
	}
	var cw countingWriter
	ct, err := client.Result(ctx, info.JobID, &cw)
	if err != nil {
		return "result: " + err.Error()
	}
	return fmt.Sprintf("%s, %.1f KB", ct, float64(cw.n)/1024)
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func sumDeclined(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func declinedWords(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, r := range []string{"vram", "busy", "paused", "unsupported", "user", "expired"} {
		if m[r] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", m[r], r))
		}
	}
	return strings.Join(parts, ", ")
}

// demoWAV makes a mono 16 kHz WAV of a soft two-tone chime, the stt job's input.
func demoWAV(d time.Duration) []byte {
	const rate = 16000
	n := int(d.Seconds() * rate)
	var b bytes.Buffer
	le := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("RIFF")
	le(uint32(36 + n*2))
	b.WriteString("WAVEfmt ")
	le(uint32(16))
	le(uint16(1))
	le(uint16(1))
	le(uint32(rate))
	le(uint32(rate * 2))
	le(uint16(2))
	le(uint16(16))
	b.WriteString("data")
	le(uint32(n * 2))
	for i := 0; i < n; i++ {
		t := float64(i) / rate
		f := 440.0
		if t > d.Seconds()/2 {
			f = 660
		}
		le(int16(6000 * math.Sin(2*math.Pi*f*t)))
	}
	return b.Bytes()
}
