// Apple silicon's GPU as the worker sees it: the share of unified memory that jobs may use and
// how much of it is free now. This file is plain arithmetic and runs everywhere, so its tests run
// on Linux; open_darwin.go only reads the numbers from the Mac (sysctl, no cgo) and hands them here.
package gpu

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

const (
	// unifiedMinReserveMB is the least unified memory kept back by default. A quarter of an 8 GB
	// Mac (2 GB) is not enough for macOS, the window and a browser: below 4 GB the Mac starts to
	// swap and every program on it, the jobs too, slows to a crawl.
	unifiedMinReserveMB = 4 * 1024
	// unifiedUUID is the device's stable identity: a Mac has one GPU, and nothing without cgo
	// names it more uniquely. The chip's name follows it, so that a hub can tell Macs apart by model.
	unifiedUUID = "unified-"
)

// unifiedHost is what a Mac says about itself once, at Open.
type unifiedHost struct {
	// Chip is machdep.cpu.brand_string, e.g. "Apple M2 Pro": on Apple silicon the GPU is part of
	// the chip, so the chip's name is the GPU's.
	Chip string
	// MemMB is hw.memsize: all of the unified memory.
	MemMB int64
	// AppleSilicon is hw.optional.arm64, or sysctl.proc_translated for an Intel build of the
	// worker running under Rosetta on an Apple silicon Mac (the GPU is the same either way).
	AppleSilicon bool
	// WiredLimitMB is iogpu.wired_limit_mb: the most memory the GPU may wire, when the creator has
	// set it (sudo sysctl); 0 when unset or unreadable, and macOS then decides.
	WiredLimitMB int64
}

// unifiedPages is one read of the kernel's page counters (vm.page_*_count), in kernel pages.
type unifiedPages struct {
	Free      uint64 // vm.page_free_count: pages no one uses
	External  uint64 // vm.page_pageable_external_count: file cache, dropped when memory is needed
	Purgeable uint64 // vm.page_purgeable_count: memory programs marked as disposable
}

// availableMB is the memory that a new job could have now without pushing another program out to
// swap: free pages and the ones macOS drops first when memory runs short (Activity Monitor's
// "cached files"). Speculative read-ahead pages are left out, so the figure errs on the low side.
func (p unifiedPages) availableMB(pageSize int64) int64 {
	return int64((p.Free + p.External + p.Purgeable) * uint64(max(pageSize, 0)) / bytesPerMB)
}

// unifiedDefaultReserveMB is the reserve when the config leaves it at 0: a quarter of the memory,
// at least 4 GB. Metal's own default limit on what the GPU may use (recommendedMaxWorkingSetSize)
// keeps back roughly a quarter on large Macs and a third on small ones; a quarter lines up with it
// on most Macs, so a job admitted here is one that Ollama or llama.cpp can put wholly on the GPU,
// and the 4 GB floor keeps an 8 GB Mac usable for the creator while a job runs.
func unifiedDefaultReserveMB(memMB int64) int64 {
	return max(memMB/4, unifiedMinReserveMB)
}

// unifiedBudgetMB is what jobs may use at most: the memory less the reserve (the default when
// reserveMB <= 0), never more than a GPU wired limit the creator has set, never below 0.
func unifiedBudgetMB(h unifiedHost, reserveMB int64) int64 {
	if reserveMB <= 0 {
		reserveMB = unifiedDefaultReserveMB(h.MemMB)
	}
	budget := h.MemMB - reserveMB
	if h.WiredLimitMB > 0 {
		budget = min(budget, h.WiredLimitMB)
	}
	return max(budget, 0)
}

// unifiedFreeMB is what jobs may use now: the budget, unless other programs already use more
// than the reserve, and then only what is still available.
func unifiedFreeMB(budgetMB, availableMB int64) int64 {
	return min(max(availableMB, 0), budgetMB)
}

// unifiedName is the GPU's name. Under Rosetta some macOS versions give the translated process a
// made-up brand ("VirtualApple @ 2.50GHz processor"), which would only confuse a creator.
func unifiedName(chip string) string {
	chip = strings.TrimSpace(chip)
	if !strings.HasPrefix(chip, "Apple") {
		return "Apple silicon GPU"
	}
	return chip
}

