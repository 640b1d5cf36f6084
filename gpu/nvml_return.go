// NVML's return codes as one error type, so the sampler's fallbacks and sentences work the same
// whichever library (go-nvml, nvml.dll) produced them. The values are nvml.h's nvmlReturn_t.
package gpu

import "fmt"

// nvmlReturn is an nvmlReturn_t other than NVML_SUCCESS.
type nvmlReturn int32

const (
	nvmlErrNotSupported         nvmlReturn = 3
	nvmlErrNoPermission         nvmlReturn = 4
	nvmlErrInsufficientSize     nvmlReturn = 7
	nvmlErrDriverNotLoaded      nvmlReturn = 9
	nvmlErrLibraryNotFound      nvmlReturn = 12
	nvmlErrFunctionNotFound     nvmlReturn = 13
	nvmlErrGPUIsLost            nvmlReturn = 15
	nvmlErrLibRMVersionMismatch nvmlReturn = 18
	nvmlErrUnknown              nvmlReturn = 999
)

var nvmlReturnText = map[nvmlReturn]string{
	1: "NVML was not initialized", 2: "invalid argument", 3: "not supported", 4: "insufficient permissions",
	5: "already initialized", 6: "not found", 7: "insufficient size", 8: "insufficient external power",
	9: "driver not loaded", 10: "timeout", 11: "interrupt request issue", 12: "NVML shared library not found",
	13: "function not found", 14: "corrupted inforom", 15: "GPU is lost", 16: "GPU requires reset",
	17: "GPU access blocked by the operating system", 18: "driver/library version mismatch", 19: "in use by another client",
	20: "insufficient memory", 21: "no data", 22: "vGPU ECC not supported", 23: "insufficient resources",
	24: "frequency not supported", 25: "argument version mismatch", 26: "deprecated", 27: "not ready",
	28: "GPU not found", 29: "invalid state", 999: "unknown error",
}

func (r nvmlReturn) Error() string {
	if s, ok := nvmlReturnText[r]; ok {
		return s
	}
	return fmt.Sprintf("NVML error %d", int32(r))
}

// nvmlResult is how a library turns a raw return code into an error: nil for NVML_SUCCESS.
func nvmlResult(code int32) error {
	if code == 0 {
		return nil
	}
	return nvmlReturn(code)
}
