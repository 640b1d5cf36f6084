// admission.go: the policy that decides an offer — accept, wait for the creator, or decline with
// the protocol's reason — as a pure function of what the worker knows at that moment. It must not
// know where that comes from (the ledger, the GPU watch, the config) nor talk to the session.

package app

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Decision is what the worker does with an offer: accept it, wait for the
// user, or decline it with one of the reasons the protocol knows.
type Decision string

const (
	DecisionAccept     Decision = "accept"
	DecisionWait       Decision = "wait" // ask the user; auto-accept is off
	DeclinePaused      Decision = "paused"
	DeclineBusy        Decision = "busy"
	DeclineUnsupported Decision = "unsupported"
	DeclineVRAM        Decision = "vram"
	DeclineExpired     Decision = "expired"
	DeclineUser        Decision = "user" // the creator said no: by hand, or by cancelling this job here before
)

// admDefaultMarginMB is the VRAM kept spare when AdmissionInput leaves
// SafetyMarginMB at 0: estimates are rough, and running a job into an
// out-of-memory error also hurts whatever else the creator has open.
const admDefaultMarginMB = 1024

// GPUFree is one GPU's free memory in the latest sample.
type GPUFree struct {
	Index  int
	FreeMB int64
}

// AdmissionInput is everything Admit looks at. The caller gathers it (from
// the worker state, the config, the latest GPU sample) so that Admit stays a
// pure function that tests can drive row by row.
type AdmissionInput struct {
	Paused, Draining, Yielding bool
	// Running jobs out of MaxConcurrent slots; MaxConcurrent <= 0 means 1.
	Running, MaxConcurrent int
	Kind, Model            string
	// Supported maps a kind to its models. An empty Model in the offer, or
	// "*" in the list, matches any model of a supported kind.
	Supported map[string][]string
	// EstimateGB is the offer's VRAM estimate; 0 means unknown and always fits.
	EstimateGB float64
	// CapGB is the user's vram_threshold_gb; 0 means no cap.
	CapGB float64
	// NoVRAM is true when no GPU is seen and there is no cap: the worker advertises 0 GB, so a
	// job that states a VRAM need cannot run here (whatever a hub offers).
	NoVRAM bool
	// SpoolFreeMB is the free space on the disk that holds the spool, -1 when unknown;
	// SpoolMarginMB is what must stay free there (0 = no check). A full disk would make every
	// result fail after the work was done, and use up the job's attempts.
	SpoolFreeMB, SpoolMarginMB int64
	// GPUs is live free memory per GPU; empty means unknown (no NVML), and
	// then only CapGB applies.
	GPUs []GPUFree
	// ReservedMB is VRAM promised to jobs accepted but not yet visible in
	// the sample, per GPU index; without it two offers arriving together
	// would both be admitted against the same free memory.
	ReservedMB map[int]int64
	// SafetyMarginMB is kept free on the chosen GPU; 0 means 1024 and a
	// negative value means none.
	SafetyMarginMB int64
	// Backend names the job's backend as a person does ("Ollama", "ComfyUI") when it gave a
	// figure of its own below; BackendModel is the job's model as that backend names it.
	Backend, BackendModel string
	// BackendHeldMB is VRAM the job's model holds already: its backend has it loaded (Ollama's
	// /api/ps). The job needs only the estimate less that, since it runs on the loaded copy;
	// 0 = not loaded, or not known.
	BackendHeldMB int64
	// BackendFree is free memory per GPU as the job's backend counts it: ComfyUI's unused torch
	// cache is free to it, and NVML counts it as used. A GPU's free memory is the larger of this
	// and GPUs'. Empty = the backend says nothing.
	BackendFree []GPUFree
	// ExpiresAt is when the offer lapses; the zero time means it does not.
	ExpiresAt, Now time.Time
	AutoAccept     bool
	// CancelledHere: the creator cancelled this job on this worker before. The hub offers a job
	// it got back again (after the retry cool-off, when no other worker takes it); taking it
	// again would undo the cancel.
	CancelledHere bool
}

