package gpu

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSnapshotText(t *testing.T) {
	full := Snapshot{Source: SourceNVML, Devices: []Device{{
		Index: 0, Name: "NVIDIA GeForce RTX 4090", TotalMB: 24576, UsedMB: 6349, FreeMB: 18227,
		UtilizationPct: 35, HasUtilization: true, TemperatureC: 61, HasTemperature: true, PowerW: 220.4, HasPower: true,
		Processes: []Process{{PID: 1234, Name: "game.exe", UsedMB: 4198, Graphics: true}, {PID: 99, Name: "ollama", UsedMB: 2048}},
	}, {
		Index: 1, Name: "NVIDIA T400", TotalMB: 2048, UsedMB: 0, FreeMB: 2048,
	}}}
	tests := []struct {
		name    string
		snap    Snapshot
		want    []string
		notWant []string
	}{
		{
			name: "full",
			snap: full,
			want: []string{"GPU 0: NVIDIA GeForce RTX 4090\n", "6.2 GB / 24.0 GB used, 17.8 GB free", "35%", "61 °C", "220 W",
				"game.exe", "pid 1234", "graphics", "4.1 GB", "ollama", "compute", "GPU 1: NVIDIA T400", "Temp: n/a", "Processes: none"},
			notWant: []string{"simulated"},
		},
		{
			name: "no driver",
			snap: Snapshot{Source: SourceNone, Problem: "No NVIDIA driver found: VRAM checks are off"},
			want: []string{"No NVIDIA driver found: VRAM checks are off"},
		},
		{
			name: "no GPUs and no problem",
			snap: Snapshot{Source: SourceNVML},
			want: []string{"No NVIDIA GPU found."},
		},
		{
			name: "simulated",
			snap: Snapshot{Source: SourceSimulated, Simulated: true, Devices: []Device{{Name: "Demo GPU", TotalMB: 8192, FreeMB: 8192}}},
			want: []string{"GPU 0: Demo GPU (simulated)"},
		},
		{
			name: "partial read",
			snap: Snapshot{Source: SourceNVML, Problem: "Could not read GPU 0 (x): VRAM checks may be wrong", Devices: []Device{{Name: "Broken"}}},
			want: []string{"Could not read GPU 0", "VRAM:   unknown"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.snap.Text()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("Text() lacks %q:\n%s", w, got)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(got, w) {
					t.Errorf("Text() has %q:\n%s", w, got)
				}
			}
		})
	}
}

func TestSnapshotJSONIsSnakeCase(t *testing.T) {
	snap := Snapshot{Time: time.Unix(0, 0).UTC(), Source: SourceNVML, Devices: []Device{{
		Index: 0, Name: "X", UUID: "GPU-1", TotalMB: 1, UsedMB: 1, FreeMB: 0, HasUtilization: true, HasTemperature: true, HasPower: true,
		Processes: []Process{{PID: 1, Name: "p", UsedMB: 1, Graphics: true}},
	}}}
	b, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"time", "devices", "source", "simulated"} {
		if _, ok := m[k]; !ok {
			t.Errorf("snapshot JSON lacks %q: %s", k, b)
		}
	}
	if _, ok := m["problem"]; ok {
		t.Errorf("empty problem should be omitted: %s", b)
	}
	dev := m["devices"].([]any)[0].(map[string]any)
	for _, k := range []string{"index", "name", "uuid", "total_mb", "used_mb", "free_mb", "utilization_pct", "has_utilization",
		"temperature_c", "has_temperature", "power_w", "has_power", "processes"} {
		if _, ok := dev[k]; !ok {
			t.Errorf("device JSON lacks %q: %s", k, b)
		}
	}
	proc := dev["processes"].([]any)[0].(map[string]any)
	for _, k := range []string{"pid", "name", "used_mb", "graphics"} {
		if _, ok := proc[k]; !ok {
			t.Errorf("process JSON lacks %q: %s", k, b)
		}
	}
	var back Snapshot
	if err := json.Unmarshal(b, &back); err != nil || back.Devices[0].Processes[0] != snap.Devices[0].Processes[0] || !back.Time.Equal(snap.Time) {
		t.Errorf("round trip = %+v, %v", back, err)
	}
}

func TestSimulated(t *testing.T) {
	sim := NewSimulated("Demo RTX 4090", 24576)
	snap, err := sim.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	d := snap.Devices[0]
	if !snap.Simulated || snap.Source != SourceSimulated || d.Name != "Demo RTX 4090" || d.FreeMB != 24576 || d.UsedMB != 0 {
		t.Fatalf("fresh simulated GPU = %+v", snap)
	}

	procs := []Process{{PID: 7, Name: "game.exe", UsedMB: 4096, Graphics: true}}
	sim.SetProcesses(procs)
	procs[0].Name = "changed by caller"
	for _, tc := range []struct{ set, wantUsed int64 }{{10000, 10000}, {-5, 0}, {99999, 24576}} {
		sim.SetUsedMB(tc.set)
		snap, _ := sim.Sample(context.Background())
		d := snap.Devices[0]
		if d.UsedMB != tc.wantUsed || d.FreeMB != 24576-tc.wantUsed {
			t.Errorf("SetUsedMB(%d): used %d free %d", tc.set, d.UsedMB, d.FreeMB)
		}
		if len(d.Processes) != 1 || d.Processes[0].Name != "game.exe" {
			t.Errorf("processes = %+v, want the list as set (copied)", d.Processes)
		}
	}
	if err := sim.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Sample(context.Background()); err != nil {
		t.Errorf("Sample after Close: %v (a demo may restart its monitor)", err)
	}
	if NewSimulated("", 0).name == "" {
		t.Error("an empty name should get a visible default")
	}
}

func TestSimulatedConcurrentUse(t *testing.T) {
	sim := NewSimulated("Demo", 8192)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 200 {
				sim.SetUsedMB(int64(i*1000 + j))
				sim.SetProcesses([]Process{{PID: uint32(j), Graphics: true}})
			}
		})
		wg.Go(func() {
			for range 200 {
				snap, err := sim.Sample(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				if d := snap.Devices[0]; d.UsedMB+d.FreeMB != 8192 {
					t.Errorf("torn read: used %d + free %d", d.UsedMB, d.FreeMB)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestUnavailable(t *testing.T) {
	s := Unavailable("No NVIDIA driver found: VRAM checks are off")
	snap, err := s.Sample(context.Background())
	if err != nil || snap.Source != SourceNone || snap.Simulated || len(snap.Devices) != 0 || snap.Problem == "" {
		t.Fatalf("Unavailable sample = %+v, %v", snap, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Sample(ctx); err == nil {
		t.Error("a cancelled context should be an error")
	}
}

// Open must never fail and never return nil, whatever this machine has.
func TestOpenNeverFails(t *testing.T) {
	s := Open(Options{})
	if s == nil {
		t.Fatal("Open returned nil")
	}
	defer s.Close()
	snap, err := s.Sample(context.Background())
	if snap.Source == SourceNone && (err != nil || snap.Problem == "") {
		t.Errorf("fallback sampler: err %v, problem %q; want no error and a Problem", err, snap.Problem)
	}
	t.Logf("this machine: %s", strings.TrimSpace(snap.Text()))
}
