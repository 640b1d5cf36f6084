// The NVML sampler: it reads every GPU the driver reports into a Snapshot, through nvmlLib, the
// few NVML calls it needs. go-nvml (Linux, cgo) and nvml.dll (Windows, no cgo) each provide an
// nvmlLib, so the same code, the same fallbacks and the same sentences serve both, and nothing
// above this file can tell which driver it reads. It must not know how a library is loaded.
package gpu

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

const bytesPerMB = 1024 * 1024

// valueNotAvailable is NVML_VALUE_NOT_AVAILABLE as an unsigned long long: what a driver reports
// as a process's memory when it cannot attribute memory to processes (always under WDDM).
const valueNotAvailable = ^uint64(0)

// nvmlLib is the part of NVML the sampler uses. Errors are nvmlReturn values (or wrap them),
// so the sampler can tell "not supported" from a failure whatever the library.
type nvmlLib interface {
	Init() error
	Shutdown() error
	DeviceCount() (int, error)
	Device(i int) (nvmlDevice, error)
}

// nvmlDevice is one GPU handle.
type nvmlDevice interface {
	Name() (string, error)
	UUID() (string, error)
	// MemoryV2 counts driver-reserved memory apart from what processes use; old drivers and
	// WSL lack it, and then Memory (v1) is used.
	MemoryV2() (nvmlMemory, error)
	Memory() (nvmlMemory, error)
	UtilizationPct() (uint32, error)
	TemperatureC() (uint32, error)
	PowerMW() (uint32, error)
	ComputeProcesses() ([]nvmlProcess, error)
	GraphicsProcesses() ([]nvmlProcess, error)
}

type nvmlMemory struct{ Total, Used, Free uint64 }

// nvmlProcess is one entry of a running-process list; UsedBytes may be valueNotAvailable.
type nvmlProcess struct {
	PID       uint32
	UsedBytes uint64
}

// newNVMLSampler initialises lib and returns a Sampler that reads every GPU it reports.
// procName names a PID for display and ignore lists.
//
// Init runs here, on the caller's goroutine, before the Sampler is handed to its owner; after
// that every NVML call happens inside Sample or Close, which the owner (a Monitor) calls from
// its single goroutine.
func newNVMLSampler(lib nvmlLib, procName func(pid uint32) string) (*nvmlSampler, error) {
	if lib == nil {
		return nil, errors.New("start NVML: no library")
	}
	if err := call0("Init", lib.Init); err != nil {
		return nil, fmt.Errorf("start NVML: %w", err)
	}
	return &nvmlSampler{lib: lib, procName: procName, noMemoryV2: map[int]bool{}}, nil
}

