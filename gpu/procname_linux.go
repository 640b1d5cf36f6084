// How a GPU process is named on Linux: the kernel's short command name, as top shows it.
package gpu

import (
	"os"
	"strconv"
	"strings"
)

// noPermissionHint is what to check when the driver refuses to be read.
const noPermissionHint = "check access to /dev/nvidia*"

// procName returns "" for a process we may not inspect or that lives in another PID namespace:
// the name is for display and ignore lists, never for deciding ownership.
func procName(pid uint32) string {
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
