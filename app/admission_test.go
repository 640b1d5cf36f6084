// admission_test.go: the admission policy's table — every decline reason and the VRAM arithmetic.

package app

import (
	"strings"
	"testing"
	"time"
)

func TestAdmit(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	// base is an offer that is accepted on a single 24 GB GPU; each row
	// changes what it is about.
	base := func() AdmissionInput {
		return AdmissionInput{
			MaxConcurrent: 1,
			Kind:          "llm", Model: "llama3:8b",
			Supported:  map[string][]string{"llm": {"llama3:8b", "qwen2.5:7b"}, "image": {"*"}},
			EstimateGB: 6,
			CapGB:      20,
			GPUs:       []GPUFree{{Index: 0, FreeMB: 12 * 1024}},
			ExpiresAt:  now.Add(30 * time.Second), Now: now,
			AutoAccept: true,
		}
	}
	tests := []struct {
		name    string
		change  func(in *AdmissionInput)
		want    Decision
		wantGPU int
		why     string // substring of Why
		whyNot  string // a substring Why must not have, "" for none
	}{
		{name: "accept", change: func(in *AdmissionInput) {}, want: DecisionAccept, wantGPU: 0, why: "GPU 0"},
		{name: "paused", change: func(in *AdmissionInput) { in.Paused = true }, want: DeclinePaused, wantGPU: -1, why: "paused"},
		{name: "draining", change: func(in *AdmissionInput) { in.Draining = true }, want: DeclinePaused, wantGPU: -1, why: "finishing"},
		{name: "yielding", change: func(in *AdmissionInput) { in.Yielding = true }, want: DeclinePaused, wantGPU: -1, why: "another program"},
		{name: "paused wins over every other reason", change: func(in *AdmissionInput) {
			in.Paused, in.Running, in.Kind, in.EstimateGB, in.ExpiresAt = true, 5, "video", 500, now.Add(-time.Hour)
		}, want: DeclinePaused, wantGPU: -1},
		{name: "busy", change: func(in *AdmissionInput) { in.Running = 1 }, want: DeclineBusy, wantGPU: -1, why: "1 of 1"},
		{name: "the spool's disk is nearly full", change: func(in *AdmissionInput) { in.SpoolFreeMB, in.SpoolMarginMB = 300, 1024 },
			want: DeclineBusy, wantGPU: -1, why: "300 MB free, less than the 1024 MB kept free (spool_free_margin_mb)"},
		{name: "enough room on the spool's disk", change: func(in *AdmissionInput) { in.SpoolFreeMB, in.SpoolMarginMB = 5000, 1024 },
			want: DecisionAccept, wantGPU: 0},
		{name: "free space unknown: no refusal on a guess", change: func(in *AdmissionInput) { in.SpoolFreeMB, in.SpoolMarginMB = -1, 1024 },
			want: DecisionAccept, wantGPU: 0},
		{name: "zero MaxConcurrent means one slot", change: func(in *AdmissionInput) { in.MaxConcurrent, in.Running = 0, 1 }, want: DeclineBusy, wantGPU: -1},
		{name: "a free slot of several", change: func(in *AdmissionInput) { in.MaxConcurrent, in.Running = 3, 2 }, want: DecisionAccept, wantGPU: 0},
		{name: "busy before unsupported", change: func(in *AdmissionInput) { in.Running, in.Kind = 1, "video" }, want: DeclineBusy, wantGPU: -1},
		{name: "unsupported kind", change: func(in *AdmissionInput) { in.Kind = "video" }, want: DeclineUnsupported, wantGPU: -1, why: `"video"`},
		{name: "unsupported model", change: func(in *AdmissionInput) { in.Model = "mixtral:8x22b" }, want: DeclineUnsupported, wantGPU: -1, why: `"mixtral:8x22b"`},
		{name: "nothing supported", change: func(in *AdmissionInput) { in.Supported = nil }, want: DeclineUnsupported, wantGPU: -1},
		{name: "wildcard model", change: func(in *AdmissionInput) { in.Kind, in.Model = "image", "sdxl" }, want: DecisionAccept, wantGPU: 0},
		{name: "offer without a model", change: func(in *AdmissionInput) { in.Model = "" }, want: DecisionAccept, wantGPU: 0},
		{name: "unsupported before vram", change: func(in *AdmissionInput) { in.Kind, in.EstimateGB = "video", 500 }, want: DeclineUnsupported, wantGPU: -1},
		{name: "over the user's cap", change: func(in *AdmissionInput) { in.CapGB = 4 }, want: DeclineVRAM, wantGPU: -1, why: "needs 6.0 GB but your VRAM limit is 4.0 GB"},
		{name: "not enough free VRAM once the margin is kept", change: func(in *AdmissionInput) {
			in.GPUs = []GPUFree{{Index: 0, FreeMB: 6 * 1024}} // 6 GB free, 6 GB needed, 1 GB margin
		}, want: DeclineVRAM, wantGPU: -1, why: "needs 6.0 GB but GPU 0 has 6.0 GB free (1.0 GB kept spare)"},
		{name: "exactly enough with the margin", change: func(in *AdmissionInput) {
			in.GPUs = []GPUFree{{Index: 0, FreeMB: 7 * 1024}}
		}, want: DecisionAccept, wantGPU: 0},
		{name: "custom margin", change: func(in *AdmissionInput) {
			in.GPUs, in.SafetyMarginMB = []GPUFree{{Index: 0, FreeMB: 7 * 1024}}, 2048
		}, want: DeclineVRAM, wantGPU: -1, why: "2.0 GB kept spare"},
		{name: "negative margin means none", change: func(in *AdmissionInput) {
			in.GPUs, in.SafetyMarginMB = []GPUFree{{Index: 0, FreeMB: 6 * 1024}}, -1
		}, want: DecisionAccept, wantGPU: 0},
		{name: "reserved VRAM counts as used", change: func(in *AdmissionInput) {
			in.ReservedMB = map[int]int64{0: 6 * 1024} // 12 free - 6 promised = 6 < 6 + 1
		}, want: DeclineVRAM, wantGPU: -1, why: "after 6.0 GB promised to other jobs"},
		{name: "unknown estimate always fits", change: func(in *AdmissionInput) {
			in.EstimateGB, in.GPUs = 0, []GPUFree{{Index: 0, FreeMB: 100}}
		}, want: DecisionAccept, wantGPU: 0},
		{name: "no NVML: only the cap applies (fits)", change: func(in *AdmissionInput) { in.GPUs = nil }, want: DecisionAccept, wantGPU: -1},
		{name: "no NVML: only the cap applies (too big)", change: func(in *AdmissionInput) { in.GPUs, in.EstimateGB = nil, 21 }, want: DeclineVRAM, wantGPU: -1, why: "limit"},
		{name: "no NVML and no cap", change: func(in *AdmissionInput) { in.GPUs, in.CapGB, in.EstimateGB = nil, 0, 300 }, want: DecisionAccept, wantGPU: -1},
		{name: "no GPU seen and no cap: a stated need is declined", change: func(in *AdmissionInput) {
			in.GPUs, in.CapGB, in.NoVRAM, in.EstimateGB = nil, 0, true, 8
		}, want: DeclineVRAM, wantGPU: -1, why: "needs 8.0 GB of VRAM but no GPU is seen here and you set no VRAM cap"},
		{name: "no GPU seen and no cap: no stated need runs", change: func(in *AdmissionInput) {
			in.GPUs, in.CapGB, in.NoVRAM, in.EstimateGB = nil, 0, true, 0
		}, want: DecisionAccept, wantGPU: -1, why: "runs without a GPU"},
		{name: "vram before expired", change: func(in *AdmissionInput) { in.CapGB, in.ExpiresAt = 1, now }, want: DeclineVRAM, wantGPU: -1},
		{name: "expired at exactly now", change: func(in *AdmissionInput) { in.ExpiresAt = now }, want: DeclineExpired, wantGPU: -1, why: "expired"},
		{name: "expired in the past", change: func(in *AdmissionInput) { in.ExpiresAt = now.Add(-time.Second) }, want: DeclineExpired, wantGPU: -1},
		{name: "no expiry given", change: func(in *AdmissionInput) { in.ExpiresAt = time.Time{} }, want: DecisionAccept, wantGPU: 0},
		{name: "expired before wait", change: func(in *AdmissionInput) { in.ExpiresAt, in.AutoAccept = now, false }, want: DeclineExpired, wantGPU: -1},
		{name: "wait for the user", change: func(in *AdmissionInput) { in.AutoAccept = false }, want: DecisionWait, wantGPU: 0, why: "auto-accept is off"},
		{name: "multi-GPU: the one with most free memory", change: func(in *AdmissionInput) {
			in.GPUs = []GPUFree{{Index: 0, FreeMB: 8 * 1024}, {Index: 1, FreeMB: 20 * 1024}, {Index: 2, FreeMB: 10 * 1024}}
		}, want: DecisionAccept, wantGPU: 1, why: "GPU 1 has 20.0 GB free"},
		{name: "multi-GPU: reservations move the choice", change: func(in *AdmissionInput) {
			in.GPUs = []GPUFree{{Index: 0, FreeMB: 8 * 1024}, {Index: 1, FreeMB: 20 * 1024}, {Index: 2, FreeMB: 10 * 1024}}
			in.ReservedMB = map[int]int64{1: 14 * 1024}
		}, want: DecisionAccept, wantGPU: 2},
		{name: "multi-GPU: none fits, the best one is named", change: func(in *AdmissionInput) {
			in.GPUs = []GPUFree{{Index: 3, FreeMB: 2 * 1024}, {Index: 5, FreeMB: 3 * 1024}}
		}, want: DeclineVRAM, wantGPU: -1, why: "GPU 5 has 3.0 GB free"},
		{name: "multi-GPU: ties go to the lower index", change: func(in *AdmissionInput) {
			in.GPUs = []GPUFree{{Index: 4, FreeMB: 16 * 1024}, {Index: 2, FreeMB: 16 * 1024}}
		}, want: DecisionAccept, wantGPU: 2},

		// The backend's own figures (Ollama's /api/ps, ComfyUI's /system_stats).
		{name: "a loaded model needs only what it does not hold already", change: func(in *AdmissionInput) {
			in.GPUs = []GPUFree{{Index: 0, FreeMB: 4 * 1024}}                           // 6 GB estimated, 4 GB free
			in.Backend, in.BackendModel, in.BackendHeldMB = "Ollama", "llama3:8b", 5939 // 5.8 GB
		}, want: DecisionAccept, wantGPU: 0,
			why: "fits: llama3:8b is loaded in Ollama already, holding 5.8 GB, so it needs 0.2 GB more of the 6.0 GB estimated, and GPU 0 has 4.0 GB free"},
		{name: "the same offer without the model loaded", change: func(in *AdmissionInput) {
			in.GPUs = []GPUFree{{Index: 0, FreeMB: 4 * 1024}}
			in.Backend, in.BackendModel = "Ollama", "llama3:8b"
		}, want: DeclineVRAM, wantGPU: -1, why: "needs 6.0 GB but GPU 0 has 4.0 GB free (1.0 GB kept spare)", whyNot: "loaded"},
		{name: "a loaded model that holds all its estimate fits a full GPU", change: func(in *AdmissionInput) {
			in.GPUs = []GPUFree{{Index: 0, FreeMB: 100}}
			in.Backend, in.BackendModel, in.BackendHeldMB = "Ollama", "llama3:8b", 7*1024
		}, want: DecisionAccept, wantGPU: 0, why: "fits: llama3:8b is loaded in Ollama already, holding 7.0 GB, which covers the 6.0 GB estimated"},
		{name: "loaded, but what it needs more does not fit", change: func(in *AdmissionInput) {
			in.GPUs = []GPUFree{{Index: 0, FreeMB: 2 * 1024}}
			in.Backend, in.BackendModel, in.BackendHeldMB = "Ollama", "llama3:8b", 2*1024
		}, want: DeclineVRAM, wantGPU: -1,
			why: "needs 6.0 GB; llama3:8b is loaded in Ollama already, holding 2.0 GB, so 4.0 GB more, but GPU 0 has 2.0 GB free (1.0 GB kept spare)"},
		{name: "a loaded model does not lift the user's cap", change: func(in *AdmissionInput) {
			in.CapGB, in.Backend, in.BackendModel, in.BackendHeldMB = 4, "Ollama", "llama3:8b", 6*1024
		}, want: DeclineVRAM, wantGPU: -1, why: "your VRAM limit is 4.0 GB"},
		{name: "a held figure without an estimate changes nothing", change: func(in *AdmissionInput) {
			in.EstimateGB, in.Backend, in.BackendModel, in.BackendHeldMB = 0, "Ollama", "llama3:8b", 6*1024
		}, want: DecisionAccept, wantGPU: 0, why: "no VRAM estimate; GPU 0 has the most free (12.0 GB)", whyNot: "loaded"},
		{name: "ComfyUI's free counts when it is more than the driver's", change: func(in *AdmissionInput) {
			in.Kind, in.Model = "image", "sdxl"
			in.GPUs = []GPUFree{{Index: 0, FreeMB: 4 * 1024}}
			in.Backend, in.BackendFree = "ComfyUI", []GPUFree{{Index: 0, FreeMB: 10 * 1024}}
		}, want: DecisionAccept, wantGPU: 0,
			why: "needs 6.0 GB and GPU 0 has 10.0 GB free as ComfyUI counts it (its unused cache is free to it; the driver says 4.0 GB)"},
		{name: "ComfyUI's free when it is less than the driver's", change: func(in *AdmissionInput) {
			in.Kind, in.Model = "image", "sdxl"
			in.Backend, in.BackendFree = "ComfyUI", []GPUFree{{Index: 0, FreeMB: 3 * 1024}}
		}, want: DecisionAccept, wantGPU: 0, why: "GPU 0 has 12.0 GB free", whyNot: "ComfyUI"},
		{name: "ComfyUI's free for another GPU", change: func(in *AdmissionInput) {
			in.Kind, in.Model = "image", "sdxl"
			in.GPUs = []GPUFree{{Index: 0, FreeMB: 4 * 1024}}
			in.Backend, in.BackendFree = "ComfyUI", []GPUFree{{Index: 1, FreeMB: 20 * 1024}}
		}, want: DeclineVRAM, wantGPU: -1, why: "GPU 0 has 4.0 GB free", whyNot: "ComfyUI"},
		{name: "ComfyUI's free moves the multi-GPU choice", change: func(in *AdmissionInput) {
			in.Kind, in.Model = "image", "sdxl"
			in.GPUs = []GPUFree{{Index: 0, FreeMB: 8 * 1024}, {Index: 1, FreeMB: 6 * 1024}}
			in.Backend, in.BackendFree = "ComfyUI", []GPUFree{{Index: 1, FreeMB: 14 * 1024}}
		}, want: DecisionAccept, wantGPU: 1, why: "GPU 1 has 14.0 GB free as ComfyUI counts it"},
		{name: "promises count against ComfyUI's free too", change: func(in *AdmissionInput) {
			in.Kind, in.Model = "image", "sdxl"
			in.GPUs = []GPUFree{{Index: 0, FreeMB: 4 * 1024}}
			in.Backend, in.BackendFree = "ComfyUI", []GPUFree{{Index: 0, FreeMB: 10 * 1024}}
			in.ReservedMB = map[int]int64{0: 5 * 1024}
		}, want: DeclineVRAM, wantGPU: -1, why: "GPU 0 has 5.0 GB free as ComfyUI counts it (its unused cache is free to it; the driver says 4.0 GB) after 5.0 GB promised to other jobs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := base()
			tc.change(&in)
			got := Admit(in)
			if got.Decision != tc.want || got.GPU != tc.wantGPU {
				t.Errorf("Admit = %+v, want decision %q on GPU %d", got, tc.want, tc.wantGPU)
			}
			if got.Why == "" || !strings.Contains(got.Why, tc.why) {
				t.Errorf("Why = %q, want it to contain %q", got.Why, tc.why)
			}
			if tc.whyNot != "" && strings.Contains(got.Why, tc.whyNot) {
				t.Errorf("Why = %q, want it without %q", got.Why, tc.whyNot)
			}
		})
	}
}

func TestAdmissionNeedMB(t *testing.T) {
	tests := []struct {
		name         string
		estimateGB   float64
		heldMB, want int64
	}{
		{"no estimate", 0, 4096, 0},
		{"nothing loaded", 6, 0, 6144},
		{"part of it held", 6, 5939, 205},
		{"all of it held", 6, 8192, 0},
		{"a negative figure is none", 6, -10, 6144},
		{"a fraction of an MB rounds up", 0.0001, 0, 1},
	}
	for _, tc := range tests {
		if got := AdmissionNeedMB(AdmissionInput{EstimateGB: tc.estimateGB, BackendHeldMB: tc.heldMB}); got != tc.want {
			t.Errorf("%s: AdmissionNeedMB = %d, want %d", tc.name, got, tc.want)
		}
	}
}
