package ui

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"

	"studioworker/app"
)

// fakeTrayApp is the test app with a tray that records what it is given: the real tray needs a
// desktop session with a StatusNotifier host, which the tests do not have.
type fakeTrayApp struct {
	fyne.App
	mu     sync.Mutex
	menus  []*fyne.Menu
	icons  []string
	window fyne.Window
}

var _ desktop.App = (*fakeTrayApp)(nil)

func (a *fakeTrayApp) SetSystemTrayMenu(m *fyne.Menu) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.menus = append(a.menus, m)
}

func (a *fakeTrayApp) SetSystemTrayIcon(r fyne.Resource) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.icons = append(a.icons, r.Name())
}

func (a *fakeTrayApp) SetSystemTrayWindow(w fyne.Window) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.window = w
}

func (a *fakeTrayApp) Menus() []*fyne.Menu {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.menus)
}

func (a *fakeTrayApp) Icons() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.icons)
}

func withTray(host bool) harnessOption {
	return func(c *harnessConfig) { c.env.trayHost = func() bool { return host } }
}

func newTrayHarness(t *testing.T, s app.State, host bool) (*harness, *fakeTrayApp) {
	var tray *fakeTrayApp
	h := newHarness(t, s, withTray(host), withApp(func(a fyne.App) fyne.App {
		tray = &fakeTrayApp{App: a}
		return tray
	}))
	return h, tray
}

func TestTrayFollowsState(t *testing.T) {
	h, tray := newTrayHarness(t, idleState(), true)
	if m := tray.Menus(); len(m) != 1 || m[0].Items[0].Label != "Idle — waiting for jobs" {
		t.Fatalf("first menu: %+v", m)
	}
	if got := tray.Icons(); !slices.Equal(got, []string{"tray-idle.png"}) {
		t.Fatalf("icons %v", got)
	}
	if tray.window != h.w.win {
		t.Error("the tray does not know the window to show")
	}

	// A GPU sample changes nothing the tray shows: no D-Bus round for it.
	h.publish(func(s *app.State) { s.GPU.Cards[0].UsedMB += 100 })
	if n := len(tray.Menus()); n != 1 {
		t.Errorf("the menu was rebuilt %d times for a GPU sample", n)
	}

	h.publish(replaceWith(busyState()))
	menus := tray.Menus()
	if len(menus) != 2 || menus[1].Items[0].Label != "Busy: image · sdxl-turbo" {
		t.Fatalf("menus after busy: %d, %q", len(menus), menus[len(menus)-1].Items[0].Label)
	}
	if menuItem(t, menus[1], labelAutoAccept).Checked {
		t.Error("auto-accept shows checked while it is off")
	}
	h.publish(func(s *app.State) { s.Conn.State = connAuthFailed })
	if got := tray.Icons(); !slices.Equal(got, []string{"tray-idle.png", "tray-busy.png", "tray-error.png"}) {
		t.Errorf("icons %v", got)
	}

	// A click in the tray menu reaches the Controller.
	h.ui.do(func() { menuItem(t, tray.Menus()[2], labelPause).Action() })
	waitFor(t, "Pause from the tray", func() bool { return h.ctl.called("Pause") })
}

func TestClosingTheWindowWithATrayHidesIt(t *testing.T) {
	h, _ := newTrayHarness(t, busyState(), true)
	h.ui.do(func() {
		h.w.closeRequested()
		if h.w.win.Canvas().Overlays().Top() != nil {
			t.Error("closing the window asked about quitting although a tray keeps the app")
		}
		if h.w.header.noteBox.Visible() {
			t.Error("the no-tray note shows with a tray")
		}
	})
	if h.quitCount() != 0 {
		t.Error("closing the window quit the app although a tray is there")
	}
}

func TestWithoutTrayHostClosingQuitsAndSaysSo(t *testing.T) {
	h, _ := newTrayHarness(t, busyState(), false)
	h.ui.do(func() {
		if !h.w.header.noteBox.Visible() {
			t.Error("the window does not say that it is the only way to control the app")
		}
		h.w.closeRequested()
		if h.w.win.Canvas().Overlays().Top() == nil {
			t.Error("closing without a tray, with a job running, did not ask first")
		}
	})
}

// menuItem finds a menu's item by its label.
func menuItem(t *testing.T, m *fyne.Menu, label string) *fyne.MenuItem {
	t.Helper()
	for _, it := range m.Items {
		if it.Label == label {
			return it
		}
	}
	t.Fatalf("no %q in the menu", label)
	return nil
}

// TestNoSessionBusLeavesTheTrayAlone: without a session bus the tray is never started — Fyne's
// systray would fail to connect and then panic as the app quits (seen under Xvfb with
// DBUS_SESSION_BUS_ADDRESS pointing nowhere) — and the window says it is the way to control the app.
func TestNoSessionBusLeavesTheTrayAlone(t *testing.T) {
	var tray *fakeTrayApp
	h := newHarness(t, busyState(), withTray(true), func(c *harnessConfig) { c.env.trayBus = func() bool { return false } },
		withApp(func(a fyne.App) fyne.App {
			tray = &fakeTrayApp{App: a}
			return tray
		}))
	h.publish(func(s *app.State) { s.Counters.Done++ })
	if m, i := tray.Menus(), tray.Icons(); len(m) != 0 || len(i) != 0 || tray.window != nil {
		t.Fatalf("the tray was touched without a session bus: %d menus, icons %v, window %v", len(m), i, tray.window != nil)
	}
	h.ui.do(func() {
		if !h.w.visible || !h.w.header.noteBox.Visible() {
			t.Errorf("window shown %v, no-tray note shown %v", h.w.visible, h.w.header.noteBox.Visible())
		}
	})
}

// TestATrayHostThatComesLate: an autostarted window (--tray) that starts before the desktop's
// panel waits for a tray host instead of opening; when one appears the tray takes over, and a
// start that finds none opens the window once it has waited long enough.
func TestATrayHostThatComesLate(t *testing.T) {
	for _, tt := range []struct {
		name   string
		comes  bool
		wantUp bool // the window ends up shown
	}{
		{"the panel comes up", true, false},
		{"no panel ever", false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var host atomic.Bool
			var tray *fakeTrayApp
			wait := time.Hour
			if !tt.comes {
				wait = 30 * time.Millisecond
			}
			h := newHarness(t, idleState(), func(c *harnessConfig) {
				c.env.trayHost = host.Load
				c.env.hostPoll, c.env.hostWait = 5*time.Millisecond, wait
			}, withApp(func(a fyne.App) fyne.App {
				tray = &fakeTrayApp{App: a}
				return tray
			}))
			h.ui.do(func() {
				if h.w.visible {
					t.Fatal("a window started in the tray opened before waiting for a tray host")
				}
			})
			if tt.comes {
				host.Store(true)
				h.waitUI("the tray to take over", func() bool { return h.w.hasTray })
				h.ui.do(func() {
					if tray.window != h.w.win || h.w.header.noteBox.Visible() {
						t.Errorf("tray window set %v, no-tray note still shown %v", tray.window == h.w.win, h.w.header.noteBox.Visible())
					}
				})
			} else {
				h.waitUI("the window to open for want of a tray", func() bool { return h.w.visible })
			}
			h.ui.do(func() {
				if h.w.visible != tt.wantUp {
					t.Errorf("window shown %v, want %v", h.w.visible, tt.wantUp)
				}
			})
		})
	}
}
