// tray_window.go: the window's side of the tray — handing the menu, icon and tooltip that
// tray.go works out to the desktop when they change, and running what a click on an item or a
// notification asks. It must not know how the menu is worked out.

package ui

import (
	"context"
	"fmt"
	"slices"
	"studioworker/app"
	"studioworker/assets"

	"fyne.io/fyne/v2"
)

// updateTray rebuilds the tray menu and icon when they change.
func (w *Window) updateTray(s app.State) {
	if w.tray == nil {
		return
	}
	items := TrayMenu(s, w.env.now(), w.quitAfterState())
	if !slices.Equal(items, w.trayItems) { // rebuilding a tray menu is a round of D-Bus calls: only on change
		w.trayItems = items
		w.tray.SetSystemTrayMenu(fyneMenu(items, w.trayAction))
	}
	if tip := TrayTooltip(s); tip != w.trayTip && w.hasTray && w.env.trayTooltip != nil {
		w.trayTip = tip
		w.env.trayTooltip(tip)
	}
	if name := trayIconName(s); name != w.trayIcon {
		res, err := w.trayIconResource(name)
		if err != nil {
			w.env.log.Error("tray icon missing", "icon", name, "err", err)
			return
		}
		w.trayIcon = name
		w.setTrayIcon(res)
	}
}

// setTrayIcon hands the icon to the tray, and lets the tray go if it has closed. On SIGTERM or
// SIGINT Fyne quits by itself (its own signal handler, not our quit): it closes the tray's D-Bus
// connection at once, yet still runs the states queued for the UI thread, and fyne.io/systray's
// SetIcon panics on the closed connection (prop.SetMust). The tray is gone by then: stop
// updating it rather than crash on the way out.
func (w *Window) setTrayIcon(res fyne.Resource) {
	defer func() {
		if r := recover(); r != nil {
			w.env.log.Warn("the tray has closed; no more tray updates", "err", r)
			w.tray = nil
		}
	}()
	w.tray.SetSystemTrayIcon(res)
}

func (w *Window) trayIconResource(name string) (fyne.Resource, error) {
	if r, ok := w.icons[name]; ok {
		return r, nil
	}
	b, err := assets.StateIcon(name)
	if err != nil {
		return nil, fmt.Errorf("tray icon %s: %w", name, err)
	}
	r := fyne.NewStaticResource("tray-"+name+".png", b)
	w.icons[name] = r
	return r, nil
}

// notificationAction runs what the creator chose in a notification.
func (w *Window) notificationAction(jobID, action string) {
	switch {
	case action == actionAccept && jobID != "":
		w.run("Accept", func(ctx context.Context) error { return w.ctl.AcceptOffer(ctx, jobID) }, nil)
	default: // the notification itself: whatever it was about is in the window
		w.Show()
	}
}

// trayAction runs a tray menu item (on the UI thread, where Fyne runs menu actions).
func (w *Window) trayAction(it TrayItem) {
	switch it.Action {
	case TrayAccept:
		w.run("Accept", func(ctx context.Context) error { return w.ctl.AcceptOffer(ctx, it.JobID) }, nil)
	case TrayDecline:
		w.run("Decline", func(ctx context.Context) error { return w.ctl.DeclineOffer(ctx, it.JobID) }, nil)
	case TrayAutoAccept:
		on := !w.state.AutoAccept
		w.run("Auto-accept", func(ctx context.Context) error { return w.ctl.SetAutoAccept(ctx, on) }, nil)
	case TrayPause:
		w.run("Pause", w.ctl.Pause, nil)
	case TrayResume:
		w.run("Resume", w.ctl.Resume, nil)
	case TrayQuitAfter:
		w.quitAfterJobs()
	case TrayOpen:
		w.Show()
	case TrayQuit:
		w.quit()
	}
}
