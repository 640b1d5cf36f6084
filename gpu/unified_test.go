// Tests of the Apple silicon sampler's arithmetic and contract. They run on every OS: the Mac's
// answers are fed in as values, because no Mac runs these tests here.
package gpu

import (
	"context"
	"errors"
	"strings"
	"testing"
)

const gbMB = 1024

func TestUnifiedBudget(t *testing.T) {
	tests := []struct {
		name      string
		host      unifiedHost
		reserveMB int64
		want      int64
	}{
		{"8 GB Mac keeps the 4 GB floor", unifiedHost{MemMB: 8 * gbMB}, 0, 4 * gbMB},
		{"16 GB Mac keeps the floor, a quarter", unifiedHost{MemMB: 16 * gbMB}, 0, 12 * gbMB},
		{"64 GB Mac keeps a quarter", unifiedHost{MemMB: 64 * gbMB}, 0, 48 * gbMB},
		{"a negative reserve is the default", unifiedHost{MemMB: 64 * gbMB}, -5, 48 * gbMB},
		{"the creator's reserve wins over the default", unifiedHost{MemMB: 64 * gbMB}, 6 * gbMB, 58 * gbMB},
		{"a wired limit below the budget caps it", unifiedHost{MemMB: 64 * gbMB, WiredLimitMB: 40 * gbMB}, 0, 40 * gbMB},
		{"a wired limit above the budget does not raise it", unifiedHost{MemMB: 64 * gbMB, WiredLimitMB: 60 * gbMB}, 0, 48 * gbMB},
		{"a reserve larger than memory leaves 0, not less", unifiedHost{MemMB: 16 * gbMB}, 20 * gbMB, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := unifiedBudgetMB(tc.host, tc.reserveMB); got != tc.want {
				t.Errorf("unifiedBudgetMB(%+v, %d) = %d, want %d", tc.host, tc.reserveMB, got, tc.want)
			}
		})
	}
}

func TestUnifiedFree(t *testing.T) {
	tests := []struct {
		name                    string
		budget, available, want int64
	}{
		{"others within the reserve: the whole budget", 24 * gbMB, 28 * gbMB, 24 * gbMB},
		{"others beyond the reserve: only what is available", 24 * gbMB, 10 * gbMB, 10 * gbMB},
		{"nothing available", 24 * gbMB, 0, 0},
		{"a nonsense negative reading is 0", 24 * gbMB, -3, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := unifiedFreeMB(tc.budget, tc.available); got != tc.want {
				t.Errorf("unifiedFreeMB(%d, %d) = %d, want %d", tc.budget, tc.available, got, tc.want)
			}
		})
	}
}

