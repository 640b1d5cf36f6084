// NVML on Windows through nvml.dll, called with x/sys/windows and no cgo: loading the DLL from
// where NVIDIA's installers put it, resolving each entry point once (the newest version the
// driver has), and the raw calls with nvml.h's structs. It must not decide anything: the
// sampler in nvml.go does, exactly as it does for go-nvml on Linux.
package gpu

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

// Open starts NVML from nvml.dll. It never fails: without a usable driver it returns a sampler
// whose snapshots have Source "none" and a Problem sentence.
func Open(Options) Sampler {
	lib, err := loadNVMLDLL()
	if err != nil {
		return Unavailable(initProblem(err))
	}
	s, err := newNVMLSampler(lib, procName)
	if err != nil {
		lib.free()
		return Unavailable(initProblem(err))
	}
	return &dllSampler{nvmlSampler: s, lib: lib}
}

// dllSampler unloads the DLL after NVML has shut down.
type dllSampler struct {
	*nvmlSampler
	lib *dllLib
}

func (s *dllSampler) Close() error {
	wasOpen := !s.closed
	err := s.nvmlSampler.Close()
	if wasOpen {
		s.lib.free()
	}
	return err
}

// nvmlDLLPaths are where nvml.dll lives: System32 on drivers since 2019, the NVSMI folder on
// older ones. The installer puts neither on PATH, and the DLL is never searched for elsewhere
// (the current folder, PATH), so no other program's nvml.dll can be planted on the worker.
func nvmlDLLPaths() []string {
	paths := []string{}
	if sys, err := windows.GetSystemDirectory(); err == nil {
		paths = append(paths, filepath.Join(sys, "nvml.dll"))
	}
	pf := os.Getenv("ProgramW6432")
	if pf == "" {
		pf = os.Getenv("ProgramFiles")
	}
	if pf != "" {
		paths = append(paths, filepath.Join(pf, "NVIDIA Corporation", "NVSMI", "nvml.dll"))
	}
	return paths
}

// dllLib is a loaded nvml.dll with its entry points resolved.
type dllLib struct {
	h windows.Handle
	// Each is 0 when the driver lacks it; the versioned ones hold the newest entry point found.
	init, shutdown, count, handle             uintptr
	name, uuid, memV2, mem, util, temp, power uintptr
	compute, graphics                         uintptr
	procSize                                  uintptr // bytes per entry of the process lists' struct
}

func loadNVMLDLL() (*dllLib, error) {
	var h windows.Handle
	var lastErr error
	for _, p := range nvmlDLLPaths() {
		// Its own folder first for the DLLs it needs, then System32: never the current folder.
		lh, err := windows.LoadLibraryEx(p, 0, windows.LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR|windows.LOAD_LIBRARY_SEARCH_SYSTEM32)
		if err == nil {
			h = lh
			break
		}
		lastErr = err
	}
	if h == 0 {
		return nil, fmt.Errorf("load nvml.dll: %w (%w)", nvmlErrLibraryNotFound, lastErr)
	}
	l := &dllLib{h: h}
	find := func(names ...string) uintptr {
		for _, n := range names {
			if a, err := windows.GetProcAddress(h, n); err == nil {
				return a
			}
		}
		return 0
	}
	l.init = find("nvmlInit_v2", "nvmlInit")
	l.shutdown = find("nvmlShutdown")
	l.count = find("nvmlDeviceGetCount_v2", "nvmlDeviceGetCount")
	l.handle = find("nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex")
	l.name = find("nvmlDeviceGetName")
	l.uuid = find("nvmlDeviceGetUUID")
	l.memV2 = find("nvmlDeviceGetMemoryInfo_v2")
	l.mem = find("nvmlDeviceGetMemoryInfo")
	l.util = find("nvmlDeviceGetUtilizationRates")
	l.temp = find("nvmlDeviceGetTemperature")
	l.power = find("nvmlDeviceGetPowerUsage")
	// _v3 and _v2 take nvmlProcessInfo_t (24 bytes: pid, usedGpuMemory, gpuInstanceId,
	// computeInstanceId); the unversioned ones take nvmlProcessInfo_v1_t (16 bytes). Both
	// lists must use the same struct, so the version is chosen once, from the compute list.
	l.procSize = 24
	if l.compute = find("nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2"); l.compute != 0 {
		l.graphics = find("nvmlDeviceGetGraphicsRunningProcesses_v3", "nvmlDeviceGetGraphicsRunningProcesses_v2")
	} else {
		l.procSize = 16
		l.compute = find("nvmlDeviceGetComputeRunningProcesses")
		l.graphics = find("nvmlDeviceGetGraphicsRunningProcesses")
	}
	if l.init == 0 || l.count == 0 || l.handle == 0 {
		l.free()
		return nil, fmt.Errorf("nvml.dll has no nvmlInit, nvmlDeviceGetCount or nvmlDeviceGetHandleByIndex: %w", nvmlErrLibraryNotFound)
	}
	return l, nil
}

func (l *dllLib) free() {
	if l.h != 0 {
		_ = windows.FreeLibrary(l.h)
		l.h = 0
	}
}

// callNVML calls an entry point; a missing one answers NVML_ERROR_FUNCTION_NOT_FOUND, which the
// sampler takes as "not supported", never a crash. uintptrescapes keeps every pointer passed as
// a uintptr alive and in place until the call returns, as it does for x/sys/windows' Proc.Call.
//
//go:uintptrescapes
func callNVML(proc uintptr, args ...uintptr) error {
	if proc == 0 {
		return nvmlErrFunctionNotFound
	}
	r, _, _ := syscall.SyscallN(proc, args...)
	return nvmlResult(int32(uint32(r)))
}

