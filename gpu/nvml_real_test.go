//go:build linux && cgo

package gpu

import (
	"context"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// TestRealNVML runs against the machine's own driver when there is one.
func TestRealNVML(t *testing.T) {
	s, err := NewNVML(nvml.New())
	if err != nil {
		t.Skipf("no NVIDIA driver on this machine: %v", err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	snap, err := s.Sample(context.Background())
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	if len(snap.Devices) == 0 {
		t.Fatal("NVML started but reported no GPUs")
	}
	for _, d := range snap.Devices {
		if d.Name == "" || d.TotalMB <= 0 || d.UsedMB < 0 || d.UsedMB > d.TotalMB || d.FreeMB > d.TotalMB {
			t.Errorf("GPU %d looks wrong: %+v", d.Index, d)
		}
	}
	t.Logf("\n%s", snap.Text())
}
