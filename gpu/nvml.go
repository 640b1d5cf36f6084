//go:build linux && cgo

package gpu

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

const bytesPerMB = 1024 * 1024

// Open starts NVML on the system driver. It never fails: without a usable
// driver it returns a sampler whose snapshots have Source "none" and a
// Problem sentence, so the worker keeps running with VRAM checks off.
func Open(Options) Sampler {
	return openWith(nvml.New())
}

// openWith is Open with the library injected, so tests can feed a mock
// whose Init fails.
func openWith(lib nvml.Interface) Sampler {
	s, err := NewNVML(lib)
	if err != nil {
		return Unavailable(initProblem(err))
	}
	return s
}

// NewNVML initialises lib and returns a Sampler that reads every GPU it
// reports. Production passes nvml.New(); tests pass the go-nvml mocks.
//
// Init runs here, on the caller's goroutine, before the Sampler is handed to
// its owner; after that every NVML call happens inside Sample or Close, which
// the owner (a Monitor) calls from its single goroutine.
func NewNVML(lib nvml.Interface) (Sampler, error) {
	if lib == nil {
		return nil, errors.New("start NVML: no library")
	}
	if err := nvmlCall0("Init", lib.Init); err != nil {
		return nil, fmt.Errorf("start NVML: %w", err)
	}
	return &nvmlSampler{lib: lib, procName: procComm, noMemoryV2: map[int]bool{}}, nil
}

type nvmlSampler struct {
	lib      nvml.Interface
	procName func(pid uint32) string
	// noMemoryV2 remembers GPUs whose driver rejected GetMemoryInfo_v2 (old
	// drivers, WSL), so we do not pay for a failing call every sample.
	noMemoryV2 map[int]bool
	closed     bool
}

func (s *nvmlSampler) Sample(ctx context.Context) (Snapshot, error) {
	snap := Snapshot{Time: time.Now(), Devices: []Device{}, Source: SourceNVML}
	if s.closed {
		snap.Problem = "GPU monitoring has stopped: VRAM checks are off"
		return snap, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return snap, fmt.Errorf("sample GPUs: %w", err)
	}
	count, err := nvmlCall("DeviceGetCount", s.lib.DeviceGetCount)
	if err != nil {
		snap.Problem = sampleProblem(-1, err)
		return snap, fmt.Errorf("sample GPUs: %w", err)
	}
	var errs []error
	for i := range count {
		if err := ctx.Err(); err != nil {
			return snap, fmt.Errorf("sample GPUs: %w", err)
		}
		dev, ok, err := s.device(i)
		if ok {
			snap.Devices = append(snap.Devices, dev)
		}
		if err != nil {
			if snap.Problem == "" {
				snap.Problem = sampleProblem(i, err)
			}
			errs = append(errs, fmt.Errorf("GPU %d: %w", i, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return snap, fmt.Errorf("sample GPUs: %w", err)
	}
	return snap, nil
}

// device reads one GPU. It keeps going after a failed read so that one
// broken value (a power sensor, say) does not hide the memory figures; ok is
// false only when there is no handle to read from.
func (s *nvmlSampler) device(i int) (Device, bool, error) {
	d := Device{Index: i, Processes: []Process{}}
	h, err := nvmlCall("DeviceGetHandleByIndex", func() (nvml.Device, nvml.Return) {
		return s.lib.DeviceGetHandleByIndex(i)
	})
	if err != nil {
		return d, false, err
	}
	if h == nil {
		return d, false, errors.New("DeviceGetHandleByIndex: no handle")
	}
	var errs []error
	keep := func(err error) {
		if err != nil && !notSupported(err) {
			errs = append(errs, err)
		}
	}

	name, err := nvmlCall("GetName", h.GetName)
	d.Name = name
	keep(err)
	uuid, err := nvmlCall("GetUUID", h.GetUUID)
	d.UUID = uuid
	keep(err)

	// Not through keep: without free memory admission cannot work, so even
	// ERROR_NOT_SUPPORTED is a failure here.
	if err := s.memory(i, h, &d); err != nil {
		errs = append(errs, err)
	}

	if u, err := nvmlCall("GetUtilizationRates", h.GetUtilizationRates); err == nil {
		d.UtilizationPct, d.HasUtilization = int(u.Gpu), true
	} else {
		keep(err)
	}
	if t, err := nvmlCall("GetTemperature", func() (uint32, nvml.Return) {
		return h.GetTemperature(nvml.TEMPERATURE_GPU)
	}); err == nil {
		d.TemperatureC, d.HasTemperature = int(t), true
	} else {
		keep(err)
	}
	if mw, err := nvmlCall("GetPowerUsage", h.GetPowerUsage); err == nil {
		d.PowerW, d.HasPower = float64(mw)/1000, true
	} else {
		keep(err)
	}

	compute, err := nvmlCall("GetComputeRunningProcesses", h.GetComputeRunningProcesses)
	keep(err)
	graphics, err := nvmlCall("GetGraphicsRunningProcesses", h.GetGraphicsRunningProcesses)
	keep(err)
	d.Processes = s.processes(compute, graphics)

	return d, true, errors.Join(errs...)
}

func (s *nvmlSampler) memory(i int, h nvml.Device, d *Device) error {
	if !s.noMemoryV2[i] {
		// v2 reports driver-reserved memory apart from what processes use,
		// so "used" matches what the creator's programs hold.
		m, err := nvmlCall("GetMemoryInfo_v2", h.GetMemoryInfo_v2)
		if err == nil {
			d.TotalMB, d.UsedMB, d.FreeMB = mb(m.Total), mb(m.Used), mb(m.Free)
			return nil
		}
		s.noMemoryV2[i] = true
	}
	m, err := nvmlCall("GetMemoryInfo", h.GetMemoryInfo)
	if err != nil {
		return err
	}
	d.TotalMB, d.UsedMB, d.FreeMB = mb(m.Total), mb(m.Used), mb(m.Free)
	return nil
}

// processes merges the two lists. A process that draws and computes (a game
// using CUDA, say) appears in both; it is kept once, as graphics, because
// that is what yielding looks at.
func (s *nvmlSampler) processes(compute, graphics []nvml.ProcessInfo) []Process {
	at := map[uint32]int{} // PID -> index in out
	out := make([]Process, 0, len(compute)+len(graphics))
	add := func(infos []nvml.ProcessInfo, gfx bool) {
		for _, info := range infos {
			used := int64(0)
			// NVML_VALUE_NOT_AVAILABLE (all bits set) when the driver cannot
			// attribute memory to the process.
			if info.UsedGpuMemory != ^uint64(0) {
				used = mb(info.UsedGpuMemory)
			}
			if i, ok := at[info.Pid]; ok {
				out[i].Graphics = out[i].Graphics || gfx
				out[i].UsedMB = max(out[i].UsedMB, used)
				continue
			}
			at[info.Pid] = len(out)
			out = append(out, Process{PID: info.Pid, UsedMB: used, Graphics: gfx})
		}
	}
	add(graphics, true)
	add(compute, false)
	for i := range out {
		out[i].Name = s.procName(out[i].PID)
	}
	slices.SortFunc(out, func(a, b Process) int {
		if c := cmp.Compare(b.UsedMB, a.UsedMB); c != 0 {
			return c
		}
		return cmp.Compare(a.PID, b.PID)
	})
	return out
}

func (s *nvmlSampler) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if err := nvmlCall0("Shutdown", s.lib.Shutdown); err != nil {
		return fmt.Errorf("stop NVML: %w", err)
	}
	return nil
}

// nvmlCall turns a driver call into (value, error), and a panic inside it
// (a mock without that function, a driver bug surfacing through cgo) into an
// error, so one bad call cannot take the worker down.
func nvmlCall[T any](name string, f func() (T, nvml.Return)) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			var zero T
			v, err = zero, fmt.Errorf("%s panicked: %v", name, r)
		}
	}()
	v, ret := f()
	if ret != nvml.SUCCESS {
		// nvml.Return is an error; wrapping it keeps errors.Is working.
		return v, fmt.Errorf("%s: %w", name, ret)
	}
	return v, nil
}

