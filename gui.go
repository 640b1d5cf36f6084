// gui.go: hands the window options app decided on (quit, start hidden, raise) to ui.Run; it holds
// no logic of its own.

package main

import (
	"studioworker/app"
	"studioworker/ui"
)

// gui opens the window and the tray. opt.Quit stops the worker behind them (nil when the window
// is attached to a worker that runs elsewhere, which keeps running).
func gui(src app.Source, ctl app.Controller, opt app.GUIOptions) error {
	return ui.Run(src, ctl, ui.Options{Quit: opt.Quit, ShowOnStart: !opt.StartHidden, Raise: opt.Raise,
		QuitAfterJobs: opt.QuitAfterJobs, Stopped: opt.Stopped})
}
