// gpuwatch.go watches the GPU for the worker: which sampler to open, each sample turned into
// the window's cards and the yield decision, a fresh sample for admission when a job has just
// freed memory, and a simulated card's use following the jobs. It must not decide admission.

package app

import (
	"context"
	"fmt"
	"slices"
	"time"

	"studioworker/gpu"
	"studioworker/protocol"
)

func yieldPolicy(y YieldConfig) gpu.YieldPolicy {
	p := gpu.YieldPolicy{ThresholdMB: y.ThresholdMB, ResumeAfter: time.Duration(y.ResumeAfterS * float64(time.Second))}
	if len(y.Ignore) > 0 {
		p.Ignore = append(gpu.DefaultIgnore(), y.Ignore...)
	}
	return p
}

// memoryUnknown reports whether the driver listed a process on d without saying what it holds.
func memoryUnknown(d gpu.Device) bool {
	for _, p := range d.Processes {
		if p.MemoryUnknown {
			return true
		}
	}
	return false
}

// openGPU is the GPU source a config asks for: its simulated card, or the machine's own.
func openGPU(cfg Config) gpu.Sampler {
	if s := cfg.GPU.Simulated; s != nil {
		return gpu.NewSimulated(s.Name, int64(s.VRAMGB*1024))
	}
	return gpu.Open(gpu.Options{UnifiedReserveMB: cfg.GPU.UnifiedMemoryReserveMB})
}

// liveSnapshot returns the latest GPU sample, sampling again when a job ended after it: the memory
// that job held shows as used in the old sample, and admission must see it free.
func (w *Worker) liveSnapshot() gpu.Snapshot {
	snap := w.mon.Latest()
	w.mu.Lock()
	stale := w.lastRelease.After(snap.Time)
	w.mu.Unlock()
	if !stale || snap.Source == gpu.SourceNone {
		return snap
	}
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	if fresh, err := w.mon.SampleNow(ctx); err == nil {
		return fresh
	}
	return snap
}

// updateSimulatedUse makes a simulated GPU show the VRAM the running jobs would use, so the demo's
// bars and admission move like a real card's.
func (w *Worker) updateSimulatedUse() {
	if w.sim == nil {
		return
	}
	w.mu.Lock()
	mb := w.opts.SimulatedBaseMB
	for _, sl := range w.slots {
		mb += sl.vramMB // a job on a model its backend has loaded adds only what it needs more
	}
	w.mu.Unlock()
	w.sim.SetUsedMB(mb)
}

// onSnapshot runs on the GPU monitor's goroutine for every sample.
func (w *Worker) onSnapshot(snap gpu.Snapshot) {
	w.mu.Lock()
	prev := w.yield
	if w.cfg.GPU.Yield.Enabled {
		w.yield = w.yielder.Observe(snap, w.own, snap.Time)
	} else {
		w.yield = gpu.YieldState{}
	}
	cur := w.yield
	cancelRunning := cur.Yielding && !prev.Yielding && w.cfg.GPU.Yield.CancelRunning
	var running []string
	if cancelRunning {
		for id := range w.slots {
			running = append(running, id)
		}
	}
	capGB := w.cfg.VRAMThresholdGB
	w.mu.Unlock()

	devicesChanged := false
	w.update(func(s *State) {
		old := s.GPU.Cards
		s.GPU.Source, s.GPU.Simulated, s.GPU.Problem, s.GPU.CapGB = snap.Source, snap.Simulated, snap.Problem, capGB
		cards := make([]GPUCard, len(snap.Devices))
		for i, d := range snap.Devices {
			var hist []GPUSample
			for _, o := range old {
				if o.Index == d.Index && o.UUID == d.UUID {
					hist = o.History
				}
			}
			hist = append(hist, GPUSample{Time: snap.Time, UsedMB: d.UsedMB, UtilizationPct: d.UtilizationPct})
			if len(hist) > maxGPUHistory {
				hist = slices.Clone(hist[len(hist)-maxGPUHistory:])
			}
			cards[i] = GPUCard{Index: d.Index, Name: d.Name, UUID: d.UUID, TotalMB: d.TotalMB, UsedMB: d.UsedMB, FreeMB: d.FreeMB,
				UtilizationPct: d.UtilizationPct, HasUtilization: d.HasUtilization, TemperatureC: d.TemperatureC,
				HasTemperature: d.HasTemperature, PowerW: d.PowerW, UnifiedMemory: d.UnifiedMemory, ProcessMemoryUnknown: memoryUnknown(d), History: hist}
		}
		if len(old) != len(cards) {
			devicesChanged = true
		} else {
			for i := range old {
				if old[i].UUID != cards[i].UUID || old[i].TotalMB != cards[i].TotalMB || old[i].Name != cards[i].Name {
					devicesChanged = true
				}
			}
		}
		s.GPU.Cards = cards
		if vramReach(capGB, snap) != s.VRAM {
			devicesChanged = true // the first sample, or a GPU lost or found: the capabilities follow
		}
	})
	if devicesChanged {
		w.rebuildCaps()
	}
	w.pokeBackendVRAM()
	if cur.Yielding != prev.Yielding {
		text := "The GPU is free again: taking jobs"
		if cur.Yielding {
			text = fmt.Sprintf("Paused while %s uses the GPU — resumes by itself", cur.Process)
		}
		w.log.Info(text, "source", "gpu", "process", cur.Process, "pid", cur.PID)
		w.obs.Notify(Notice{Kind: NoticeYield, Time: snap.Time, Text: text, State: map[bool]protocol.WorkerState{true: protocol.StateYielding, false: protocol.StateIdle}[cur.Yielding]})
		w.publishMode()
	}
	if s := w.session(); s != nil {
		for _, id := range running {
			s.CancelJob(id)
		}
	}
}
