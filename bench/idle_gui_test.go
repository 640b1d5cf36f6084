// idle_gui_test.go: the idle_gui figure's own helper (the mean of an RSS window); the figure
// itself needs Xvfb and a bus and is run by ./build.sh bench.

package main

import (
	"testing"
	"time"
)

func TestMeanRSSBetweenCountsOnlyTheWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	samples := []rssSample{{t0.Add(-time.Second), 1000}, {t0, 10}, {t0.Add(time.Second), 20}, {t0.Add(3 * time.Second), 1000}}
	if got := meanRSSBetween(samples, t0, t0.Add(2*time.Second)); got != 15 {
		t.Errorf("mean = %v, want 15", got)
	}
	if got := meanRSSBetween(samples, t0.Add(10*time.Second), t0.Add(11*time.Second)); got != 0 {
		t.Errorf("mean of an empty window = %v, want 0", got)
	}
}
