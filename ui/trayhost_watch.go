// trayhost_watch.go: a tray host that comes up after the app — at login, an autostarted app
// often starts before the desktop's panel. The window looks for one for a while; when it
// appears, the tray takes over (closing the window hides it again), and a start in the tray that
// found none opens the window only once it has waited long enough. It must not know how a host
// is found: env.trayHost does that.

package ui

import (
	"context"
	"time"
)

// noTrayNote is the header's note while no tray host shows the icon.
const noTrayNote = "No system tray was found, so this window is how you control Studio Worker: closing it quits."

const (
	defaultHostPoll  = time.Second
	defaultHostWait  = 20 * time.Second // a panel that is not up 20 s after login is not coming
	defaultHostWatch = 2 * time.Minute
)

// useTray hands the window to the tray: a click on the icon shows it, closing it hides it.
func (w *Window) useTray() {
	w.hasTray = true
	w.tray.SetSystemTrayWindow(w.win)
	// Fyne's own tap handler shows the Fyne window behind our back: a click on the icon must go
	// through Show, which starts the clock and brings the contents up to date.
	w.env.onTrayTap(func() { w.onUI(w.Show) })
	w.win.SetCloseIntercept(w.closeRequested) // SetSystemTrayWindow sets its own
}

// watchForTrayHost looks for a tray host every hostPoll for hostWatch. A window started in the
// tray that has found none after hostWait is shown, since nothing else would show the app.
func (w *Window) watchForTrayHost(ctx context.Context) {
	poll, wait, watch := orDuration(w.env.hostPoll, defaultHostPoll), orDuration(w.env.hostWait, defaultHostWait),
		orDuration(w.env.hostWatch, defaultHostWatch)
	t := time.NewTicker(poll)
	defer t.Stop()
	start := time.Now()
	shown := w.opts.ShowOnStart
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if w.env.trayHost() {
			w.onUI(w.trayHostArrived)
			return
		}
		waited := time.Since(start)
		if !shown && waited >= wait {
			shown = true
			w.onUI(w.Show)
		}
		if waited >= watch {
			if !shown {
				w.onUI(w.Show)
			}
			return
		}
	}
}

// trayHostArrived: the tray takes over; a window started in the tray and never shown stays
// hidden, one the creator has in front of them stays open.
func (w *Window) trayHostArrived() {
	if w.hasTray || w.tray == nil {
		return
	}
	w.useTray()
	w.header.hideNote(noTrayNote)
	w.env.log.Info("a system tray host appeared: closing the window now keeps Studio Worker in the tray")
}

func orDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
