// jobs.go is the demo's work: the plan of jobs (every kind, one failing on purpose, one too big
// for the free VRAM), submitting them to the demo hub, following each to its end and the report.
// It watches the worker only through an app.Source, as the window does; it must not know how the
// worker admits or runs a job, nor where its results go.

package demo

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"studioworker/app"
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

type demoOutcome struct {
	job     demoJob
	id      string
	info    protocol.JobInfo
	took    time.Duration
	summary string
	err     error
}

// RunJobs submits the demo's jobs and reports on them (app.DemoHub): plan.Jobs of them, the plan
// repeated, less the one meant to be declined for VRAM when plan.NoVRAMDecline says so.
func (d *localHub) RunJobs(ctx context.Context, w app.Source, plan app.DemoPlan, out, errOut io.Writer) bool {
	jobs := make([]demoJob, 0, plan.Jobs)
	for _, j := range demoPlan(plan.Jobs) {
		if !j.declined || !plan.NoVRAMDecline {
			jobs = append(jobs, j)
		}
	}
	return runDemoJobs(ctx, out, errOut, d.client, w, jobs)
}

// runDemoJobs submits the plan, follows every job to its end and prints a line per job and a
// summary to out (problems to errOut); true when every job ended as expected.
func runDemoJobs(ctx context.Context, out, errOut io.Writer, client *hub.Client, w app.Source, plan []demoJob) bool {
	// Wait for the session before submitting, so the first dispatch time means something.
	first, sub := w.Subscribe()
	defer sub.Close()
	deadline := time.After(30 * time.Second)
	for st := first; st.Conn.State != "connected"; {
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

	st := snapshot(w)
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
func followDemoJob(ctx context.Context, client *hub.Client, w app.Source, o *demoOutcome) (protocol.JobInfo, error) {
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
					if n.Kind == app.NoticeOfferResolved && n.JobID == o.id && n.Outcome != "accepted" {
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

// snapshot is the worker's State now.
func snapshot(w app.Source) app.State {
	st, sub := w.Subscribe()
	sub.Close()
	return st
}

// shortID is a job id cut to its first 8 characters, as the worker's own lines show it.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8] + "…"
	}
	return id
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
