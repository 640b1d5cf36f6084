// Package durable makes a file change survive a crash or a power cut on every OS: a file written
// whole under a temporary name, flushed, then renamed into place, with the rename itself made
// durable the way the OS allows (a folder fsync on Unix, a write-through MoveFileEx on Windows,
// where a folder cannot be synced). Callers never branch on the OS; the differences live in
// durable_unix.go and durable_windows.go. It knows nothing of what the files hold.
package durable

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// TempSuffix ends the name of every temporary file WriteFile makes, so that a folder's owner can
// remove what a crash left behind.
const TempSuffix = ".tmp"

// heldOpenWait bounds how long Rename retries a file that another process holds open (Windows
// refuses to move it meanwhile; antivirus scanners and indexers hold new files for a moment).
const heldOpenWait = 3 * time.Second

// WriteFile writes data to path so that after a crash path holds either its old content or all
// of data, never a part: a temporary file beside it, fsynced, then Rename.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	err := replaceWith(path, perm, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	}, Rename)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// replaceWith fills a temporary file beside path, flushes it and moves it over path with move.
func replaceWith(path string, perm os.FileMode, fill func(*os.File) error, move func(string, string) error) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*"+TempSuffix)
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		err = fill(f)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = move(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// Rename moves oldpath to newpath, replacing newpath, and returns once the move is on disk. A
// file that another process holds open is retried for a few seconds; if it stays held, its
// content is copied to newpath instead (durably) and oldpath is removed when it can be, so a
// result is never lost or stuck behind a backend that did not close its output.
func Rename(oldpath, newpath string) error {
	err := retryHeld(func() error { return rename(oldpath, newpath) })
	if err == nil || !heldOpen(err) {
		return err
	}
	if cerr := copyDurably(oldpath, newpath); cerr != nil {
		return fmt.Errorf("%w (and copying it failed: %v)", err, cerr)
	}
	_ = os.Remove(oldpath) // still held: its folder's owner removes it later
	return nil
}

// Remove deletes path, retrying for a few seconds while another process holds it open. A path
// that does not exist is not an error.
func Remove(path string) error {
	err := retryHeld(func() error { return os.Remove(path) })
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// SyncFile flushes path's content to disk; it opens the file for writing, as Windows requires.
func SyncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func retryHeld(op func() error) error {
	deadline := time.Now().Add(heldOpenWait)
	delay := 5 * time.Millisecond
	for {
		err := op()
		if err == nil || !heldOpen(err) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(delay) // no event tells us when another process closes a file
		delay = min(2*delay, 250*time.Millisecond)
	}
}

// copyDurably copies src to dst through a temporary file and a durable rename.
func copyDurably(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	// rename, not Rename: the held-open fallback must not recurse into another copy.
	return replaceWith(dst, st.Mode().Perm(), func(f *os.File) error {
		_, err := io.Copy(f, in)
		return err
	}, rename)
}

// RemoveAll deletes path and everything under it. Where os.RemoveAll is refused — on Windows it
// deletes with POSIX semantics (FileDispositionInformationEx), which Wine 8 and some network
// file systems answer with "Invalid function" — it removes the tree one entry at a time, so a
// job's folder never piles up.
func RemoveAll(path string) error {
	err := os.RemoveAll(path)
	if err == nil {
		return nil
	}
	if werr := removeTree(path); werr != nil {
		return fmt.Errorf("%w (one entry at a time: %v)", err, werr)
	}
	return nil
}

func removeTree(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := removeTree(filepath.Join(path, e.Name())); err != nil {
				return err
			}
		}
	}
	return Remove(path)
}
