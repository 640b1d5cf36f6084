//go:build !(linux && cgo) && !darwin && !windows

package gpu

import (
	"context"
	"strings"
	"testing"
)

func TestOpenWithoutNVMLExplainsItself(t *testing.T) {
	snap, err := Open(Options{}).Sample(context.Background())
	if err != nil || snap.Source != SourceNone || !strings.Contains(snap.Problem, "VRAM checks are off") {
		t.Fatalf("Open() sample = %+v, %v", snap, err)
	}
}
