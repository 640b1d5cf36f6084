// The GPU card's words for memory: VRAM for a graphics card, unified memory for Apple silicon,
// whose GPU has no VRAM of its own.
package ui

import (
	"slices"
	"strings"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"studioworker/app"
)

// cardTexts is every text the dashboard's first GPU card shows, hidden parts left out.
func cardTexts(h *harness) []string {
	var out []string
	var visit func(o fyne.CanvasObject)
	visit = func(o fyne.CanvasObject) {
		if o == nil || !o.Visible() {
			return
		}
		switch w := o.(type) {
		case *widget.Label: // its text, not the rich text it draws it with
			out = append(out, w.Text)
			return
		case *widget.RichText:
			out = append(out, w.String())
			return
		case *fyne.Container:
			for _, ch := range w.Objects {
				visit(ch)
			}
		case fyne.Widget:
			for _, ch := range test.WidgetRenderer(w).Objects() {
				visit(ch)
			}
		}
	}
	h.ui.do(func() { visit(h.w.dash.gpus.get("0").object()) })
	return out
}

func unifiedState() app.State {
	s := idleState()
	s.GPU = app.GPUState{Source: "unified", Cards: []app.GPUCard{{
		Index: 0, Name: "Apple M2 Pro", UUID: "unified-apple-m2-pro", TotalMB: 24576, UsedMB: 2048, FreeMB: 22528,
		UnifiedMemory: true, History: gpuHistory(t0),
	}}}
	return s
}

func wddmState() app.State {
	s := idleState()
	s.GPU.Cards[0].ProcessMemoryUnknown = true
	return s
}

func TestGPUCardNamesItsMemory(t *testing.T) {
	tests := []struct {
		name    string
		state   app.State
		want    []string
		notWant string
	}{
		{"an NVIDIA card has VRAM", idleState(), []string{"VRAM", "3.0 / 24.0 GB · cap 20 GB"}, "nified memory"},
		{"WDDM: the card says per-program VRAM is not reported", wddmState(), []string{"The driver does not report each program's VRAM (Windows WDDM): the worker steps aside for any graphics program not on the ignore list."}, "nified memory"},
		{"Apple silicon has unified memory", unifiedState(), []string{"Unified memory", "unified memory", "2.0 / 24.0 GB · no cap", "GPU 0 · Apple M2 Pro"}, "VRAM"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.state)
			got := cardTexts(h)
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("the card lacks %q: %q", w, got)
				}
			}
			for _, g := range got {
				if strings.Contains(g, tc.notWant) {
					t.Errorf("the card says %q: %q", g, got)
				}
			}
		})
	}
}

func TestGPUCardFollowsTheSource(t *testing.T) {
	// The card is kept across states by its index: a worker that restarts on other hardware (or a
	// window that attaches to another worker) must not keep the old words.
	h := newHarness(t, unifiedState())
	h.publish(replaceWith(idleState()))
	got := cardTexts(h)
	if !slices.Contains(got, "VRAM") || slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "nified memory") }) {
		t.Errorf("after an NVIDIA state, the card says %q", got)
	}
}
