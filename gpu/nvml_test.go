//go:build linux && cgo

package gpu

import (
	"context"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

const (
	gib = 1024 * 1024 * 1024
	mib = 1024 * 1024
)

// newMockMachine is a DGX H100 cut down to n GPUs, with every call the
// sampler makes wired to healthy values (the stock mock panics on them).
// Tests then break the calls they are about.
func newMockMachine(t *testing.T, n int) (*server.Server, []*server.Device) {
	t.Helper()
	srv := dgxh100.New()
	srv.Devices = srv.Devices[:n]
	devs := make([]*server.Device, n)
	for i := range n {
		d := srv.Devices[i].(*server.Device)
		devs[i] = d
		d.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) {
			return nvml.Memory_v2{Total: 80 * gib, Reserved: 1 * gib, Used: 9 * gib, Free: 70 * gib}, nvml.SUCCESS
		}
		d.MemoryInfo = nvml.Memory{Total: 80 * gib, Used: 10 * gib, Free: 70 * gib}
		d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: 42, Memory: 7}, nvml.SUCCESS
		}
		d.GetTemperatureFunc = func(s nvml.TemperatureSensors) (uint32, nvml.Return) {
			if s != nvml.TEMPERATURE_GPU {
				return 0, nvml.ERROR_INVALID_ARGUMENT
			}
			return 65, nvml.SUCCESS
		}
		d.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 250500, nvml.SUCCESS }
		d.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
		d.GetGraphicsRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
	}
	return srv, devs
}

// newTestSampler builds the NVML sampler on lib with process names taken
// from names instead of /proc, since mock PIDs are not real processes.
func newTestSampler(t *testing.T, lib nvml.Interface, names map[uint32]string) *nvmlSampler {
	t.Helper()
	s, err := NewNVML(lib)
	if err != nil {
		t.Fatalf("NewNVML: %v", err)
	}
	ns := s.(*nvmlSampler)
	ns.procName = func(pid uint32) string { return names[pid] }
	t.Cleanup(func() { _ = ns.Close() })
	return ns
}

func TestNVMLSampleHealthy(t *testing.T) {
	srv, devs := newMockMachine(t, 2)
	devs[1].GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return []nvml.ProcessInfo{
			{Pid: 100, UsedGpuMemory: 10 * gib},
			{Pid: 300, UsedGpuMemory: 1 * gib},
			{Pid: 400, UsedGpuMemory: ^uint64(0)}, // NVML_VALUE_NOT_AVAILABLE
		}, nvml.SUCCESS
	}
	devs[1].GetGraphicsRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return []nvml.ProcessInfo{
			{Pid: 200, UsedGpuMemory: 4 * gib},
			{Pid: 300, UsedGpuMemory: 1 * gib}, // draws and computes: kept once, as graphics
		}, nvml.SUCCESS
	}
	s := newTestSampler(t, srv, map[uint32]string{100: "python3", 200: "game.exe", 300: "blender"})

	snap, err := s.Sample(context.Background())
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	if snap.Source != SourceNVML || snap.Simulated || snap.Problem != "" || snap.Time.IsZero() {
		t.Fatalf("snapshot header = %+v", snap)
	}
	if len(snap.Devices) != 2 {
		t.Fatalf("got %d devices, want 2", len(snap.Devices))
	}
	d := snap.Devices[1]
	want := Device{
		Index: 1, Name: "NVIDIA H100 80GB HBM3", UUID: devs[1].UUID,
		TotalMB: 80 * 1024, UsedMB: 9 * 1024, FreeMB: 70 * 1024, // from _v2: reserved not counted as used
		UtilizationPct: 42, HasUtilization: true,
		TemperatureC: 65, HasTemperature: true,
		PowerW: 250.5, HasPower: true,
	}
	gotHead := d
	gotHead.Processes = nil
	if !reflect.DeepEqual(gotHead, want) {
		t.Errorf("device 1 =\n %+v\nwant\n %+v", gotHead, want)
	}
	wantProcs := []Process{
		{PID: 100, Name: "python3", UsedMB: 10 * 1024},
		{PID: 200, Name: "game.exe", UsedMB: 4 * 1024, Graphics: true},
		{PID: 300, Name: "blender", UsedMB: 1024, Graphics: true},
		{PID: 400, Name: "", UsedMB: 0, MemoryUnknown: true},
	}
	if len(d.Processes) != len(wantProcs) {
		t.Fatalf("processes = %+v, want %+v", d.Processes, wantProcs)
	}
	for i := range wantProcs {
		if d.Processes[i] != wantProcs[i] {
			t.Errorf("process %d = %+v, want %+v", i, d.Processes[i], wantProcs[i])
		}
	}
	if snap.Devices[0].Processes == nil {
		t.Error("a GPU without processes should have an empty list, not nil (JSON [] not null)")
	}
}

