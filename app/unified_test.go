// The worker's copy of a GPU sample into the window's state keeps the unified-memory flag (Apple
// silicon), through the JSON the control socket carries too, so a window attached to a worker
// that runs as a service also says unified memory rather than VRAM.
package app

import (
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"studioworker/gpu"
)

func TestGPUCardKeepsUnifiedMemory(t *testing.T) {
	tests := []struct {
		name string
		snap gpu.Snapshot
		want bool
	}{
		{"Apple silicon", gpu.Snapshot{Source: gpu.SourceUnified, Devices: []gpu.Device{{
			Name: "Apple M2 Pro", UUID: "unified-apple-m2-pro", TotalMB: 24576, FreeMB: 20480, UsedMB: 4096, UnifiedMemory: true}}}, true},
		{"an NVIDIA card", gpu.Snapshot{Source: gpu.SourceNVML, Devices: []gpu.Device{{
			Name: "NVIDIA GeForce RTX 4090", UUID: "GPU-1", TotalMB: 24564, FreeMB: 20000, UsedMB: 4564}}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			w, err := NewWorker(Options{ConfigPath: filepath.Join(t.TempDir(), "config.json"), Config: cfg,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Sampler: gpu.Unavailable("")})
			if err != nil {
				t.Fatal(err)
			}
			tc.snap.Time = time.Now()
			w.onSnapshot(tc.snap)
			st := w.Observers().Snapshot()
			if len(st.GPU.Cards) != 1 || st.GPU.Cards[0].UnifiedMemory != tc.want {
				t.Fatalf("cards %+v, want one with unified memory %v", st.GPU.Cards, tc.want)
			}
			raw, err := json.Marshal(st)
			if err != nil {
				t.Fatal(err)
			}
			var back State
			if err := json.Unmarshal(raw, &back); err != nil {
				t.Fatal(err)
			}
			if back.GPU.Cards[0].UnifiedMemory != tc.want {
				t.Errorf("after JSON, unified memory %v, want %v", back.GPU.Cards[0].UnifiedMemory, tc.want)
			}
		})
	}
}
