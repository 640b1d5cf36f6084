//go:build windows

// The Windows half of durable. A folder handle cannot be flushed (FlushFileBuffers on it is
// ERROR_ACCESS_DENIED), so the rename is made durable by MoveFileEx with MOVEFILE_WRITE_THROUGH,
// which returns only once the move is on disk; the file's content was flushed before. A file
// another process holds open cannot be moved or deleted: that error is recognised so the caller
// can wait for it or copy instead.
package durable

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/windows"
)

func rename(oldpath, newpath string) error {
	from, err := windows.UTF16PtrFromString(fixLongPath(oldpath))
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	to, err := windows.UTF16PtrFromString(fixLongPath(newpath))
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	if err := windows.MoveFileEx(from, to, windows.MOVEFILE_REPLACE_EXISTING|windows.MOVEFILE_WRITE_THROUGH); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// SyncDir does nothing on Windows: a folder cannot be flushed there, and every rename this
// package makes is write-through already.
func SyncDir(dir string) error {
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("sync folder: %w", err)
	}
	return nil
}

// heldOpen reports whether err is Windows refusing a file that another process has open.
func heldOpen(err error) bool {
	return errors.Is(err, windows.ERROR_SHARING_VIOLATION) || errors.Is(err, windows.ERROR_LOCK_VIOLATION) ||
		errors.Is(err, windows.ERROR_ACCESS_DENIED)
}

// fixLongPath gives an absolute path over MAX_PATH the \\?\ prefix that lifts the limit, as the
// os package does for its own calls.
func fixLongPath(p string) string {
	if len(p) < 248 || len(p) >= 2 && p[:2] == `\\` {
		return p
	}
	if len(p) < 3 || p[1] != ':' || (p[2] != '\\' && p[2] != '/') {
		return p
	}
	b := []byte(p)
	for i := range b {
		if b[i] == '/' {
			b[i] = '\\'
		}
	}
	return `\\?\` + string(b)
}