type nvmlSampler struct {
	lib      nvmlLib
	procName func(pid uint32) string
	// noMemoryV2 remembers GPUs whose driver rejected the v2 memory call (old drivers, WSL),
	// so we do not pay for a failing call every sample.
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
	count, err := call("DeviceGetCount", s.lib.DeviceCount)
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

// device reads one GPU. It keeps going after a failed read so that one broken value (a power
// sensor, say) does not hide the memory figures; ok is false only when there is no handle.
func (s *nvmlSampler) device(i int) (Device, bool, error) {
	d := Device{Index: i, Processes: []Process{}}
	h, err := call("DeviceGetHandleByIndex", func() (nvmlDevice, error) { return s.lib.Device(i) })
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

	name, err := call("GetName", h.Name)
	d.Name = name
	keep(err)
	uuid, err := call("GetUUID", h.UUID)
	d.UUID = uuid
	keep(err)

	// Not through keep: without free memory admission cannot work, so even "not supported" is
	// a failure here.
	if err := s.memory(i, h, &d); err != nil {
		errs = append(errs, err)
	}

	if u, err := call("GetUtilizationRates", h.UtilizationPct); err == nil {
		d.UtilizationPct, d.HasUtilization = int(u), true
	} else {
		keep(err)
	}
	if t, err := call("GetTemperature", h.TemperatureC); err == nil {
		d.TemperatureC, d.HasTemperature = int(t), true
	} else {
		keep(err)
	}
	if mw, err := call("GetPowerUsage", h.PowerMW); err == nil {
		d.PowerW, d.HasPower = float64(mw)/1000, true
	} else {
		keep(err)
	}

	compute, err := call("GetComputeRunningProcesses", h.ComputeProcesses)
	keep(err)
	graphics, err := call("GetGraphicsRunningProcesses", h.GraphicsProcesses)
	keep(err)
	d.Processes = s.processes(compute, graphics)

	return d, true, errors.Join(errs...)
}

func (s *nvmlSampler) memory(i int, h nvmlDevice, d *Device) error {
	if !s.noMemoryV2[i] {
		// v2 reports driver-reserved memory apart from what processes use, so "used" matches
		// what the creator's programs hold.
		m, err := call("GetMemoryInfo_v2", h.MemoryV2)
		if err == nil {
			d.TotalMB, d.UsedMB, d.FreeMB = mb(m.Total), mb(m.Used), mb(m.Free)
			return nil
		}
		s.noMemoryV2[i] = true
	}
	m, err := call("GetMemoryInfo", h.Memory)
	if err != nil {
		return err
	}
	d.TotalMB, d.UsedMB, d.FreeMB = mb(m.Total), mb(m.Used), mb(m.Free)
	return nil
}

// processes merges the two lists. A process that draws and computes (a game using CUDA, say)
// appears in both; it is kept once, as graphics, because that is what yielding looks at.
func (s *nvmlSampler) processes(compute, graphics []nvmlProcess) []Process {
	at := map[uint32]int{} // PID -> index in out
	out := make([]Process, 0, len(compute)+len(graphics))
	add := func(infos []nvmlProcess, gfx bool) {
		for _, info := range infos {
			unknown := info.UsedBytes == valueNotAvailable
			used := int64(0)
			if !unknown {
				used = mb(info.UsedBytes)
			}
			if i, ok := at[info.PID]; ok {
				out[i].Graphics = out[i].Graphics || gfx
				out[i].UsedMB = max(out[i].UsedMB, used)
				out[i].MemoryUnknown = out[i].MemoryUnknown && unknown
				continue
			}
			at[info.PID] = len(out)
			out = append(out, Process{PID: info.PID, UsedMB: used, Graphics: gfx, MemoryUnknown: unknown})
		}
	}
	add(graphics, true)
	add(compute, false)
	if s.procName != nil {
		for i := range out {
			out[i].Name = s.procName(out[i].PID)
		}
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
	if err := call0("Shutdown", s.lib.Shutdown); err != nil {
		return fmt.Errorf("stop NVML: %w", err)
	}
	return nil
}

// call names a driver call's error, and turns a panic inside it (a mock without that
// function, a driver bug surfacing through cgo or a DLL) into an error, so one bad call cannot
// take the worker down.
func call[T any](name string, f func() (T, error)) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			var zero T
			v, err = zero, fmt.Errorf("%s panicked: %v", name, r)
		}
	}()
	v, err = f()
	if err != nil {
		return v, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

func call0(name string, f func() error) error {
	_, err := call(name, func() (struct{}, error) { return struct{}{}, f() })
	return err
}

// notSupported is NVML's "no such value on this card": not a failure. A driver without the
// entry point at all (an older nvml.dll) says the same thing in other words.
func notSupported(err error) bool {
	return errors.Is(err, nvmlErrNotSupported) || errors.Is(err, nvmlErrFunctionNotFound)
}

func mb(bytes uint64) int64 { return int64(bytes / bytesPerMB) }

// initProblem explains a failed NVML start in words a creator can act on.
func initProblem(err error) string {
	switch {
	case errors.Is(err, nvmlErrLibraryNotFound):
		return "No NVIDIA driver found: VRAM checks are off"
	case errors.Is(err, nvmlErrDriverNotLoaded):
		return "The NVIDIA driver is not loaded (restart the computer or reinstall the driver): VRAM checks are off"
	case errors.Is(err, nvmlErrNoPermission):
		return "No permission to read the GPU (" + noPermissionHint + "): VRAM checks are off"
	case errors.Is(err, nvmlErrLibRMVersionMismatch):
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
	case errors.Is(err, nvmlErrGPUIsLost):
		return fmt.Sprintf("%s stopped responding (restart the computer): VRAM checks may be wrong", strings.ToUpper(which[:1])+which[1:])
	case errors.Is(err, nvmlErrNoPermission):
		return fmt.Sprintf("No permission to read %s: VRAM checks may be wrong", which)
	default:
		return fmt.Sprintf("Could not read %s (%v): VRAM checks may be wrong", which, err)
	}
}
