// yield.go: when the worker steps aside — another program's graphics use above a threshold, and
// back after it has gone a while. It decides from snapshots and must not know the session.

package gpu

import (
	"path/filepath"
	"strings"
	"time"
)

// Defaults for YieldPolicy's zero fields.
const (
	DefaultYieldThresholdMB = 512
	DefaultResumeAfter      = 30 * time.Second
)

// DefaultIgnore lists desktop shells and compositors: they hold graphics
// memory all day, so counting them would keep the worker yielding forever.
// It returns a new slice each time so callers may extend it.
func DefaultIgnore() []string {
	return []string{
		"gnome-shell", "Xorg", "Xwayland", "kwin_x11", "kwin_wayland",
		"plasmashell", "mutter", "sway", "WindowServer",
		// Windows' desktop and shell hosts. Under WDDM their memory is not reported either, so
		// without them a worker would step aside on every Windows desktop.
		"dwm.exe", "explorer.exe", "ShellExperienceHost.exe", "StartMenuExperienceHost.exe",
		"SearchHost.exe", "SearchApp.exe", "TextInputHost.exe", "LockApp.exe",
		"ApplicationFrameHost.exe", "SystemSettings.exe", "csrss.exe",
		"NVIDIA Overlay.exe", "NVIDIA Share.exe", "nvcontainer.exe", "NVDisplay.Container.exe",
	}
}

// YieldPolicy says when the creator's own use of the GPU wins over jobs.
type YieldPolicy struct {
	// ThresholdMB is how much VRAM a foreign graphics process may hold
	// before the worker yields; 0 means DefaultYieldThresholdMB.
	ThresholdMB int64
	// Ignore lists process names (case-insensitive) that never cause a
	// yield; nil means DefaultIgnore(). A non-nil list replaces the default.
	Ignore []string
	// ResumeAfter is how long no such process must be seen before the
	// worker takes jobs again; 0 means DefaultResumeAfter. It keeps a game
	// that briefly drops its memory (loading screens, alt-tab) from letting
	// a job slip in.
	ResumeAfter time.Duration
}

// YieldState is the outcome of one observation.
type YieldState struct {
	Yielding bool      `json:"yielding"`
	Process  string    `json:"process,omitempty"` // name of the program we yield to, e.g. "game.exe"; "" if unreadable
	PID      uint32    `json:"pid,omitempty"`
	Since    time.Time `json:"since,omitzero"` // when yielding began
}

// Yielder turns a stream of snapshots into a yield decision with
// hysteresis. It is pure bookkeeping (no goroutines, no clock of its own)
// and not safe for concurrent use; its owner feeds it from one goroutine.
type Yielder struct {
	thresholdMB int64
	ignore      map[string]bool
	resumeAfter time.Duration

	state    YieldState
	lastSeen time.Time // last time a culprit was seen while yielding
}

// NewYielder applies the defaults to p and returns a Yielder that is not
// yielding.
func NewYielder(p YieldPolicy) *Yielder {
	y := &Yielder{thresholdMB: p.ThresholdMB, resumeAfter: p.ResumeAfter, ignore: map[string]bool{}}
	if y.thresholdMB <= 0 {
		y.thresholdMB = DefaultYieldThresholdMB
	}
	if y.resumeAfter <= 0 {
		y.resumeAfter = DefaultResumeAfter
	}
	names := p.Ignore
	if names == nil {
		names = DefaultIgnore()
	}
	for _, n := range names {
		y.ignore[strings.ToLower(n)] = true
	}
	return y
}

// Observe feeds one snapshot taken at now. own reports whether a PID is the
// worker's (its children, its configured backends); nil means none are.
//
// A snapshot without devices (no NVML, or a failed sample) is no evidence
// either way: it neither starts a yield nor counts toward resuming, so a
// driver hiccup during a game does not hand the GPU back mid-game.
func (y *Yielder) Observe(snap Snapshot, own func(pid uint32) bool, now time.Time) YieldState {
	if len(snap.Devices) == 0 {
		return y.state
	}
	culprit, found := y.culprit(snap, own)
	switch {
	case found:
		if !y.state.Yielding {
			y.state = YieldState{Yielding: true, Since: now}
		}
		y.state.Process, y.state.PID = culprit.Name, culprit.PID
		y.lastSeen = now
	case y.state.Yielding && now.Sub(y.lastSeen) >= y.resumeAfter:
		y.state = YieldState{}
	}
	return y.state
}

// State is the last decision, without observing anything new.
func (y *Yielder) State() YieldState { return y.state }

// culprit is the largest foreign graphics process over the threshold. Where the driver does not
// report a process's memory (WDDM), being there is all the evidence there is: a foreign graphics
// process not on the ignore list counts, ranked after any whose memory is known.
func (y *Yielder) culprit(snap Snapshot, own func(uint32) bool) (Process, bool) {
	var best Process
	found := false
	for _, d := range snap.Devices {
		for _, p := range d.Processes {
			if !p.Graphics || (!p.MemoryUnknown && p.UsedMB <= y.thresholdMB) || y.ignored(p.Name) {
				continue
			}
			if own != nil && own(p.PID) {
				continue
			}
			if !found || better(p, best) {
				best, found = p, true
			}
		}
	}
	return best, found
}

// better orders culprits: known memory before unknown, then more memory, then the lower PID.
func better(p, than Process) bool {
	if p.MemoryUnknown != than.MemoryUnknown {
		return !p.MemoryUnknown
	}
	if p.UsedMB != than.UsedMB {
		return p.UsedMB > than.UsedMB
	}
	return p.PID < than.PID
}

func (y *Yielder) ignored(name string) bool {
	if name == "" {
		return false
	}
	// Names may arrive as paths on some platforms; /proc/PID/comm gives
	// just the base name, which is what users write in the list.
	return y.ignore[strings.ToLower(filepath.Base(name))]
}
