//go:build !linux && !windows

// Process names where the sampler has no way to read them (macOS reads no process list).
package gpu

const noPermissionHint = "check the GPU driver's permissions"

func procName(uint32) string { return "" }
