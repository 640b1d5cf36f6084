// Package wintest holds what the tests that also run under Wine (the Windows lane) need: a
// temporary folder that Wine 8 can remove, and whether a test runs under Wine rather than
// Windows. Only _test.go files import it; it knows nothing of what they test.
package wintest

import (
	"os"
	"testing"

	"studioworker/internal/durable"
)

// TempDir is t.TempDir with a removal Wine 8 accepts: its os.RemoveAll fails ("unlinkat …:
// Invalid function."), which would fail every test at cleanup.
func TempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "studio-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := durable.RemoveAll(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return dir
}
