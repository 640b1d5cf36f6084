package gpu

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

// fakeLib is an nvmlLib in memory, for the sampler's own rules on any OS. The go-nvml mock
// machines (nvml_test.go) and the fake nvml.dll under Wine (winlane) test the real bindings.
type fakeLib struct {
	devices []fakeDevice
	initErr error
}

func (f *fakeLib) Init() error               { return f.initErr }
func (f *fakeLib) Shutdown() error           { return nil }
func (f *fakeLib) DeviceCount() (int, error) { return len(f.devices), nil }
func (f *fakeLib) Device(i int) (nvmlDevice, error) {
	return &f.devices[i], nil
}

// fakeDevice answers every value it has; a nil memory or a missing entry point answers as a
// driver without it does.
type fakeDevice struct {
	mem, memV2        *nvmlMemory
	compute, graphics []nvmlProcess
	noProcessLists    bool
	utilErr           error
}

func (d *fakeDevice) Name() (string, error) { return "Fake GPU", nil }
func (d *fakeDevice) UUID() (string, error) { return "GPU-fake", nil }
func (d *fakeDevice) MemoryV2() (nvmlMemory, error) {
	if d.memV2 == nil {
		return nvmlMemory{}, nvmlErrFunctionNotFound
	}
	return *d.memV2, nil
}
func (d *fakeDevice) Memory() (nvmlMemory, error) {
	if d.mem == nil {
		return nvmlMemory{}, nvmlErrNotSupported
	}
	return *d.mem, nil
}
func (d *fakeDevice) UtilizationPct() (uint32, error) { return 10, d.utilErr }
func (d *fakeDevice) TemperatureC() (uint32, error)   { return 0, nvmlErrNotSupported }
func (d *fakeDevice) PowerMW() (uint32, error)        { return 0, nvmlErrFunctionNotFound }
func (d *fakeDevice) ComputeProcesses() ([]nvmlProcess, error) {
	if d.noProcessLists {
		return nil, nvmlErrFunctionNotFound
	}
	return d.compute, nil
}
func (d *fakeDevice) GraphicsProcesses() ([]nvmlProcess, error) {
	if d.noProcessLists {
		return nil, nvmlErrFunctionNotFound
	}
	return d.graphics, nil
}

func TestSamplerRules(t *testing.T) {
	const gb = 1 << 30
	v1 := &nvmlMemory{Total: 24 * gb, Used: 20 * gb, Free: 4 * gb}
	tests := []struct {
		name      string
		dev       fakeDevice
		wantErr   bool
		wantMem   [3]int64 // total, used, free MB
		wantProcs []Process
	}{
		{
			name:    "an old driver: no v2 memory, no process lists, no power: values, not errors",
			dev:     fakeDevice{mem: v1, noProcessLists: true},
			wantMem: [3]int64{24 * 1024, 20 * 1024, 4 * 1024},
		},
		{
			name: "WDDM: per-process memory not available is said, not shown as 0 MB used",
			dev: fakeDevice{memV2: v1, graphics: []nvmlProcess{{PID: 7, UsedBytes: valueNotAvailable}},
				compute: []nvmlProcess{{PID: 7, UsedBytes: valueNotAvailable}, {PID: 8, UsedBytes: 2 * gb}}},
			wantMem: [3]int64{24 * 1024, 20 * 1024, 4 * 1024},
			wantProcs: []Process{
				{PID: 8, Name: "p8", UsedMB: 2048},
				{PID: 7, Name: "p7", Graphics: true, MemoryUnknown: true},
			},
		},
		{
			name:    "no memory figure at all is a failure: admission cannot work without it",
			dev:     fakeDevice{},
			wantErr: true,
		},
		{
			name:    "a failing value other than not-supported is reported",
			dev:     fakeDevice{mem: v1, utilErr: nvmlErrUnknown},
			wantErr: true,
			wantMem: [3]int64{24 * 1024, 20 * 1024, 4 * 1024},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newNVMLSampler(&fakeLib{devices: []fakeDevice{tc.dev}}, func(pid uint32) string { return "p" + string(rune('0'+pid)) })
			if err != nil {
				t.Fatal(err)
			}
			snap, err := s.Sample(context.Background())
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr && snap.Problem == "" {
				t.Error("a failed read left no Problem sentence")
			}
			if len(snap.Devices) != 1 {
				t.Fatalf("devices = %+v", snap.Devices)
			}
			d := snap.Devices[0]
			if got := [3]int64{d.TotalMB, d.UsedMB, d.FreeMB}; got != tc.wantMem {
				t.Errorf("memory = %v, want %v", got, tc.wantMem)
			}
			if d.HasPower || d.HasTemperature {
				t.Errorf("unsupported values shown as present: %+v", d)
			}
			want := tc.wantProcs
			if want == nil {
				want = []Process{}
			}
			if !reflect.DeepEqual(d.Processes, want) {
				t.Errorf("processes = %+v, want %+v", d.Processes, want)
			}
		})
	}
}

func TestSamplerInitFailureNamesTheCause(t *testing.T) {
	_, err := newNVMLSampler(&fakeLib{initErr: nvmlErrDriverNotLoaded}, nil)
	if !errors.Is(err, nvmlErrDriverNotLoaded) {
		t.Fatalf("err = %v", err)
	}
	if p := initProblem(err); p != "The NVIDIA driver is not loaded (restart the computer or reinstall the driver): VRAM checks are off" {
		t.Errorf("problem = %q", p)
	}
	if p := initProblem(nvmlErrLibraryNotFound); p != "No NVIDIA driver found: VRAM checks are off" {
		t.Errorf("problem = %q", p)
	}
}
