// The parent of a process on Windows, from a Toolhelp snapshot, so OwnPIDs recognises what the
// worker's own children started.
package gpu

import (
	"unsafe"

	"golang.org/x/sys/windows"
)

// parentPID looks pid up in a fresh snapshot of every process. Windows keeps a parent's PID
// after the parent exits and may reuse it; OwnPIDs bounds the walk, so a reused PID costs at
// most a wrong "not ours", which only means the worker yields when it need not have.
func parentPID(pid uint32) (uint32, bool) {
	snap, err := windows.CreateToolhelp32Snapshot(windows.TH32CS_SNAPPROCESS, 0)
	if err != nil {
		return 0, false
	}
	defer windows.CloseHandle(snap)
	e := windows.ProcessEntry32{Size: uint32(unsafe.Sizeof(windows.ProcessEntry32{}))}
	for err = windows.Process32First(snap, &e); err == nil; err = windows.Process32Next(snap, &e) {
		if e.ProcessID == pid {
			return e.ParentProcessID, true
		}
	}
	return 0, false
}