func (l *dllLib) Init() error     { return callNVML(l.init) }
func (l *dllLib) Shutdown() error { return callNVML(l.shutdown) }

func (l *dllLib) DeviceCount() (int, error) {
	var n uint32
	err := callNVML(l.count, uintptr(unsafe.Pointer(&n)))
	return int(n), err
}

func (l *dllLib) Device(i int) (nvmlDevice, error) {
	var h uintptr
	if err := callNVML(l.handle, uintptr(uint32(i)), uintptr(unsafe.Pointer(&h))); err != nil {
		return nil, err
	}
	if h == 0 {
		return nil, nil
	}
	return dllDevice{l: l, h: h}, nil
}

// dllDevice is an nvmlDevice_t, an opaque pointer owned by the driver.
type dllDevice struct {
	l *dllLib
	h uintptr
}

// nameBufferSize is NVML_DEVICE_NAME_V2_BUFFER_SIZE and NVML_DEVICE_UUID_V2_BUFFER_SIZE.
const nameBufferSize = 96

func (d dllDevice) text(proc uintptr) (string, error) {
	var buf [nameBufferSize]byte
	if err := callNVML(proc, d.h, uintptr(unsafe.Pointer(&buf[0])), nameBufferSize); err != nil {
		return "", err
	}
	n := 0
	for n < len(buf) && buf[n] != 0 {
		n++
	}
	return string(buf[:n]), nil
}

func (d dllDevice) Name() (string, error) { return d.text(d.l.name) }
func (d dllDevice) UUID() (string, error) { return d.text(d.l.uuid) }

// memoryV2 is nvmlMemory_v2_t; its version field must be NVML_STRUCT_VERSION(Memory, 2).
type memoryV2 struct {
	Version                     uint32
	_                           uint32
	Total, Reserved, Free, Used uint64
}

func (d dllDevice) MemoryV2() (nvmlMemory, error) {
	m := memoryV2{Version: uint32(unsafe.Sizeof(memoryV2{})) | 2<<24}
	err := callNVML(d.l.memV2, d.h, uintptr(unsafe.Pointer(&m)))
	return nvmlMemory{Total: m.Total, Used: m.Used, Free: m.Free}, err
}

// memoryV1 is nvmlMemory_t: note free comes before used.
type memoryV1 struct{ Total, Free, Used uint64 }

func (d dllDevice) Memory() (nvmlMemory, error) {
	var m memoryV1
	err := callNVML(d.l.mem, d.h, uintptr(unsafe.Pointer(&m)))
	return nvmlMemory{Total: m.Total, Used: m.Used, Free: m.Free}, err
}

func (d dllDevice) UtilizationPct() (uint32, error) {
	var u struct{ GPU, Memory uint32 }
	err := callNVML(d.l.util, d.h, uintptr(unsafe.Pointer(&u)))
	return u.GPU, err
}

func (d dllDevice) TemperatureC() (uint32, error) {
	var t uint32
	const sensorGPU = 0 // NVML_TEMPERATURE_GPU
	err := callNVML(d.l.temp, d.h, sensorGPU, uintptr(unsafe.Pointer(&t)))
	return t, err
}

func (d dllDevice) PowerMW() (uint32, error) {
	var p uint32
	err := callNVML(d.l.power, d.h, uintptr(unsafe.Pointer(&p)))
	return p, err
}

func (d dllDevice) ComputeProcesses() ([]nvmlProcess, error)  { return d.processes(d.l.compute) }
func (d dllDevice) GraphicsProcesses() ([]nvmlProcess, error) { return d.processes(d.l.graphics) }

// maxProcesses bounds one list: a driver that keeps asking for more cannot make us allocate
// without limit.
const maxProcesses = 4096

// processes asks for the count first, then for that many (and a few more, since processes
// start between the two calls), as nvml.h describes.
func (d dllDevice) processes(proc uintptr) ([]nvmlProcess, error) {
	var count uint32
	err := callNVML(proc, d.h, uintptr(unsafe.Pointer(&count)), 0)
	if err == nil {
		return []nvmlProcess{}, nil
	}
	for range 3 {
		if err != nvmlErrInsufficientSize {
			return nil, err
		}
		count = min(count+8, maxProcesses)
		words := make([]uint64, uintptr(count)*d.l.procSize/8) // uint64s keep the structs aligned
		n := count
		err = callNVML(proc, d.h, uintptr(unsafe.Pointer(&n)), uintptr(unsafe.Pointer(&words[0])))
		if err == nil {
			return parseProcesses(unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8), min(n, count), int(d.l.procSize)), nil
		}
		count = n
	}
	return nil, err
}

// parseProcesses reads n entries of size bytes each: pid at 0, usedGpuMemory at 8 (both
// versions of the struct start the same way).
func parseProcesses(b []byte, n uint32, size int) []nvmlProcess {
	out := make([]nvmlProcess, 0, n)
	for i := range int(n) {
		e := b[i*size:]
		out = append(out, nvmlProcess{PID: binary.LittleEndian.Uint32(e[0:4]), UsedBytes: binary.LittleEndian.Uint64(e[8:16])})
	}
	return out
}
