// How a GPU process is named on Windows: the base name of its image file ("game.exe"), which is
// what creators write in the yield ignore list.
package gpu

import (
	"path/filepath"

	"golang.org/x/sys/windows"
)

const noPermissionHint = "run the worker as the user who signed in, or reinstall the NVIDIA driver"

// procName returns "" for a process we may not open (another user's, a protected one): the name
// is for display and ignore lists, never for deciding ownership.
func procName(pid uint32) string {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	if err != nil {
		return ""
	}
	defer windows.CloseHandle(h)
	buf := make([]uint16, windows.MAX_LONG_PATH)
	n := uint32(len(buf))
	if err := windows.QueryFullProcessImageName(h, 0, &buf[0], &n); err != nil {
		return ""
	}
	return filepath.Base(windows.UTF16ToString(buf[:n]))
}