// Admission is Admit's answer.
type Admission struct {
	Decision Decision
	GPU      int    // chosen GPU index; -1 when none was chosen or GPUs are unknown
	Why      string // one sentence for the creator
}

// Admit decides what to do with an offer. The checks run in a fixed order so
// the reason given is the most useful one: a paused worker says "paused"
// even when it is also out of memory.
func Admit(in AdmissionInput) Admission {
	switch {
	case in.CancelledHere:
		return Admission{DeclineUser, -1, "you cancelled this job on this worker: the Studio gives it to another worker"}
	case in.Paused:
		return Admission{DeclinePaused, -1, "paused: not taking new jobs"}
	case in.Draining:
		return Admission{DeclinePaused, -1, "finishing the current job, then pausing"}
	case in.Yielding:
		return Admission{DeclinePaused, -1, "another program is using the GPU, so jobs wait until it is done"}
	}

	slots := in.MaxConcurrent
	if slots <= 0 {
		slots = 1
	}
	if in.Running >= slots {
		return Admission{DeclineBusy, -1, fmt.Sprintf("busy: %d of %d job slots in use", in.Running, slots)}
	}

	if in.SpoolMarginMB > 0 && in.SpoolFreeMB >= 0 && in.SpoolFreeMB < in.SpoolMarginMB {
		return Admission{DeclineBusy, -1, fmt.Sprintf("the disk that holds the spool has %d MB free, less than the %d MB kept free (spool_free_margin_mb): free some space",
			in.SpoolFreeMB, in.SpoolMarginMB)}
	}

	if why, ok := admSupported(in.Supported, in.Kind, in.Model); !ok {
		return Admission{DeclineUnsupported, -1, why}
	}

	gpu, why, ok := admVRAM(in)
	if !ok {
		return Admission{DeclineVRAM, -1, why}
	}

	if !in.ExpiresAt.IsZero() && !in.ExpiresAt.After(in.Now) {
		return Admission{DeclineExpired, -1, "the offer expired before it could be taken"}
	}

	if !in.AutoAccept {
		return Admission{DecisionWait, gpu, "waiting for you to accept: auto-accept is off"}
	}
	return Admission{DecisionAccept, gpu, why}
}

func admSupported(supported map[string][]string, kind, model string) (string, bool) {
	var models []string
	found := false
	for k, ms := range supported {
		if strings.EqualFold(k, kind) {
			models, found = ms, true
			break
		}
	}
	if !found {
		return fmt.Sprintf("no backend here runs %q jobs", kind), false
	}
	if model == "" {
		return "", true
	}
	for _, m := range models {
		if m == "*" || strings.EqualFold(m, model) {
			return "", true
		}
	}
	return fmt.Sprintf("model %q is not available for %q jobs", model, kind), false
}

