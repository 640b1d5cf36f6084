// demohub.go is the seam between the worker and the Studio a demo runs against: DemoHub, what a
// demo needs of a hub started in this process, and DemoHubStarter, how one starts. Package demo
// implements them on the reference hub and main wires them in (CLI.DemoHub, passed on to the
// worker in Options.DemoHub), so that neither app nor the window imports the hub. This file
// must not know what a hub is made of, nor which jobs a demo submits.

package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
)

// DemoHub is a Studio hub run in this process for a demo, on loopback, with open registration.
type DemoHub interface {
	// URL is the hub's base URL, for the worker's config.
	URL() string
	// Dir is a folder of the hub's own, which Close removes: the demo worker's spool goes there.
	Dir() string
	// Register registers a worker by name and returns its credentials.
	Register(ctx context.Context, name string) (workerID, authToken string, err error)
	// RunJobs waits for the worker that src shows to connect, submits the demo's jobs, follows
	// each to its end and writes a line per job and a summary to out (problems to errOut); true
	// when every job ended as expected. It returns when ctx ends too.
	RunJobs(ctx context.Context, src Source, plan DemoPlan, out, errOut io.Writer) bool
	// CancelJobs cancels every job of the hub's that has not ended.
	CancelJobs(ctx context.Context)
	// Close stops the hub, waits for it and removes its files.
	Close()
}

// DemoPlan says which of the demo's jobs RunJobs submits.
type DemoPlan struct {
	// Jobs is how many: the demo's plan, repeated to make that many.
	Jobs int
	// NoVRAMDecline leaves out the job meant to be declined for VRAM, which needs the demo
	// command's simulated GPU with another program on it (the window's demo has the real one).
	NoVRAMDecline bool
}

// DemoHubStarter starts a DemoHub; logger gets the hub's messages. ctx bounds its start.
type DemoHubStarter func(ctx context.Context, logger *slog.Logger) (DemoHub, error)

// ErrNoDemoHub is what a demo says in a build that was given no DemoHubStarter.
var ErrNoDemoHub = errors.New("this build of Studio Worker has no demo hub")
