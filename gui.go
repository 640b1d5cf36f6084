package main

import (
	"studioworker/app"
	"studioworker/ui"
)

// gui opens the window and the tray; quit stops the worker behind them (nil when the window is
// attached to a worker that runs elsewhere, which keeps running).
func gui(src app.Source, ctl app.Controller, quit func()) error {
	return ui.Run(src, ctl, ui.Options{Quit: quit, ShowOnStart: true})
}
