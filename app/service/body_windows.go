//go:build windows

// body_windows.go: answering the Windows service manager for `run`, with x/sys/windows/svc
// directly rather than kardianos' Run: kardianos decides once, at init, whether the process is a
// service and runs it as a console program otherwise (which the manager then times out), and it
// reports "stopped" as soon as a stop is asked for, while the worker is still finishing its job.
// Here the manager is told "stop pending", with a wait hint, until the worker has really ended.

package service

import (
	"time"

	"golang.org/x/sys/windows/svc"
)

// Serve runs body as the service Name until it ends, and returns the worker's exit code, which is
// also the service's; 0 when the worker never reported one (a stop that outlasted its wait). An
// error means the service manager could not be answered at all.
func Serve(body Body) (int, error) {
	h := &handler{body: body, code: -1}
	if err := svc.Run(Name, h); err != nil {
		return 0, err // as svc says it: the caller prints "service: …"
	}
	if h.code < 0 {
		return 0, nil
	}
	return h.code, nil
}

type handler struct {
	body Body
	code int // the worker's exit code, -1 until it ends
}

func (h *handler) Execute(_ []string, req <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	h.body.Start()
	running := svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	status <- running
	for {
		select {
		case h.code = <-h.body.Done: // ended by itself: credentials rejected, superseded, …
			return h.exit()
		case c := <-req:
			switch c.Cmd {
			case svc.Interrogate:
				status <- c.CurrentStatus
			case svc.Stop, svc.Shutdown:
				h.drain(status)
				return h.exit()
			}
		}
	}
}

// drain asks the worker to finish and keeps the manager informed until it has, or stops it at
// once after stopWait.
func (h *handler) drain(status chan<- svc.Status) {
	const hint = 3 * time.Second
	h.body.Drain()
	deadline := time.NewTimer(stopWait)
	defer deadline.Stop()
	tick := time.NewTicker(hint / 2)
	defer tick.Stop()
	var checkpoint uint32
	report := func() {
		checkpoint++
		status <- svc.Status{State: svc.StopPending, CheckPoint: checkpoint, WaitHint: uint32(hint.Milliseconds())}
	}
	report()
	for {
		select {
		case h.code = <-h.body.Done:
			return
		case <-tick.C:
			report()
		case <-deadline.C:
			h.body.Stop()
			select {
			case h.code = <-h.body.Done:
			case <-time.After(2 * time.Second):
			}
			return
		}
	}
}

// exit is Execute's answer: 0, or the worker's own code as a service-specific one.
func (h *handler) exit() (bool, uint32) {
	if h.code <= 0 {
		return false, 0
	}
	return true, uint32(h.code)
}
