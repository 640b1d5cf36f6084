//go:build !linux

// trayhost_other.go: Windows and macOS always have a tray.

package ui

// trayHostPresent: Windows and macOS always have a place for tray icons.
func trayHostPresent() bool { return true }

// trayBusReachable: the tray needs no bus there.
func trayBusReachable() bool { return true }