func nvmlCall0(name string, f func() nvml.Return) error {
	_, err := nvmlCall(name, func() (struct{}, nvml.Return) { return struct{}{}, f() })
	return err
}

func notSupported(err error) bool { return errors.Is(err, nvml.ERROR_NOT_SUPPORTED) }

func mb(bytes uint64) int64 { return int64(bytes / bytesPerMB) }

// procComm reads a process name the way top shows it. It returns "" for a
// process we may not inspect or that lives in another PID namespace: the
// name is for display and ignore lists, never for deciding ownership.
func procComm(pid uint32) string {
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// initProblem explains a failed NVML start in words a creator can act on.
func initProblem(err error) string {
	switch {
	case errors.Is(err, nvml.ERROR_LIBRARY_NOT_FOUND):
		return "No NVIDIA driver found: VRAM checks are off"
	case errors.Is(err, nvml.ERROR_DRIVER_NOT_LOADED):
		return "The NVIDIA driver is not loaded (restart the computer or reinstall the driver): VRAM checks are off"
	case errors.Is(err, nvml.ERROR_NO_PERMISSION):
		return "No permission to read the GPU (check access to /dev/nvidia*): VRAM checks are off"
	case errors.Is(err, nvml.ERROR_LIB_RM_VERSION_MISMATCH):
		return "The NVIDIA driver was updated but the old one is still running (restart the computer): VRAM checks are off"
	default:
		return fmt.Sprintf("Could not start NVIDIA GPU monitoring (%v): VRAM checks are off", err)
	}
}

// sampleProblem explains a failed read; gpu is -1 when no GPU was reached.
func sampleProblem(gpu int, err error) string {
	which := "the GPUs"
	if gpu >= 0 {
		which = fmt.Sprintf("GPU %d", gpu)
	}
	switch {
	case errors.Is(err, nvml.ERROR_GPU_IS_LOST):
		return fmt.Sprintf("%s stopped responding (restart the computer): VRAM checks may be wrong", strings.ToUpper(which[:1])+which[1:])
	case errors.Is(err, nvml.ERROR_NO_PERMISSION):
		return fmt.Sprintf("No permission to read %s: VRAM checks may be wrong", which)
	default:
		return fmt.Sprintf("Could not read %s (%v): VRAM checks may be wrong", which, err)
	}
}
