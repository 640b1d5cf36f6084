package diskspace

import (
	"errors"
	"os"
	"studioworker/internal/wintest"
	"testing"
)

func TestFreeOfAFolderThatExists(t *testing.T) {
	n, err := Free(wintest.TempDir(t))
	if errors.Is(err, ErrUnknown) {
		t.Skipf("no free-space call on this OS: %v", err)
	}
	if err != nil || n == 0 {
		t.Fatalf("Free = %d, %v; want some bytes", n, err)
	}
}

func TestFreeOfAMissingFolderSaysSo(t *testing.T) {
	if _, err := Free(wintest.TempDir(t) + string(os.PathSeparator) + "missing"); err == nil {
		t.Fatal("no error for a folder that does not exist")
	}
}
