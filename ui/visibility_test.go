// visibility_test.go: the window's clock runs only while someone can see what it moves — the
// window open, or an offer's countdown in the tray — and a second launch's raise shows the
// window (issue 18 findings 2, 6 and 7).

package ui

import (
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"

	"studioworker/app"
	"studioworker/protocol"
)

func TestHiddenWindowStopsItsClockAndTheTrayCountsDown(t *testing.T) {
	idle := idleState()
	idle.AutoAccept = false
	var tray *fakeTrayApp
	h := newHarness(t, idle, withTray(true), withTick(time.Millisecond), withApp(func(a fyne.App) fyne.App {
		tray = &fakeTrayApp{App: a}
		return tray
	}))
	// Started in the tray (no ShowOnStart), nothing waiting: the clock sleeps.
	waitFor(t, "the clock to stop while hidden", h.w.tickParked.Load)

	// An offer that waits for the creator: in the tray with its countdown, and the clock runs.
	h.publish(func(s *app.State) {
		s.Offers = []app.PendingOffer{{JobID: "job-7", Kind: protocol.KindImage, Model: "sdxl",
			ExpiresAt: h.clock.Now().Add(2 * time.Minute), WaitingForUser: true}}
	})
	waitFor(t, "the clock to run for the tray's countdown", func() bool { return !h.w.tickParked.Load() })
	countdown := func() string {
		for _, it := range tray.Menus()[len(tray.Menus())-1].Items {
			if strings.HasPrefix(it.Label, "Offer: ") {
				return it.Label
			}
		}
		return ""
	}
	if got := countdown(); got != "Offer: image · sdxl — 2 min 0 s left" {
		t.Fatalf("tray offer line %q", got)
	}
	h.clock.Add(25 * time.Second)
	waitFor(t, "the tray's countdown to move", func() bool { return countdown() == "Offer: image · sdxl — 1 min 40 s left" })
	h.ui.do(func() { menuItem(t, tray.Menus()[len(tray.Menus())-1], "Accept").Action() })
	waitFor(t, "Accept from the tray", func() bool { return h.ctl.called("AcceptOffer job-7") })

	// Answered: hidden again with nothing to count, the clock stops.
	h.publish(func(s *app.State) { s.Offers = nil })
	waitFor(t, "the clock to stop once no offer waits", h.w.tickParked.Load)

	// Shown: the clock runs, and the window shows what changed while it was hidden.
	h.publish(func(s *app.State) { s.Offers = nil; s.Counters.Done = 41 })
	h.ui.do(h.w.Show)
	waitFor(t, "the clock to run while the window is open", func() bool { return !h.w.tickParked.Load() })
	h.ui.do(func() {
		if got := h.w.dash.recentHeading.Text; !strings.Contains(got, "41 done") {
			t.Errorf("after Show the dashboard says %q: what changed while hidden is missing", got)
		}
		h.w.closeRequested()
	})
	waitFor(t, "the clock to stop after closing to the tray", h.w.tickParked.Load)
}

func TestRaiseShowsTheWindow(t *testing.T) {
	raise := make(chan struct{}, 1)
	h := newHarness(t, idleState(), withTray(true), withOptions(Options{Raise: raise}), withApp(func(a fyne.App) fyne.App {
		return &fakeTrayApp{App: a}
	}))
	h.ui.do(func() {
		if h.w.visible {
			t.Fatal("the window started shown without ShowOnStart")
		}
	})
	raise <- struct{}{}
	h.waitUI("the window to show on a raise", func() bool { return h.w.visible })
}

// TestWaitingOfferNotifiesWhileHidden: an offer that waits for the creator raises a notification
// while the window is closed to the tray, and none while it is open, where the offer shows.
func TestWaitingOfferNotifiesWhileHidden(t *testing.T) {
	h := newHarness(t, idleState(), withTray(true), withApp(func(a fyne.App) fyne.App { return &fakeTrayApp{App: a} }))
	offer := func(id string) {
		po := app.PendingOffer{JobID: id, Kind: protocol.KindLLM, Model: "llama", ExpiresAt: t0.Add(time.Minute), WaitingForUser: true}
		h.obs.Notify(app.Notice{Kind: app.NoticeOffer, Time: t0, JobID: id, Offer: &po})
		h.sync()
	}
	offers := func() []string {
		var out []string
		for _, n := range h.app.Sent() {
			if n.Title == "An offer waits for you" {
				out = append(out, n.Content)
			}
		}
		return out
	}
	offer("job-1")
	if got := offers(); len(got) != 1 || !strings.Contains(got[0], "llm · llama") || !strings.Contains(got[0], "tray menu") {
		t.Fatalf("offer notifications while hidden: %q", got)
	}
	h.ui.do(h.w.Show)
	offer("job-2")
	if got := offers(); len(got) != 1 {
		t.Fatalf("an offer raised a notification while the window shows it: %q", got)
	}
}
