// Package gpu samples the local GPUs (NVIDIA cards through NVML, Apple silicon's
// unified memory on a Mac) and decides when the worker should yield the GPU to the
// person sitting at the machine.
//
// It answers three questions for the rest of the worker: what GPUs are here
// and how much VRAM is free right now (Snapshot, Sampler, Monitor), is
// another program such as a game using the GPU for graphics (Yielder), and
// which processes belong to the worker itself (OwnPIDs).
//
// The package must not know about sessions, engines, the UI or the wire
// protocol: it takes plain values (a Snapshot, a func that tells which PIDs
// are the worker's) and returns plain values. Admission policy lives in
// package app, which turns a Snapshot into the numbers it needs.
//
// NVML is read through go-nvml on Linux builds with cgo (it dlopens
// libnvidia-ml.so.1 at run time) and through nvml.dll on Windows, without cgo.
// On a Mac with Apple silicon there is no VRAM: Open reports the share of
// unified memory that jobs may use (unified.go; open_darwin.go reads it with
// sysctl, without cgo). Everywhere else, and where no driver answers, Open
// returns a sampler that reports Source "none" and a Problem sentence, so the
// worker still runs with VRAM checks turned off instead of failing.
//
// NVML handles are owned by one goroutine: a Sampler is not safe for
// concurrent use, and Monitor is the single owner that calls it. Code that
// needs a fresh sample while a Monitor runs asks the Monitor (SampleNow),
// never the Sampler.
package gpu
