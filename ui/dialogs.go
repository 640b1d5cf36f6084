// dialogs.go: the questions the window asks before it does what cannot be undone — quitting
// while jobs run, cancelling a job — in words that say what happens next. It must not know how
// the worker stops a job.

package ui

import (
	"context"
	"fmt"

	"fyne.io/fyne/v2/dialog"
)

// quit asks first when a job is running, then quits.
func (w *Window) quit() {
	n := len(w.state.Running)
	if n == 0 {
		w.quitNow()
		return
	}
	w.Show()
	j := w.state.Running[0]
	msg := fmt.Sprintf("%s is running. Quitting stops it, and the Studio offers it again: to another worker, or to this one when it is back.", jobLabel(j.Kind, j.Model))
	if n > 1 {
		msg = fmt.Sprintf("%d jobs are running. Quitting stops them, and the Studio offers them again: to other workers, or to this one when it is back.", n)
	}
	d := dialog.NewConfirm("Quit Studio Worker?", msg, func(ok bool) {
		if ok {
			w.quitNow()
		}
	}, w.win)
	d.SetConfirmText("Quit")
	d.SetDismissText("Keep running")
	d.Show()
}

// cancelJob asks first: the work done so far is lost, and the job goes to another worker.
func (w *Window) cancelJob(id string) {
	what := "This job"
	for _, j := range w.state.Running {
		if j.JobID == id {
			what = jobLabel(j.Kind, j.Model)
		}
	}
	msg := fmt.Sprintf("%s stops now and what it has done so far is lost. The Studio gives it to another worker; this one will not take it again.", what)
	d := dialog.NewConfirm("Cancel this job?", msg, func(ok bool) {
		if ok {
			w.run("Cancel job "+shortID(id), func(ctx context.Context) error { return w.ctl.CancelJob(ctx, id) }, nil)
		}
	}, w.win)
	d.SetConfirmText("Cancel job")
	d.SetDismissText("Keep running")
	d.Show()
}
