//go:build !windows

// The Unix half of durable: rename(2) is atomic and ignores open handles, and the folder holding
// the new name is fsynced so the rename itself survives a power cut.
package durable

import (
	"errors"
	"os"
	"path/filepath"
)

func rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	if err := SyncDir(filepath.Dir(newpath)); err != nil {
		return err
	}
	if od := filepath.Dir(oldpath); od != filepath.Dir(newpath) {
		return SyncDir(od)
	}
	return nil
}

// SyncDir makes the creations, renames and removals in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// heldOpen is never true on Unix, where an open file can be renamed and removed.
func heldOpen(error) bool { return false }
