// procenv_test.go: keys set, dropped, and both.

package procenv

import (
	"slices"
	"testing"
)

func TestWith(t *testing.T) {
	got := With([]string{"A=1", "B=2", "C=3"}, map[string]string{"B": "20", "D": "4", "C": "30"}, "A", "C")
	slices.Sort(got)
	if want := []string{"B=20", "C=30", "D=4"}; !slices.Equal(got, want) {
		t.Fatalf("With = %q, want %q", got, want)
	}
}

func TestWithSetsDropsAndKeeps(t *testing.T) {
	got := With([]string{"HOME=/root", "DISPLAY=:0", "WAYLAND_DISPLAY=wayland-0", "XDG_CACHE_HOME=/old"},
		map[string]string{"XDG_CACHE_HOME": "/new", "DISPLAY": ":7"}, "WAYLAND_DISPLAY", "DISPLAY")
	slices.Sort(got)
	want := []string{"DISPLAY=:7", "HOME=/root", "XDG_CACHE_HOME=/new"} // set wins over drop
	if !slices.Equal(got, want) {
		t.Errorf("With = %q, want %q", got, want)
	}
}
