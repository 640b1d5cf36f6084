//go:build !windows

// Elsewhere a program started from a terminal always has its standard output: nothing to do.
package app

// AttachConsole does nothing outside Windows.
func AttachConsole() {}
