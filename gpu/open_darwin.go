// Open on a Mac: the facts and counters the unified-memory sampler (unified.go) needs, read with
// sysctl through golang.org/x/sys/unix, so the worker builds without cgo and without a Mac's C
// toolchain. Only compiled and vetted off a Mac (GOOS=darwin); nothing here has run.
package gpu

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Open returns the sampler for this Mac's GPU: on Apple silicon its share of unified memory, with
// the free figure read live from the kernel's page counters; on an Intel Mac a sampler that says
// there is no GPU it can read.
func Open(opts Options) Sampler {
	h, err := readUnifiedHost()
	pageSize, perr := sysctlInt("vm.pagesize")
	pages := readUnifiedPages
	if perr == nil {
		// One read at Open tells whether this macOS has the counters at all; a Mac that lacks
		// them gets the fixed budget and a sentence, not a failed sample every two seconds.
		_, perr = readUnifiedPages()
	}
	if perr != nil {
		pages, pageSize = nil, 0
	}
	return openUnified(h, err, opts, pages, pageSize)
}

// readUnifiedHost reads what does not change while the worker runs. Only the memory size is
// required; the rest have safe fallbacks (a generic name, no wired limit).
func readUnifiedHost() (unifiedHost, error) {
	var h unifiedHost
	mem, err := sysctlInt("hw.memsize")
	if err != nil {
		return h, err
	}
	h.MemMB = mem / bytesPerMB
	h.Chip, _ = unix.Sysctl("machdep.cpu.brand_string")
	// hw.optional.arm64 does not exist on an Intel Mac (ENOENT): that, like 0, means no Apple GPU.
	arm64, _ := sysctlInt("hw.optional.arm64")
	translated, _ := sysctlInt("sysctl.proc_translated")
	h.AppleSilicon = arm64 == 1 || translated == 1
	// iogpu.wired_limit_mb is there from macOS 14; before it, and when unset, macOS decides.
	if limit, err := sysctlInt("iogpu.wired_limit_mb"); err == nil && limit > 0 {
		h.WiredLimitMB = limit
	}
	return h, nil
}

// readUnifiedPages reads the live page counters. They are in the kernel's pages (vm.pagesize,
// 16 KB on Apple silicon), not in the process's own, which is 4 KB under Rosetta.
func readUnifiedPages() (unifiedPages, error) {
	var p unifiedPages
	var errs []error
	for _, c := range []struct {
		name string
		into *uint64
	}{
		{"vm.page_free_count", &p.Free},
		{"vm.page_pageable_external_count", &p.External},
		{"vm.page_purgeable_count", &p.Purgeable},
	} {
		n, err := sysctlInt(c.name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		*c.into = uint64(max(n, 0))
	}
	return p, errors.Join(errs...)
}

// sysctlInt reads a numeric sysctl whatever its width.
func sysctlInt(name string) (int64, error) {
	raw, err := unix.SysctlRaw(name)
	if err != nil {
		return 0, fmt.Errorf("sysctl %s: %w", name, err)
	}
	n, err := sysctlNumber(raw)
	if err != nil {
		return 0, fmt.Errorf("sysctl %s: %w", name, err)
	}
	return n, nil
}