func TestNVMLPerCallOutcomes(t *testing.T) {
	tests := []struct {
		name     string
		breakIt  func(d *server.Device)
		check    func(t *testing.T, d Device)
		wantErr  string      // substring; "" means no error
		wantIs   nvml.Return // when non-zero, errors.Is must hold
		wantNoV2 bool        // _v2 must have been given up after the first sample
	}{
		{
			name: "memory _v2 not supported falls back to v1",
			breakIt: func(d *server.Device) {
				d.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) { return nvml.Memory_v2{}, nvml.ERROR_NOT_SUPPORTED }
			},
			check: func(t *testing.T, d Device) {
				if d.TotalMB != 80*1024 || d.UsedMB != 10*1024 || d.FreeMB != 70*1024 {
					t.Errorf("memory = %d/%d/%d, want v1's 81920/10240/71680", d.TotalMB, d.UsedMB, d.FreeMB)
				}
			},
			wantNoV2: true,
		},
		{
			name:    "memory _v2 missing from the mock (panics) falls back to v1",
			breakIt: func(d *server.Device) { d.GetMemoryInfo_v2Func = nil },
			check: func(t *testing.T, d Device) {
				if d.UsedMB != 10*1024 {
					t.Errorf("UsedMB = %d, want v1's 10240", d.UsedMB)
				}
			},
			wantNoV2: true,
		},
		{
			name: "temperature, power, utilisation and processes not supported are no value, not failure",
			breakIt: func(d *server.Device) {
				d.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
				d.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
				d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{}, nvml.ERROR_NOT_SUPPORTED }
				d.GetGraphicsRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.ERROR_NOT_SUPPORTED }
			},
			check: func(t *testing.T, d Device) {
				if d.HasTemperature || d.HasPower || d.HasUtilization {
					t.Errorf("Has* = %v/%v/%v, want all false", d.HasTemperature, d.HasPower, d.HasUtilization)
				}
				if d.FreeMB != 70*1024 {
					t.Errorf("FreeMB = %d, memory must still be read", d.FreeMB)
				}
			},
		},
		{
			name: "a real power failure is an error, the rest is still read",
			breakIt: func(d *server.Device) {
				d.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 0, nvml.ERROR_UNKNOWN }
			},
			check: func(t *testing.T, d Device) {
				if d.HasPower || !d.HasTemperature || d.FreeMB != 70*1024 {
					t.Errorf("device = %+v, want power missing and the rest present", d)
				}
			},
			wantErr: "GetPowerUsage",
			wantIs:  nvml.ERROR_UNKNOWN,
		},
		{
			name:    "a panicking call becomes an error",
			breakIt: func(d *server.Device) { d.GetUtilizationRatesFunc = nil },
			check: func(t *testing.T, d Device) {
				if d.HasUtilization || d.FreeMB != 70*1024 {
					t.Errorf("device = %+v, want utilisation missing and memory present", d)
				}
			},
			wantErr: "GetUtilizationRates panicked",
		},
		{
			name: "no memory figures at all is an error, even when not supported",
			breakIt: func(d *server.Device) {
				d.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) { return nvml.Memory_v2{}, nvml.ERROR_NOT_SUPPORTED }
				d.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) { return nvml.Memory{}, nvml.ERROR_NOT_SUPPORTED }
			},
			check:    func(t *testing.T, d Device) {},
			wantErr:  "GetMemoryInfo",
			wantIs:   nvml.ERROR_NOT_SUPPORTED,
			wantNoV2: true,
		},
		{
			name: "a lost GPU is explained",
			breakIt: func(d *server.Device) {
				d.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) { return nvml.Memory_v2{}, nvml.ERROR_GPU_IS_LOST }
				d.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) { return nvml.Memory{}, nvml.ERROR_GPU_IS_LOST }
			},
			check:    func(t *testing.T, d Device) {},
			wantErr:  "GetMemoryInfo: GPU is lost",
			wantIs:   nvml.ERROR_GPU_IS_LOST,
			wantNoV2: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, devs := newMockMachine(t, 1)
			tc.breakIt(devs[0])
			s := newTestSampler(t, srv, nil)
			for round := range 2 {
				snap, err := s.Sample(context.Background())
				if tc.wantErr == "" {
					if err != nil || snap.Problem != "" {
						t.Fatalf("round %d: err = %v, problem = %q; want neither", round, err, snap.Problem)
					}
				} else {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("round %d: err = %v, want it to mention %q", round, err, tc.wantErr)
					}
					if tc.wantIs != 0 && !errors.Is(err, tc.wantIs) {
						t.Errorf("round %d: errors.Is(%v, %v) = false", round, err, tc.wantIs)
					}
					if !strings.Contains(snap.Problem, "GPU 0") {
						t.Errorf("round %d: Problem = %q, want a sentence naming GPU 0", round, snap.Problem)
					}
				}
				if len(snap.Devices) != 1 {
					t.Fatalf("round %d: %d devices, want 1 (partial values are kept)", round, len(snap.Devices))
				}
				tc.check(t, snap.Devices[0])
			}
			if s.noMemoryV2[0] != tc.wantNoV2 {
				t.Errorf("_v2 given up = %v, want %v", s.noMemoryV2[0], tc.wantNoV2)
			}
			// The mock records a call only when its func is set, so a
			// panicking _v2 leaves no count to check.
			if v2 := len(devs[0].GetMemoryInfo_v2Calls()); tc.wantNoV2 && devs[0].GetMemoryInfo_v2Func != nil && v2 != 1 {
				t.Errorf("GetMemoryInfo_v2 called %d times over 2 samples; want 1 (the failure is remembered)", v2)
			}
		})
	}
}

