// reach_test.go checks what a worker tells the hub and the creator about the VRAM it can give:
// the derivation row by row, then a worker with no GPU (and one whose GPU it cannot see) against
// a real hub. It must not fake the hub or read the worker's fields behind its State.
package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"studioworker/gpu"
	"studioworker/protocol"
)

func TestVRAMReach(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	card := func(mb int64) []gpu.Device { return []gpu.Device{{Index: 0, Name: "card", TotalMB: mb}} }
	for _, tc := range []struct {
		name  string
		capGB float64
		snap  gpu.Snapshot
		want  VRAMReach
	}{
		{"before the first sample: nothing claimed", 0, gpu.Snapshot{}, VRAMReach{Basis: ReachPending}},
		{"before the first sample, with a cap", 8, gpu.Snapshot{}, VRAMReach{Basis: ReachUserLimit, LimitGB: 8}},
		{"no GPU, no cap: nothing that needs VRAM", 0, gpu.Snapshot{Time: at, Source: gpu.SourceNone},
			VRAMReach{Basis: ReachNoGPU}},
		{"no GPU, a cap: the creator's word", 8, gpu.Snapshot{Time: at, Source: gpu.SourceNone},
			VRAMReach{Basis: ReachUserLimitNoGPU, LimitGB: 8}},
		{"a GPU: its total", 0, gpu.Snapshot{Time: at, Source: gpu.SourceNVML, Devices: card(24564)},
			VRAMReach{Basis: ReachGPU, LimitGB: 24, TotalGB: 24}},
		{"a GPU and a cap", 20, gpu.Snapshot{Time: at, Source: gpu.SourceNVML, Devices: card(24564)},
			VRAMReach{Basis: ReachUserLimit, LimitGB: 20, TotalGB: 24}},
		{"two GPUs add up", 0, gpu.Snapshot{Time: at, Source: gpu.SourceNVML, Devices: append(card(8192), gpu.Device{Index: 1, TotalMB: 4096})},
			VRAMReach{Basis: ReachGPU, LimitGB: 12, TotalGB: 12}},
		{"a driver that lists no GPU is no GPU", 0, gpu.Snapshot{Time: at, Source: gpu.SourceNVML},
			VRAMReach{Basis: ReachNoGPU}},
		{"a simulated GPU is a GPU", 0, gpu.Snapshot{Time: at, Source: gpu.SourceSimulated, Simulated: true, Devices: card(16384)},
			VRAMReach{Basis: ReachGPU, LimitGB: 16, TotalGB: 16}},
		{"unified memory is a GPU", 0, gpu.Snapshot{Time: at, Source: gpu.SourceUnified, Devices: card(12288)},
			VRAMReach{Basis: ReachGPU, LimitGB: 12, TotalGB: 12}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := vramReach(tc.capGB, tc.snap); got != tc.want {
				t.Errorf("vramReach = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestNoGPUWorkerSaysWhichJobsReachIt: a Linux worker that sees no GPU and has no VRAM cap is
// connected to a real hub. A job that states 8 GB waits, and the hub says why; the worker says
// which jobs it cannot take, never "Ready", and still runs a job that states no VRAM need.
func TestNoGPUWorkerSaysWhichJobsReachIt(t *testing.T) {
	env := newTestEnvSampled(t, gpu.Unavailable("No NVIDIA driver found: VRAM checks are off"),
		func(c *Config) { c.GPU.Simulated, c.VRAMThresholdGB = nil, 0 })
	st := env.waitState("no GPU seen", func(s State) bool { return s.VRAM.Basis == ReachNoGPU })
	if got := env.worker.Capabilities().VRAMThresholdGB; got != 0 {
		t.Errorf("advertised vram_threshold_gb %v, want 0", got)
	}
	if want := "No GPU found: taking only jobs that need no VRAM"; st.ModeReason != want {
		t.Errorf("mode reason %q, want %q", st.ModeReason, want)
	}
	text := StatusText(st)
	if want := "No GPU seen: jobs that need VRAM are not offered to this computer; it takes llm, image, tts, stt, video jobs that need none"; statusLine(text, "VRAM") != want {
		t.Errorf("status text's VRAM line is not %q:\n%s", want, text)
	}
	if strings.Contains(text, "Ready") {
		t.Errorf("status text says Ready with no GPU:\n%s", text)
	}

	est := 8.0
	big, err := env.admin.Submit(context.Background(), protocol.JobRequest{Kind: protocol.KindLLM, Model: "synthetic",
		Input: protocol.Object(`{"prompt":"hi"}`), VRAMGBEstimate: &est})
	if err != nil {
		t.Fatal(err)
	}
	env.waitWaiting(big, `needs 8 GB of VRAM; no connected worker that offers model "synthetic" for kind llm has a GPU`)

	small := env.submit(protocol.KindLLM, `{"prompt":"hi"}`)
	if info := env.wait(small); info.Status != protocol.JobCompleted {
		t.Fatalf("a job that states no VRAM need: %+v", info)
	}
	env.waitWaiting(big, `needs 8 GB of VRAM; no connected worker that offers model "synthetic" for kind llm has a GPU`)
}

// TestUnseenGPUWithACapKeepsTheCap: the creator set a VRAM cap on a computer whose GPU the worker
// cannot see (an AMD card, say). The cap is their statement: it stays advertised, a job within it
// runs, and the status says free VRAM is unknown.
func TestUnseenGPUWithACapKeepsTheCap(t *testing.T) {
	env := newTestEnvSampled(t, gpu.Unavailable("No NVIDIA driver found: VRAM checks are off"),
		func(c *Config) { c.GPU.Simulated, c.VRAMThresholdGB = nil, 10 })
	st := env.waitState("no GPU seen, a cap", func(s State) bool { return s.VRAM.Basis == ReachUserLimitNoGPU })
	if got := env.worker.Capabilities().VRAMThresholdGB; got != 10 {
		t.Errorf("advertised vram_threshold_gb %v, want the cap, 10", got)
	}
	if st.ModeReason != "Ready for jobs" {
		t.Errorf("mode reason %q, want Ready: jobs within the cap reach this worker", st.ModeReason)
	}
	if want := "no GPU seen, so free VRAM is unknown: jobs that need up to 10 GB are offered (your VRAM cap)"; statusLine(StatusText(st), "VRAM") != want {
		t.Errorf("status text's VRAM line is not %q:\n%s", want, StatusText(st))
	}
	est := 8.0
	id, err := env.admin.Submit(context.Background(), protocol.JobRequest{Kind: protocol.KindLLM, Model: "synthetic",
		Input: protocol.Object(`{"prompt":"hi"}`), VRAMGBEstimate: &est})
	if err != nil {
		t.Fatal(err)
	}
	if info := env.wait(id); info.Status != protocol.JobCompleted {
		t.Fatalf("an 8 GB job under a 10 GB cap: %+v", info)
	}
}

// waitWaiting polls the hub's job API until the job is queued with that waiting sentence.
func (e *testEnv) waitWaiting(id, want string) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := e.admin.Job(context.Background(), id)
		if err != nil {
			e.t.Fatalf("job %s: %v", id, err)
		}
		if info.Status == protocol.JobQueued && info.Waiting == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("job %s never waited with %q; last: %+v", id, want, info)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for an event
	}
}

// statusLine is the value of the status text's line with that label, "" when there is none.
func statusLine(text, label string) string {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, label+" "); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}
