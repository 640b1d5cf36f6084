//go:build !(linux && cgo) && !darwin && !windows

// open_other.go: where no GPU library can be opened (Linux without cgo, the BSDs), the sampler that
// says so.

package gpu

// Open returns a sampler that reports no GPUs: NVML is only reachable from
// Linux builds with cgo, and the worker must still run everywhere else.
func Open(Options) Sampler {
	return Unavailable("GPU monitoring is not available in this build: VRAM checks are off")
}
