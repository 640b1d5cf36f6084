//go:build !linux

package ui

// trayHostPresent: Windows and macOS always have a place for tray icons.
func trayHostPresent() bool { return true }
