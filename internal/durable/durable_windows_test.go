// What only Windows refuses: moving or replacing a file that another handle holds open. These run
// in the Windows lane (the test binary under Wine) and on real Windows.
package durable

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A backend that never closes its output: the rename cannot happen, so the content is copied.
func TestRenameSourceHeldOpenCopies(t *testing.T) {
	dir := tempDir(t)
	src, dst := filepath.Join(dir, "result.part"), filepath.Join(dir, "result.png")
	if err := os.WriteFile(src, []byte("held"), 0o600); err != nil {
		t.Fatal(err)
	}
	held, err := os.Open(src) // Go opens without FILE_SHARE_DELETE: a move is refused
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := Rename(src, dst); err != nil {
		t.Fatalf("Rename with the source held open: %v", err)
	}
	if got, _ := os.ReadFile(dst); string(got) != "held" {
		t.Fatalf("dst = %q", got)
	}
}

// A reader that lets go after a moment: the rename waits for it instead of failing.
func TestRenameOverFileHeldBriefly(t *testing.T) {
	dir := tempDir(t)
	dst := filepath.Join(dir, "config.json")
	if err := os.WriteFile(dst, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	held, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	released := time.AfterFunc(300*time.Millisecond, func() { held.Close() })
	defer released.Stop()
	if err := WriteFile(dst, []byte("new"), 0o600); err != nil {
		t.Fatalf("WriteFile over a briefly held file: %v", err)
	}
	if got, _ := os.ReadFile(dst); string(got) != "new" {
		t.Fatalf("content = %q", got)
	}
}

// Folder fsync is what Windows refuses (the bug that completed no job on Windows); SyncDir must
// not try it, and this checks that the refusal is still there to be avoided.
func TestFolderSyncIsRefused(t *testing.T) {
	dir := tempDir(t)
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	syncErr := d.Sync()
	d.Close()
	if syncErr == nil {
		t.Log("this Windows allowed a folder sync; durable does not depend on it either way")
	}
	if err := SyncDir(dir); err != nil {
		t.Fatalf("SyncDir: %v", err)
	}
}

// A spool under a deep profile folder can pass MAX_PATH (260); MoveFileEx then needs the \\?\
// form, which the os package adds for its own calls but not for ours. Wine does not enforce
// MAX_PATH, so there this only shows that the \\?\ form works; real Windows is where it bites.
func TestRenameLongPath(t *testing.T) {
	dir := tempDir(t)
	deep := dir
	for len(deep) < 300 {
		deep = filepath.Join(deep, "a folder with a long name for Jos\u00e9")
	}
	if err := os.MkdirAll(deep, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(deep, "result.png")
	if err := WriteFile(path, []byte("deep"), 0o600); err != nil {
		t.Fatalf("WriteFile at %d characters: %v", len(path), err)
	}
	if err := Rename(path, path+".moved"); err != nil {
		t.Fatalf("Rename at %d characters: %v", len(path), err)
	}
	if got, err := os.ReadFile(path + ".moved"); err != nil || string(got) != "deep" {
		t.Fatalf("after the move: %q, %v", got, err)
	}
}
