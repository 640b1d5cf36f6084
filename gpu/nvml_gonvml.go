//go:build linux && cgo

// NVML on Linux through go-nvml, which dlopens libnvidia-ml.so.1: Open, and the adapter from
// go-nvml's nvml.Interface (injected, so tests use go-nvml's mock machines) to the sampler's
// nvmlLib. It must not decide anything: the sampler in nvml.go does.
package gpu

import (
	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Open starts NVML on the system driver. It never fails: without a usable driver it returns a
// sampler whose snapshots have Source "none" and a Problem sentence, so the worker keeps running
// with VRAM checks off.
func Open(Options) Sampler {
	return openWith(nvml.New())
}

// openWith is Open with the library injected, so tests can feed a mock whose Init fails.
func openWith(lib nvml.Interface) Sampler {
	s, err := NewNVML(lib)
	if err != nil {
		return Unavailable(initProblem(err))
	}
	return s
}

// NewNVML initialises lib and returns a Sampler that reads every GPU it reports. Production
// passes nvml.New(); tests pass the go-nvml mocks.
func NewNVML(lib nvml.Interface) (Sampler, error) {
	if lib == nil {
		return newNVMLSampler(nil, procName)
	}
	return newNVMLSampler(goNVML{lib}, procName)
}

// goNVMLError keeps go-nvml's own Return inside, so errors.Is works with nvml.ERROR_* as well as
// with the sampler's nvmlReturn values.
type goNVMLError struct{ ret nvml.Return }

func (e goNVMLError) Error() string   { return nvmlReturn(e.ret).Error() }
func (e goNVMLError) Unwrap() []error { return []error{nvmlReturn(e.ret), e.ret} }

func goErr(ret nvml.Return) error {
	if ret == nvml.SUCCESS {
		return nil
	}
	return goNVMLError{ret}
}

type goNVML struct{ lib nvml.Interface }

func (g goNVML) Init() error     { return goErr(g.lib.Init()) }
func (g goNVML) Shutdown() error { return goErr(g.lib.Shutdown()) }

func (g goNVML) DeviceCount() (int, error) {
	n, ret := g.lib.DeviceGetCount()
	return n, goErr(ret)
}

func (g goNVML) Device(i int) (nvmlDevice, error) {
	h, ret := g.lib.DeviceGetHandleByIndex(i)
	if err := goErr(ret); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, nil
	}
	return goDevice{h}, nil
}

type goDevice struct{ h nvml.Device }

func (d goDevice) Name() (string, error) {
	s, ret := d.h.GetName()
	return s, goErr(ret)
}

func (d goDevice) UUID() (string, error) {
	s, ret := d.h.GetUUID()
	return s, goErr(ret)
}

func (d goDevice) MemoryV2() (nvmlMemory, error) {
	m, ret := d.h.GetMemoryInfo_v2()
	return nvmlMemory{Total: m.Total, Used: m.Used, Free: m.Free}, goErr(ret)
}

func (d goDevice) Memory() (nvmlMemory, error) {
	m, ret := d.h.GetMemoryInfo()
	return nvmlMemory{Total: m.Total, Used: m.Used, Free: m.Free}, goErr(ret)
}

func (d goDevice) UtilizationPct() (uint32, error) {
	u, ret := d.h.GetUtilizationRates()
	return u.Gpu, goErr(ret)
}

func (d goDevice) TemperatureC() (uint32, error) {
	t, ret := d.h.GetTemperature(nvml.TEMPERATURE_GPU)
	return t, goErr(ret)
}

func (d goDevice) PowerMW() (uint32, error) {
	p, ret := d.h.GetPowerUsage()
	return p, goErr(ret)
}

func (d goDevice) ComputeProcesses() ([]nvmlProcess, error) {
	ps, ret := d.h.GetComputeRunningProcesses()
	return goProcesses(ps), goErr(ret)
}

func (d goDevice) GraphicsProcesses() ([]nvmlProcess, error) {
	ps, ret := d.h.GetGraphicsRunningProcesses()
	return goProcesses(ps), goErr(ret)
}

func goProcesses(ps []nvml.ProcessInfo) []nvmlProcess {
	out := make([]nvmlProcess, len(ps))
	for i, p := range ps {
		out[i] = nvmlProcess{PID: p.Pid, UsedBytes: p.UsedGpuMemory}
	}
	return out
}
