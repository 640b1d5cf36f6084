//go:build windows

// Answering the Windows service manager for `run`, with x/sys/windows/svc directly rather than
// kardianos' Run: kardianos decides once, at init, whether the process is a service and runs it as
// a console program otherwise (which the manager then times out), and it reports "stopped" as
// soon as a stop is asked for, while the worker is still finishing its job. Here the manager is
// told "stop pending", with a wait hint, until the worker has really ended.
package app

import (
	"time"

	"golang.org/x/sys/windows/svc"
)

// serveService runs body as the service name until it ends; its exit code is the service's.
func serveService(name string, body serviceBody) (int, error) {
	h := &svcHandler{body: body, code: -1}
	if err := svc.Run(name, h); err != nil {
		return ExitError, err
	}
	if h.code < 0 {
		return ExitOK, nil
	}
	return h.code, nil
}

type svcHandler struct {
	body serviceBody
	code int // the worker's exit code, -1 until it ends
}

func (h *svcHandler) Execute(_ []string, req <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	h.body.start()
	running := svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	status <- running
	for {
		select {
		case h.code = <-h.body.done: // ended by itself: credentials rejected, superseded, …
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
// once after serviceStopWait.
func (h *svcHandler) drain(status chan<- svc.Status) {
	const hint = 3 * time.Second
	h.body.drain()
	deadline := time.NewTimer(serviceStopWait)
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
		case h.code = <-h.body.done:
			return
		case <-tick.C:
			report()
		case <-deadline.C:
			h.body.stop()
			select {
			case h.code = <-h.body.done:
			case <-time.After(2 * time.Second):
			}
			return
		}
	}
}

// exit is Execute's answer: 0, or the worker's own code as a service-specific one.
func (h *svcHandler) exit() (bool, uint32) {
	if h.code <= 0 {
		return false, 0
	}
	return true, uint32(h.code)
}
