package ui

import (
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"studioworker/app"
)

// TestDashboardMarkup pins the dashboard's layout and words in three states. After an intended
// change, delete the golden and run the test again: it writes the new markup under
// testdata/failed/ to review and move into place.
func TestDashboardMarkup(t *testing.T) {
	for _, tc := range []struct {
		golden string
		state  app.State
	}{
		{"dashboard_idle.xml", idleState()},
		{"dashboard_busy.xml", busyState()},
		{"dashboard_auth_failed.xml", authFailedState()},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			// The window of a double-click, which owns its worker (Quit after this job is there).
			h := newHarness(t, tc.state, withOptions(Options{QuitAfterJobs: func() {}}))
			h.ui.do(func() {
				h.w.win.Resize(fyne.NewSize(960, 640))
				layoutAll(h.w.win.Content())
				test.AssertRendersToMarkup(t, tc.golden, h.w.win.Canvas())
			})
		})
	}
}

// layoutAll lays out the whole tree top-down, as the real driver does on the next frame when a
// minimum size changed; the test canvas never does, so without it a golden would pin a layout no
// user ever sees.
func layoutAll(o fyne.CanvasObject) {
	switch c := o.(type) {
	case *fyne.Container:
		if c.Layout != nil {
			c.Layout.Layout(c.Objects, c.Size())
		}
		for _, ch := range c.Objects {
			layoutAll(ch)
		}
	case fyne.Widget:
		r := test.WidgetRenderer(c)
		r.Layout(c.Size())
		for _, ch := range r.Objects() {
			layoutAll(ch)
		}
	}
}
