// snapshot.go: a sample of the GPUs — devices, memory, the processes using them, and a problem in
// words when there is none to read — and its text for `studio-worker gpu`. It must not know NVML.

package gpu

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Values of Snapshot.Source.
const (
	SourceNVML      = "nvml"
	SourceSimulated = "simulated"
	SourceNone      = "none"
	// SourceUnified is a GPU that shares the computer's memory (Apple silicon): there is no
	// separate VRAM, so its figures are the usable share of unified memory.
	SourceUnified = "unified"
)

// Options are what Open needs from the worker's settings.
type Options struct {
	// UnifiedReserveMB is the unified memory (Apple silicon) kept back for the system and the
	// creator's programs; what is left is what jobs may use. 0 means the platform default.
	UnifiedReserveMB int64
}

// ErrClosed is returned by Sample after Close.
var ErrClosed = errors.New("gpu: sampler is closed")

// Process is one process holding memory on a GPU.
type Process struct {
	PID  uint32 `json:"pid"`
	Name string `json:"name"` // as the OS names it (/proc/PID/comm, the image file name); "" when it cannot be read
	// UsedMB is 0 when the driver does not report per-process memory; MemoryUnknown then
	// says so (always under Windows' WDDM driver model, on every GeForce card).
	UsedMB        int64 `json:"used_mb"`
	MemoryUnknown bool  `json:"memory_unknown,omitempty"`
	// Graphics is true for graphics (display) processes such as games and
	// editors, false for compute processes such as inference backends.
	Graphics bool `json:"graphics"`
}

// Device is one GPU as seen in one sample. The Has* flags are false when the
// driver does not report that value for this card, which is normal on
// consumer GPUs and under WSL, and not an error.
type Device struct {
	Index          int     `json:"index"`
	Name           string  `json:"name"`
	UUID           string  `json:"uuid"`
	TotalMB        int64   `json:"total_mb"`
	UsedMB         int64   `json:"used_mb"`
	FreeMB         int64   `json:"free_mb"`
	UtilizationPct int     `json:"utilization_pct"`
	HasUtilization bool    `json:"has_utilization"`
	TemperatureC   int     `json:"temperature_c"`
	HasTemperature bool    `json:"has_temperature"`
	PowerW         float64 `json:"power_w"`
	HasPower       bool    `json:"has_power"`
	// UnifiedMemory is true for a GPU without VRAM of its own (Apple silicon): TotalMB and
	// FreeMB are then the share of the computer's memory that jobs may use.
	UnifiedMemory bool      `json:"unified_memory,omitempty"`
	Processes     []Process `json:"processes"`
}

// Snapshot is the state of all GPUs at one instant. Treat it as read-only:
// Monitor hands the same slices to every reader.
type Snapshot struct {
	Time      time.Time `json:"time"`
	Devices   []Device  `json:"devices"`
	Source    string    `json:"source"` // SourceNVML, SourceUnified, SourceSimulated or SourceNone
	Simulated bool      `json:"simulated"`
	// Problem is a sentence for the creator when the numbers are missing or
	// may be wrong, e.g. "No NVIDIA driver found: VRAM checks are off".
	// It is "" when everything was read.
	Problem string `json:"problem,omitempty"`
}

// Sampler reads the GPUs. Implementations are not safe for concurrent use:
// one goroutine (normally a Monitor) owns a Sampler, from the first Sample
// to Close.
type Sampler interface {
	Sample(ctx context.Context) (Snapshot, error)
	Close() error
}

// Unavailable returns a Sampler for machines where the GPU cannot be read.
// Every snapshot has Source "none", no devices and the given Problem; Sample
// does not fail, because "no GPU information" is a steady state that the
// admission policy handles (only the user's VRAM cap applies), not an error
// to log every two seconds.
func Unavailable(problem string) Sampler {
	return &unavailable{problem: problem}
}

type unavailable struct{ problem string }

func (u *unavailable) Sample(ctx context.Context) (Snapshot, error) {
	snap := Snapshot{Time: time.Now(), Devices: []Device{}, Source: SourceNone, Problem: u.problem}
	if err := ctx.Err(); err != nil {
		return snap, fmt.Errorf("sample GPUs: %w", err)
	}
	return snap, nil
}

func (u *unavailable) Close() error { return nil }

// Text is the human summary printed by `studio-worker gpu`.
func (s Snapshot) Text() string {
	var b strings.Builder
	if s.Problem != "" {
		b.WriteString(s.Problem)
		b.WriteString("\n")
	}
	if len(s.Devices) == 0 {
		if s.Problem == "" {
			b.WriteString("No NVIDIA GPU found.\n")
		}
		return b.String()
	}
	for i, d := range s.Devices {
		if i > 0 {
			b.WriteString("\n")
		}
		name := d.Name
		if name == "" {
			name = "unknown GPU"
		}
		fmt.Fprintf(&b, "GPU %d: %s", d.Index, name)
		if s.Simulated {
			b.WriteString(" (simulated)")
		}
		// A GPU without VRAM of its own (Apple silicon) is not to be read as a card with so much
		// VRAM: its figures are the share of the computer's memory that jobs may use.
		mem, whose := "VRAM:  ", ""
		if d.UnifiedMemory {
			mem, whose = "Memory:", " (the share of unified memory that jobs may use)"
			b.WriteString(" (unified memory)")
		}
		b.WriteString("\n")
		if d.TotalMB > 0 {
			fmt.Fprintf(&b, "  %s %s / %s used, %s free%s\n", mem, textGB(d.UsedMB), textGB(d.TotalMB), textGB(d.FreeMB), whose)
		} else {
			fmt.Fprintf(&b, "  %s unknown\n", mem)
		}
		util, temp, power := "n/a", "n/a", "n/a"
		if d.HasUtilization {
			util = fmt.Sprintf("%d%%", d.UtilizationPct)
		}
		if d.HasTemperature {
			temp = fmt.Sprintf("%d °C", d.TemperatureC)
		}
		if d.HasPower {
			power = fmt.Sprintf("%.0f W", d.PowerW)
		}
		fmt.Fprintf(&b, "  Load:   %s   Temp: %s   Power: %s\n", util, temp, power)
		if len(d.Processes) == 0 {
			b.WriteString("  Processes: none\n")
			continue
		}
		b.WriteString("  Processes:\n")
		for _, p := range d.Processes {
			name := p.Name
			if name == "" {
				name = "?"
			}
			kind := "compute"
			if p.Graphics {
				kind = "graphics"
			}
			used := textGB(p.UsedMB)
			if p.MemoryUnknown {
				used = "memory not reported by the driver"
			}
			fmt.Fprintf(&b, "    %-16s pid %-8d %-8s %s\n", name, p.PID, kind, used)
		}
	}
	return b.String()
}

func textGB(mb int64) string {
	return fmt.Sprintf("%.1f GB", float64(mb)/1024)
}
