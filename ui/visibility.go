// visibility.go: what the window does while nobody looks at it — nothing it can leave undone.
// Shown, the window follows every State and a one-second clock moves its countdowns; hidden in
// the tray, only the tray follows, and the clock runs only while an offer waits for the creator
// (its countdown is in the tray menu). It must not know what the widgets show.

package ui

import (
	"context"
	"runtime/debug"
	"time"
)

// Show brings the window forward, up to date.
func (w *Window) Show() {
	w.win.Show()
	w.win.RequestFocus()
	if w.visible {
		return
	}
	w.visible = true
	w.apply(w.state) // what changed while hidden, at once rather than at the next State
	w.tick()
}

// hide closes the window to the tray (or on the way out).
func (w *Window) hide() {
	w.win.Hide()
	w.visible = false
	w.wantTicks()
	w.releaseMemory()
}

// releaseMemory gives the heap the window no longer needs back to the OS: the Go runtime keeps a
// freed page for minutes, and a tray app that sits hidden for days should not hold what its start
// (fonts, the first layout) or its last open needed.
func (w *Window) releaseMemory() {
	if !w.visible {
		debug.FreeOSMemory()
	}
}

// releaseAfterStart gives back the start-up's heap once it has settled, when the window starts
// hidden in the tray (at login).
func (w *Window) releaseAfterStart(ctx context.Context) {
	t := time.NewTimer(releaseAfterStart)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
		w.onUI(w.releaseMemory)
	}
}

// releaseAfterStart is how long after a hidden start the heap is given back: long enough for
// the first states, the settings load and the tray's menu to have come and gone.
const releaseAfterStart = 3 * time.Second

// wantTicks starts or stops the clock for what is on screen now. UI thread.
func (w *Window) wantTicks() {
	on := w.visible || (w.hasTray && waitingOffers(w.state) > 0)
	if w.ticking.Swap(on) == on {
		return
	}
	select {
	case w.tickWake <- struct{}{}:
	default: // a wake-up is queued already; the ticker reads ticking afresh
	}
}

// runTicker is the window's clock. A stopped clock costs nothing: the goroutine sleeps on
// tickWake with its ticker stopped.
func (w *Window) runTicker(ctx context.Context) {
	t := time.NewTicker(w.env.tick)
	t.Stop()
	running := false
	for {
		if on := w.ticking.Load(); on != running {
			running = on
			if on {
				t.Reset(w.env.tick)
			} else {
				t.Stop()
			}
		}
		w.tickParked.Store(!running)
		var tc <-chan time.Time
		if running {
			tc = t.C
		}
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-w.tickWake:
		case <-tc:
			w.tickQ.trigger(w.onUI, w.tick)
		}
	}
}

// tick moves what moves with the clock alone.
func (w *Window) tick() {
	now := w.env.now()
	w.updateTray(w.state) // an offer's countdown in the tray menu
	if !w.visible {
		return
	}
	w.header.updateConn(w.state, now)
	w.dash.tick(now)
}

// followRaises shows the window each time a second launch asked for it: that launch exits, and
// the creator who double-clicked the icon again sees the one window there is.
func (w *Window) followRaises(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.opts.Raise:
			w.onUI(w.Show)
		}
	}
}
