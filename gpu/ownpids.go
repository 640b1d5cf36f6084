// ownpids.go: this process and its children, whose GPU use is the worker's own, not a program
// to yield to.

package gpu

// maxAncestry bounds the walk up the process tree, in case /proc changes
// under us and a PID is reused into a loop.
const maxAncestry = 64

// OwnPIDs returns a func that reports whether a PID is self, one of extra
// (backend servers the worker was configured with), or a descendant of any
// of them. On Linux descendants are found through /proc/PID/stat; elsewhere
// only the exact PIDs match. The parent chain is read at each call, so
// children started later are recognised too.
func OwnPIDs(self uint32, extra ...uint32) func(pid uint32) bool {
	return ownPIDsWith(parentPID, append([]uint32{self}, extra...)...)
}

// ownPIDsWith is OwnPIDs with the process tree injected, for tests.
func ownPIDsWith(parent func(pid uint32) (uint32, bool), roots ...uint32) func(pid uint32) bool {
	set := make(map[uint32]bool, len(roots))
	for _, r := range roots {
		if r != 0 {
			set[r] = true
		}
	}
	return func(pid uint32) bool {
		for range maxAncestry {
			if pid == 0 {
				return false
			}
			if set[pid] {
				return true
			}
			pp, ok := parent(pid)
			if !ok || pp == pid {
				return false
			}
			pid = pp
		}
		return false
	}
}
