// simulated.go: a simulated GPU (the demo, tests, gpu.simulated in the config) whose figures
// are set, not measured, and say so.

package gpu

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Simulated is a GPU that exists only in memory, for the demo and for
// machines without NVIDIA hardware. Its snapshots always say Simulated and
// Source "simulated", so no screen can mistake it for a real card. It is
// safe for concurrent use: the demo changes it while a Monitor samples it.
type Simulated struct {
	name    string
	totalMB int64

	mu     sync.Mutex
	usedMB int64
	procs  []Process
}

// NewSimulated returns a simulated GPU shown as name with totalMB of VRAM,
// all of it free.
func NewSimulated(name string, totalMB int64) *Simulated {
	if name == "" {
		name = "Simulated GPU"
	}
	return &Simulated{name: name, totalMB: max(totalMB, 0)}
}

// SetUsedMB sets the memory in use, clamped to [0, total]. It is independent
// of SetProcesses so a demo can show a full card with no process list.
func (s *Simulated) SetUsedMB(mb int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.usedMB = min(max(mb, 0), s.totalMB)
}

// SetProcesses replaces the process list (e.g. a "game.exe" graphics
// process to show yielding). It does not change the used memory.
func (s *Simulated) SetProcesses(ps []Process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs = slices.Clone(ps)
}

// Sample returns the current simulated state.
func (s *Simulated) Sample(ctx context.Context) (Snapshot, error) {
	s.mu.Lock()
	used := s.usedMB
	procs := slices.Clone(s.procs)
	s.mu.Unlock()
	if procs == nil {
		procs = []Process{}
	}
	snap := Snapshot{
		Time:      time.Now(),
		Source:    SourceSimulated,
		Simulated: true,
		Devices: []Device{{
			Index:     0,
			Name:      s.name,
			UUID:      "GPU-simulated-0",
			TotalMB:   s.totalMB,
			UsedMB:    used,
			FreeMB:    s.totalMB - used,
			Processes: procs,
		}},
	}
	if err := ctx.Err(); err != nil {
		return snap, fmt.Errorf("sample simulated GPU: %w", err)
	}
	return snap, nil
}

// Close releases nothing; a Simulated keeps working after Close so a demo
// can stop one Monitor and start another on the same GPU.
func (s *Simulated) Close() error { return nil }
