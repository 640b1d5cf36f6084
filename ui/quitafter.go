// quitafter.go: "Quit after this job" — the worker takes no new offer, the running jobs finish
// and their results reach the Studio, then the worker stops and the window closes. It is the
// one way to stop soon without losing work; Pause already lets a running job finish, so the
// window offers no separate "finish, then pause". It must not know how the worker drains.

package ui

import (
	"context"

	"studioworker/app"
)

// quitAfter is what the "Quit after this job" item can do now.
type quitAfter int

const (
	quitAfterOff       quitAfter = iota // the worker runs elsewhere (a service): quitting the window leaves it running
	quitAfterAvailable                  // the window owns the worker
	quitAfterAsked                      // asked: the worker is finishing
)

func (w *Window) quitAfterState() quitAfter {
	switch {
	case w.opts.QuitAfterJobs == nil:
		return quitAfterOff
	case w.quittingAfter:
		return quitAfterAsked
	}
	return quitAfterAvailable
}

// quitAfterItem is the tray's item: on while a job runs and the window can stop its worker.
func quitAfterItem(s app.State, qa quitAfter) TrayItem {
	if qa == quitAfterAsked {
		return TrayItem{Label: labelQuitting, Disabled: true}
	}
	return TrayItem{Label: labelQuitAfter, Action: TrayQuitAfter, Disabled: qa == quitAfterOff || len(s.Running) == 0}
}

// quitAfterJobs asks the worker to finish and stop; with nothing running it quits at once.
func (w *Window) quitAfterJobs() {
	if w.opts.QuitAfterJobs == nil {
		return
	}
	if len(w.state.Running) == 0 {
		w.quitNow()
		return
	}
	w.quittingAfter = true
	w.opts.QuitAfterJobs()
	w.header.showNote("Studio Worker quits once the running job is done and its result is with the Studio. No new jobs meanwhile.")
	w.updateTray(w.state)
	w.header.update(w.state, w.env.now())
}

// followStopped closes the window once the worker behind it has stopped by itself.
func (w *Window) followStopped(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-w.opts.Stopped:
		w.onUI(w.quitNow)
	}
}