// admVRAM checks the cap and the live free memory and picks a GPU. When it
// fits, why describes the fit so an accepted offer can be explained too.
func admVRAM(in AdmissionInput) (gpu int, why string, ok bool) {
	known := in.EstimateGB > 0
	if in.NoVRAM {
		if known {
			return -1, fmt.Sprintf("needs %.1f GB of VRAM but no GPU is seen here and you set no VRAM cap", in.EstimateGB), false
		}
		return -1, "no VRAM estimate: it runs without a GPU", true
	}
	if known && in.CapGB > 0 && in.EstimateGB > in.CapGB {
		return -1, fmt.Sprintf("needs %.1f GB but your VRAM limit is %.1f GB", in.EstimateGB, in.CapGB), false
	}
	if len(in.GPUs) == 0 {
		if known && in.CapGB > 0 {
			return -1, fmt.Sprintf("needs %.1f GB, within your %.1f GB limit (free VRAM unknown)", in.EstimateGB, in.CapGB), true
		}
		return -1, "free VRAM unknown: only your VRAM limit applies", true
	}

	margin := in.SafetyMarginMB
	switch {
	case margin == 0:
		margin = admDefaultMarginMB
	case margin < 0:
		margin = 0
	}
	needMB := AdmissionNeedMB(in)
	held := known && in.BackendHeldMB > 0

	// Rank by memory left after promises: the GPU with the most room keeps
	// the most headroom for the estimate being wrong.
	best, bestAvail, bestByBackend := -1, int64(0), false
	for i, g := range in.GPUs {
		free, byBackend := g.FreeMB, false
		if bf, ok := admBackendFree(in.BackendFree, g.Index); ok && bf > free {
			free, byBackend = bf, true
		}
		avail := free - in.ReservedMB[g.Index]
		if best < 0 || avail > bestAvail || (avail == bestAvail && g.Index < in.GPUs[best].Index) {
			best, bestAvail, bestByBackend = i, avail, byBackend
		}
	}
	g := in.GPUs[best]
	reserved := in.ReservedMB[g.Index]
	freeWords := admGB(bestAvail) + " free"
	if bestByBackend {
		// Say whose figure it is: the window's GPU card shows NVML's, which is lower.
		freeWords += fmt.Sprintf(" as %s counts it (its unused cache is free to it; the driver says %s)", in.Backend, admGB(g.FreeMB))
	}
	// A job whose model is loaded and needs nothing more runs on memory its backend holds: the
	// margin, kept for an estimate that is wrong, has nothing to guard.
	if known && needMB > 0 && needMB > bestAvail-margin {
		var msg string
		if held {
			msg = fmt.Sprintf("needs %.1f GB; %s is loaded in %s already, holding %s, so %s more, but GPU %d has %s",
				in.EstimateGB, in.BackendModel, in.Backend, admGB(in.BackendHeldMB), admGB(needMB), g.Index, freeWords)
		} else {
			msg = fmt.Sprintf("needs %.1f GB but GPU %d has %s", in.EstimateGB, g.Index, freeWords)
		}
		if reserved > 0 {
			msg += fmt.Sprintf(" after %s promised to other jobs", admGB(reserved))
		}
		if margin > 0 {
			msg += fmt.Sprintf(" (%s kept spare)", admGB(margin))
		}
		return -1, msg, false
	}
	switch {
	case held && needMB == 0:
		return g.Index, fmt.Sprintf("fits: %s is loaded in %s already, holding %s, which covers the %.1f GB estimated",
			in.BackendModel, in.Backend, admGB(in.BackendHeldMB), in.EstimateGB), true
	case held:
		return g.Index, fmt.Sprintf("fits: %s is loaded in %s already, holding %s, so it needs %s more of the %.1f GB estimated, and GPU %d has %s",
			in.BackendModel, in.Backend, admGB(in.BackendHeldMB), admGB(needMB), in.EstimateGB, g.Index, freeWords), true
	case known:
		return g.Index, fmt.Sprintf("needs %.1f GB and GPU %d has %s", in.EstimateGB, g.Index, freeWords), true
	}
	if bestByBackend {
		return g.Index, fmt.Sprintf("no VRAM estimate; GPU %d has the most free (%s)", g.Index, freeWords), true
	}
	return g.Index, fmt.Sprintf("no VRAM estimate; GPU %d has the most free (%s)", g.Index, admGB(bestAvail)), true
}

// AdmissionNeedMB is the VRAM in MB a job is counted as needing on its GPU: its estimate, less
// what its model holds already in its backend. The worker promises that much to an accepted job
// until the GPU's next sample shows it.
func AdmissionNeedMB(in AdmissionInput) int64 {
	if in.EstimateGB <= 0 {
		return 0
	}
	return max(0, int64(math.Ceil(in.EstimateGB*1024))-max(in.BackendHeldMB, 0))
}

// admBackendFree is the backend's free figure for GPU index, if it gave one.
func admBackendFree(free []GPUFree, index int) (int64, bool) {
	for _, f := range free {
		if f.Index == index {
			return f.FreeMB, true
		}
	}
	return 0, false
}

func admGB(mb int64) string { return fmt.Sprintf("%.1f GB", float64(mb)/1024) }