// unifiedSlug makes a chip's name into the tail of a UUID: "Apple M2 Pro" -> "apple-m2-pro".
func unifiedSlug(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if ('a' <= r && r <= 'z') || ('0' <= r && r <= '9') {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
			continue
		}
		dash = true
	}
	return b.String()
}

// openUnified turns what the Mac said about itself into a Sampler. hostErr is the failure to read
// the facts it needs (the memory size); pages reads the live counters, and is nil when they cannot
// be read, in which case every snapshot says jobs may use the whole budget.
func openUnified(h unifiedHost, hostErr error, opts Options, pages func() (unifiedPages, error), pageSize int64) Sampler {
	switch {
	case hostErr != nil:
		return Unavailable(fmt.Sprintf("Could not read this Mac's memory size (%v): memory checks are off", hostErr))
	case !h.AppleSilicon:
		return Unavailable("This Mac has an Intel processor, and Studio Worker can only read Apple silicon GPUs on a Mac: memory checks are off")
	}
	name := unifiedName(h.Chip)
	s := &unifiedSampler{
		dev: Device{Index: 0, Name: name, UUID: unifiedUUID + unifiedSlug(name),
			TotalMB: unifiedBudgetMB(h, opts.UnifiedReserveMB), UnifiedMemory: true},
		pages: pages, pageSize: pageSize,
	}
	switch {
	case s.dev.TotalMB <= 0:
		s.problem = fmt.Sprintf("The unified memory reserve leaves nothing of this Mac's %s for jobs: "+
			"lower gpu.unified_memory_reserve_mb (0 keeps back a quarter)", textGB(h.MemMB))
	case pages == nil || pageSize <= 0:
		s.pages = nil
		s.problem = "This Mac does not say how much memory is free: jobs are checked against the fixed unified-memory budget"
	}
	return s
}

// unifiedSampler follows the Sampler contract for the one GPU of an Apple silicon Mac.
type unifiedSampler struct {
	dev      Device // everything but the live figures
	pages    func() (unifiedPages, error)
	pageSize int64
	problem  string // a standing problem, said in every snapshot
	closed   bool
}

func (s *unifiedSampler) Sample(ctx context.Context) (Snapshot, error) {
	snap := Snapshot{Time: time.Now(), Devices: []Device{}, Source: SourceUnified, Problem: s.problem}
	if s.closed {
		snap.Problem = "GPU monitoring has stopped: memory checks are off"
		return snap, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return snap, fmt.Errorf("sample unified memory: %w", err)
	}
	d := s.dev
	d.Processes = []Process{}
	d.FreeMB = d.TotalMB
	var err error
	if s.pages != nil {
		var p unifiedPages
		if p, err = s.pages(); err != nil {
			// The budget still holds; only the live part is missing, so the device stays and
			// the creator is told its free figure may be too high.
			err = fmt.Errorf("read free memory: %w", err)
			snap.Problem = fmt.Sprintf("Could not read this Mac's free memory (%v): memory checks may be wrong", err)
		} else {
			d.FreeMB = unifiedFreeMB(d.TotalMB, p.availableMB(s.pageSize))
		}
	}
	d.UsedMB = d.TotalMB - d.FreeMB
	snap.Devices = append(snap.Devices, d)
	return snap, err
}

func (s *unifiedSampler) Close() error {
	s.closed = true
	return nil
}

// sysctlNumber decodes a numeric sysctl value. The kernel declares some as 32-bit and some as
// 64-bit, and has changed its mind across versions; reading the raw bytes and going by their
// length spares the worker a wrong guess (Apple silicon and Intel Macs are both little-endian).
func sysctlNumber(raw []byte) (int64, error) {
	switch len(raw) {
	case 4:
		return int64(int32(binary.LittleEndian.Uint32(raw))), nil
	case 8:
		return int64(binary.LittleEndian.Uint64(raw)), nil
	default:
		return 0, fmt.Errorf("a number of %d bytes", len(raw))
	}
}
