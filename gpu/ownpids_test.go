package gpu

import "testing"

func TestOwnPIDsWalksTheTree(t *testing.T) {
	// 1 ─ 10 (worker) ─ 11 ─ 12;  1 ─ 20;  1 ─ 30 (backend);  40 ⇄ 41 (a loop)
	parents := map[uint32]uint32{10: 1, 11: 10, 12: 11, 20: 1, 30: 1, 31: 30, 40: 41, 41: 40, 1: 0}
	parent := func(pid uint32) (uint32, bool) {
		p, ok := parents[pid]
		return p, ok
	}
	own := ownPIDsWith(parent, 10, 30, 0)
	for pid, want := range map[uint32]bool{
		10: true, 11: true, 12: true, // the worker and its descendants
		30: true, 31: true, // a configured backend and its child
		1: false, 20: false, 0: false, 99: false, // init, a sibling, no pid, an unknown pid
		40: false, // terminates on a loop
	} {
		if got := own(pid); got != want {
			t.Errorf("own(%d) = %v, want %v", pid, got, want)
		}
	}
}
