// rlimit_windows.go: Windows has no open-file limit to raise (handles are bounded by memory),
// so the hostile figure asks for nothing there.

package main

func raiseOpenFiles(uint64) error { return nil }