func TestUnifiedAvailable(t *testing.T) {
	tests := []struct {
		name     string
		pages    unifiedPages
		pageSize int64
		want     int64
	}{
		// 16 KB pages, as on Apple silicon: 64 pages make 1 MB.
		{"free, file cache and purgeable add up", unifiedPages{Free: 64 * 100, External: 64 * 50, Purgeable: 64 * 6}, 16384, 156},
		{"4 KB pages", unifiedPages{Free: 256 * 10}, 4096, 10},
		{"no page size is no memory", unifiedPages{Free: 1 << 20}, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.pages.availableMB(tc.pageSize); got != tc.want {
				t.Errorf("availableMB = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestUnifiedNameAndUUID(t *testing.T) {
	tests := []struct{ chip, name, uuid string }{
		{"Apple M2 Pro", "Apple M2 Pro", "unified-apple-m2-pro"},
		{"  Apple M4 Max\n", "Apple M4 Max", "unified-apple-m4-max"},
		{"VirtualApple @ 2.50GHz processor", "Apple silicon GPU", "unified-apple-silicon-gpu"},
		{"", "Apple silicon GPU", "unified-apple-silicon-gpu"},
	}
	for _, tc := range tests {
		snap, err := openUnified(unifiedHost{Chip: tc.chip, MemMB: 16 * gbMB, AppleSilicon: true}, nil, Options{}, nil, 0).Sample(context.Background())
		if err != nil || len(snap.Devices) != 1 {
			t.Fatalf("chip %q: %+v, %v", tc.chip, snap, err)
		}
		if d := snap.Devices[0]; d.Name != tc.name || d.UUID != tc.uuid {
			t.Errorf("chip %q: name %q uuid %q, want %q %q", tc.chip, d.Name, d.UUID, tc.name, tc.uuid)
		}
	}
}

// fakeMacPages stands in for the kernel's page counters, which only a Mac has.
type fakeMacPages struct {
	pages unifiedPages
	err   error
	reads int
}

func (f *fakeMacPages) read() (unifiedPages, error) {
	f.reads++
	return f.pages, f.err
}

func TestUnifiedSampler(t *testing.T) {
	const pageSize = 16384
	mb := func(n int64) uint64 { return uint64(n * bytesPerMB / pageSize) } // MB in 16 KB pages
	m2 := unifiedHost{Chip: "Apple M2 Pro", MemMB: 32 * gbMB, AppleSilicon: true}
	tests := []struct {
		name        string
		host        unifiedHost
		hostErr     error
		opts        Options
		pages       *fakeMacPages // nil: the Mac has no counters
		wantSource  string
		wantDevice  *Device // TotalMB, FreeMB, UsedMB checked
		wantProblem string  // "" means none
		wantErr     bool
	}{
		{
			name: "live: other programs within the reserve", host: m2,
			pages:      &fakeMacPages{pages: unifiedPages{Free: mb(20 * gbMB), External: mb(6 * gbMB), Purgeable: mb(1 * gbMB)}},
			wantSource: SourceUnified, wantDevice: &Device{TotalMB: 24 * gbMB, FreeMB: 24 * gbMB, UsedMB: 0},
		},
		{
			name: "live: other programs beyond the reserve", host: m2,
			pages:      &fakeMacPages{pages: unifiedPages{Free: mb(9 * gbMB), External: mb(1 * gbMB)}},
			wantSource: SourceUnified, wantDevice: &Device{TotalMB: 24 * gbMB, FreeMB: 10 * gbMB, UsedMB: 14 * gbMB},
		},
		{
			name: "the creator's reserve", host: m2, opts: Options{UnifiedReserveMB: 2 * gbMB},
			pages:      &fakeMacPages{pages: unifiedPages{Free: mb(31 * gbMB)}},
			wantSource: SourceUnified, wantDevice: &Device{TotalMB: 30 * gbMB, FreeMB: 30 * gbMB, UsedMB: 0},
		},
		{
			name: "no counters: the fixed budget, said so", host: m2,
			wantSource: SourceUnified, wantDevice: &Device{TotalMB: 24 * gbMB, FreeMB: 24 * gbMB, UsedMB: 0},
			wantProblem: "fixed unified-memory budget",
		},
		{
			name: "a failed read keeps the device and says so", host: m2,
			pages:      &fakeMacPages{err: errors.New("sysctl vm.page_free_count: operation not permitted")},
			wantSource: SourceUnified, wantDevice: &Device{TotalMB: 24 * gbMB, FreeMB: 24 * gbMB, UsedMB: 0},
			wantProblem: "operation not permitted", wantErr: true,
		},
		{
			name: "a reserve that leaves nothing", host: m2, opts: Options{UnifiedReserveMB: 40 * gbMB},
			pages:      &fakeMacPages{pages: unifiedPages{Free: mb(20 * gbMB)}},
			wantSource: SourceUnified, wantDevice: &Device{TotalMB: 0, FreeMB: 0, UsedMB: 0},
			wantProblem: "lower gpu.unified_memory_reserve_mb",
		},
		{
			name: "Intel Mac", host: unifiedHost{Chip: "Intel(R) Core(TM) i9-9880H CPU @ 2.30GHz", MemMB: 32 * gbMB},
			pages:      &fakeMacPages{pages: unifiedPages{Free: mb(20 * gbMB)}},
			wantSource: SourceNone, wantProblem: "Intel processor",
		},
		{
			name: "memory size unreadable", hostErr: errors.New("sysctl hw.memsize: no such file or directory"),
			wantSource: SourceNone, wantProblem: "memory size",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var read func() (unifiedPages, error)
			if tc.pages != nil {
				read = tc.pages.read
			}
			s := openUnified(tc.host, tc.hostErr, tc.opts, read, pageSize)
			defer s.Close()
			snap, err := s.Sample(context.Background())
			if (err != nil) != tc.wantErr {
				t.Fatalf("Sample error = %v, want error %v", err, tc.wantErr)
			}
			if snap.Source != tc.wantSource || snap.Simulated {
				t.Errorf("source %q simulated %v, want %q", snap.Source, snap.Simulated, tc.wantSource)
			}
			if tc.wantProblem == "" && snap.Problem != "" || !strings.Contains(snap.Problem, tc.wantProblem) {
				t.Errorf("problem %q, want one with %q", snap.Problem, tc.wantProblem)
			}
			if tc.wantDevice == nil {
				if len(snap.Devices) != 0 || snap.Devices == nil {
					t.Errorf("devices %+v, want an empty list", snap.Devices)
				}
				return
			}
			if len(snap.Devices) != 1 {
				t.Fatalf("devices %+v, want one", snap.Devices)
			}
			d, w := snap.Devices[0], tc.wantDevice
			if d.TotalMB != w.TotalMB || d.FreeMB != w.FreeMB || d.UsedMB != w.UsedMB {
				t.Errorf("total/free/used %d/%d/%d MB, want %d/%d/%d", d.TotalMB, d.FreeMB, d.UsedMB, w.TotalMB, w.FreeMB, w.UsedMB)
			}
			if !d.UnifiedMemory || d.Index != 0 || d.Processes == nil || d.HasUtilization || d.HasTemperature || d.HasPower {
				t.Errorf("device %+v: want unified memory, index 0, an empty process list, nothing it cannot know", d)
			}
		})
	}
}

func TestUnifiedSamplerIsLive(t *testing.T) {
	// Each Sample reads the counters again: a job that loads a model shows at the next sample.
	f := &fakeMacPages{pages: unifiedPages{Free: 64 * 20 * gbMB}}
	s := openUnified(unifiedHost{MemMB: 32 * gbMB, AppleSilicon: true}, nil, Options{}, f.read, 16384)
	first, _ := s.Sample(context.Background())
	f.pages.Free = 64 * 5 * gbMB
	second, _ := s.Sample(context.Background())
	if f.reads != 2 || first.Devices[0].FreeMB != 20*gbMB || second.Devices[0].FreeMB != 5*gbMB {
		t.Errorf("reads %d, free %d then %d MB; want 2 reads, 20480 then 5120", f.reads, first.Devices[0].FreeMB, second.Devices[0].FreeMB)
	}
}

func TestUnifiedSamplerContract(t *testing.T) {
	s := openUnified(unifiedHost{MemMB: 16 * gbMB, AppleSilicon: true}, nil, Options{}, nil, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Sample(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Sample on a cancelled context: %v, want context.Canceled", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	snap, err := s.Sample(context.Background())
	if !errors.Is(err, ErrClosed) || snap.Problem == "" || len(snap.Devices) != 0 {
		t.Errorf("Sample after Close: %+v, %v; want ErrClosed, a problem and no devices", snap, err)
	}
}

func TestUnifiedText(t *testing.T) {
	snap := Snapshot{Source: SourceUnified, Devices: []Device{{
		Index: 0, Name: "Apple M2 Pro", UUID: "unified-apple-m2-pro", TotalMB: 24 * gbMB, UsedMB: 2 * gbMB, FreeMB: 22 * gbMB,
		UnifiedMemory: true, Processes: []Process{},
	}}}
	got := snap.Text()
	for _, w := range []string{"GPU 0: Apple M2 Pro (unified memory)\n", "Memory: 2.0 GB / 24.0 GB used, 22.0 GB free", "share of unified memory"} {
		if !strings.Contains(got, w) {
			t.Errorf("Text() lacks %q:\n%s", w, got)
		}
	}
	if strings.Contains(got, "VRAM") {
		t.Errorf("Text() calls unified memory VRAM:\n%s", got)
	}
}

func TestSysctlNumber(t *testing.T) {
	tests := []struct {
		name    string
		raw     []byte
		want    int64
		wantErr bool
	}{
		{"32-bit", []byte{1, 0, 0, 0}, 1, false},
		{"32-bit negative", []byte{0xff, 0xff, 0xff, 0xff}, -1, false},
		{"64-bit memsize", []byte{0, 0, 0, 0, 8, 0, 0, 0}, 32 << 30, false},
		{"empty", nil, 0, true},
		{"odd width", []byte{1, 2}, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sysctlNumber(tc.raw)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("sysctlNumber(%v) = %d, %v; want %d, error %v", tc.raw, got, err, tc.want, tc.wantErr)
			}
		})
	}
}
