package ui

import (
	"errors"
	"sync/atomic"
	"testing"

	"fyne.io/fyne/v2"

	"studioworker/app"
	"studioworker/protocol"
)

// closedTrayApp is the recording tray after Fyne has closed the tray's D-Bus connection (it does
// on SIGTERM, before our window closes): fyne.io/systray's SetIcon then panics.
type closedTrayApp struct {
	*fakeTrayApp
	closed atomic.Bool
}

func (a *closedTrayApp) SetSystemTrayIcon(r fyne.Resource) {
	if a.closed.Load() {
		panic(errors.New("dbus: connection closed by user"))
	}
	a.fakeTrayApp.SetSystemTrayIcon(r)
}

func TestAClosedTrayIsLetGo(t *testing.T) {
	var tray *closedTrayApp
	h := newHarness(t, idleState(), withTray(true), withApp(func(a fyne.App) fyne.App {
		tray = &closedTrayApp{fakeTrayApp: &fakeTrayApp{App: a}}
		return tray
	}))
	tray.closed.Store(true)
	h.publish(replaceWith(busyState())) // a new icon: the panic must not reach the state's goroutine
	menus := len(tray.Menus())
	h.publish(func(s *app.State) { s.Mode, s.Paused, s.Running = protocol.StatePaused, true, nil })
	if n := len(tray.Menus()); n != menus {
		t.Errorf("the menu was rebuilt %d more times on a closed tray", n-menus)
	}
	h.ui.do(func() {
		if got := h.w.state.Paused; !got {
			t.Error("the window stopped following states after the tray closed")
		}
	})
}
