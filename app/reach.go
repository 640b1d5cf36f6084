// reach.go derives, in one place, which jobs a hub can offer this worker as far as VRAM goes: the
// vram_threshold_gb the capabilities advertise and the plain fact behind it (a GPU's total, the
// creator's limit, or no GPU at all), from the latest GPU sample and the creator's VRAM limit.
// The capabilities, admission, the mode reason and State.VRAM all read it from here, so that
// what the hub is told and what the creator reads cannot disagree. It must not know how the
// window or the tray put the fact into words, nor how a hub schedules.
package app

import (
	"fmt"
	"strings"

	"studioworker/gpu"
	"studioworker/protocol"
)

// Values of VRAMReach.Basis.
const (
	// ReachPending: no GPU sample yet, so nothing is claimed either way.
	ReachPending = ""
	// ReachGPU: the limit is the total VRAM of the GPUs seen (or of the simulated one).
	ReachGPU = "gpu"
	// ReachUserLimit: the limit is the creator's VRAM cap, and a GPU is seen.
	ReachUserLimit = "user_limit"
	// ReachUserLimitNoGPU: the creator set a VRAM cap but no GPU is seen (an AMD card, say): free
	// VRAM is unknown, and their cap is their statement of what this computer can take.
	ReachUserLimitNoGPU = "user_limit_no_gpu"
	// ReachNoGPU: no GPU seen and no cap: the limit is 0, so only jobs that state no VRAM need
	// (an estimate of 0: CPU text-to-speech, a CPU llama.cpp) can be offered.
	ReachNoGPU = "no_gpu"
)

// VRAMReach is which jobs a hub can offer this worker as far as VRAM goes, and why.
type VRAMReach struct {
	Basis   string  `json:"basis"`    // one of the Reach* values
	LimitGB float64 `json:"limit_gb"` // capabilities.vram_threshold_gb: jobs whose estimate is at most this
	TotalGB float64 `json:"total_gb"` // capabilities.vram_total_gb: the GPUs' total, 0 when none is seen
}

// vramReach derives the reach from the creator's cap (0 = none) and a GPU sample. A sample with
// no device counts as no GPU whatever its source: the total it gives, and so the limit the hub
// is told, is 0 either way.
func vramReach(capGB float64, snap gpu.Snapshot) VRAMReach {
	var totalMB int64
	for _, d := range snap.Devices {
		totalMB += d.TotalMB
	}
	r := VRAMReach{LimitGB: capGB, TotalGB: round1(float64(totalMB) / 1024)}
	sampled, noGPU := !snap.Time.IsZero(), len(snap.Devices) == 0
	switch {
	case capGB > 0 && sampled && noGPU:
		r.Basis = ReachUserLimitNoGPU
	case capGB > 0:
		r.Basis = ReachUserLimit
	case !sampled:
		r.Basis, r.LimitGB = ReachPending, r.TotalGB
	case noGPU:
		r.Basis = ReachNoGPU
	default:
		r.Basis, r.LimitGB = ReachGPU, r.TotalGB
	}
	return r
}

// noVRAM reports whether a job that states a VRAM need cannot be taken: no GPU seen, no cap.
func (r VRAMReach) noVRAM() bool { return r.Basis == ReachNoGPU }

// idleReasonLocked is the idle mode in words. "Ready" only when a job can reach this worker
// whatever VRAM it states; w.mu is held (the monitor's own lock is a leaf, never held around
// w.mu).
func (w *Worker) idleReasonLocked() string {
	if vramReach(w.cfg.VRAMThresholdGB, w.mon.Latest()).noVRAM() {
		return "No GPU found: taking only jobs that need no VRAM"
	}
	return "Ready for jobs"
}

// vramStatusLine is the reach in words for `studio-worker status`; "" before the first sample.
func vramStatusLine(st State) string {
	r := st.VRAM
	switch r.Basis {
	case ReachGPU:
		return fmt.Sprintf("jobs that need up to %s GB are offered (the GPUs' total)", gbWord(r.LimitGB))
	case ReachUserLimit:
		return fmt.Sprintf("jobs that need up to %s GB are offered (your VRAM cap)", gbWord(r.LimitGB))
	case ReachUserLimitNoGPU:
		return fmt.Sprintf("no GPU seen, so free VRAM is unknown: jobs that need up to %s GB are offered (your VRAM cap)", gbWord(r.LimitGB))
	case ReachNoGPU:
		line := "No GPU seen: jobs that need VRAM are not offered to this computer"
		if kinds := st.ServedKinds(); len(kinds) > 0 {
			line += "; it takes " + strings.Join(kinds, ", ") + " jobs that need none"
		}
		return line
	}
	return ""
}

// ServedKinds lists the kinds the worker serves now (State.Models), in protocol order: with no
// GPU, the jobs of these kinds that state no VRAM need are what can reach it.
func (s *State) ServedKinds() []string {
	var out []string
	for _, k := range protocol.Kinds() {
		if len(s.Models[string(k)]) > 0 {
			out = append(out, string(k))
		}
	}
	return out
}

func gbWord(gb float64) string { return strings.TrimSuffix(fmt.Sprintf("%.1f", gb), ".0") }