func TestNVMLDeviceCountPanicIsAnError(t *testing.T) {
	srv, _ := newMockMachine(t, 1)
	srv.DeviceGetCountFunc = func() (int, nvml.Return) { panic("driver fell over") }
	s := newTestSampler(t, srv, nil)
	snap, err := s.Sample(context.Background())
	if err == nil || !strings.Contains(err.Error(), "driver fell over") {
		t.Fatalf("err = %v, want the panic as an error", err)
	}
	if snap.Problem == "" || len(snap.Devices) != 0 {
		t.Errorf("snapshot = %+v, want a Problem and no devices", snap)
	}
}

func TestNVMLInitFailureFallsBack(t *testing.T) {
	tests := []struct {
		ret         nvml.Return
		panics      bool
		wantProblem string
	}{
		{ret: nvml.ERROR_LIBRARY_NOT_FOUND, wantProblem: "No NVIDIA driver found: VRAM checks are off"},
		{ret: nvml.ERROR_DRIVER_NOT_LOADED, wantProblem: "The NVIDIA driver is not loaded"},
		{ret: nvml.ERROR_NO_PERMISSION, wantProblem: "No permission to read the GPU"},
		{ret: nvml.ERROR_LIB_RM_VERSION_MISMATCH, wantProblem: "restart the computer"},
		{ret: nvml.ERROR_UNKNOWN, wantProblem: "Could not start NVIDIA GPU monitoring"},
		{panics: true, wantProblem: "Could not start NVIDIA GPU monitoring"},
	}
	for _, tc := range tests {
		name := "panic"
		if !tc.panics {
			name = tc.ret.Error()
		}
		t.Run(name, func(t *testing.T) {
			lib := &mock.Interface{InitFunc: func() nvml.Return {
				if tc.panics {
					panic("dlopen exploded")
				}
				return tc.ret
			}}
			if _, err := NewNVML(lib); err == nil {
				t.Fatal("NewNVML succeeded on a failing Init")
			} else if !tc.panics && !errors.Is(err, tc.ret) {
				t.Errorf("NewNVML err = %v, want errors.Is %v", err, tc.ret)
			}

			s := openWith(lib)
			snap, err := s.Sample(context.Background())
			if err != nil {
				t.Fatalf("fallback Sample: %v (no driver is a state, not an error)", err)
			}
			if snap.Source != SourceNone || len(snap.Devices) != 0 {
				t.Errorf("snapshot = %+v, want Source none and no devices", snap)
			}
			if !strings.Contains(snap.Problem, tc.wantProblem) || !strings.HasSuffix(snap.Problem, "VRAM checks are off") {
				t.Errorf("Problem = %q, want it to contain %q and end with the consequence", snap.Problem, tc.wantProblem)
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

func TestNVMLCloseShutsDownOnce(t *testing.T) {
	srv, _ := newMockMachine(t, 1)
	s := newTestSampler(t, srv, nil)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n := len(srv.ShutdownCalls()); n != 1 {
		t.Errorf("Shutdown called %d times, want 1", n)
	}
	if _, err := s.Sample(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Sample after Close: err = %v, want ErrClosed", err)
	}
}

func TestNVMLShutdownFailureIsReported(t *testing.T) {
	srv, _ := newMockMachine(t, 1)
	srv.ShutdownFunc = func() nvml.Return { return nvml.ERROR_UNKNOWN }
	s, err := NewNVML(srv)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, nvml.ERROR_UNKNOWN) {
		t.Errorf("Close err = %v, want ERROR_UNKNOWN wrapped", err)
	}
}

func TestNVMLSampleHonoursCancelledContext(t *testing.T) {
	srv, _ := newMockMachine(t, 1)
	s := newTestSampler(t, srv, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Sample(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if n := len(srv.DeviceGetCountCalls()); n != 0 {
		t.Errorf("NVML was called %d times after cancellation", n)
	}
}

// The real /proc reader, with this test process standing in for a GPU
// process so the name comes from the kernel, not from a map.
func TestNVMLProcessNamesFromProc(t *testing.T) {
	self := uint32(os.Getpid())
	srv, devs := newMockMachine(t, 1)
	devs[0].GetGraphicsRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return []nvml.ProcessInfo{{Pid: self, UsedGpuMemory: 600 * mib}, {Pid: 1 << 30, UsedGpuMemory: mib}}, nvml.SUCCESS
	}
	s, err := NewNVML(srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	snap, err := s.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	ps := snap.Devices[0].Processes
	if len(ps) != 2 || ps[0].PID != self || ps[0].Name != strings.TrimSpace(string(comm)) {
		t.Fatalf("processes = %+v, want pid %d named %q first", ps, self, strings.TrimSpace(string(comm)))
	}
	if ps[1].Name != "" {
		t.Errorf("a PID that does not exist got name %q, want empty", ps[1].Name)
	}
}
