//go:build windows

// Giving the command line a console on Windows. The exe is built for the GUI subsystem, so a
// double-click opens no console window; the price is that Windows hands it no standard output
// when it is started from cmd.exe or PowerShell, and `studio-worker status` would print nothing
// there. AttachConsole joins the console of the command that started it instead (which also
// makes Ctrl+C and Ctrl+Break reach `run` as os.Interrupt, so it drains).
package app

import (
	"os"

	"golang.org/x/sys/windows"
)

// attachParentProcess is ATTACH_PARENT_PROCESS, (DWORD)-1.
const attachParentProcess = ^uintptr(0)

// AttachConsole points os.Stdin, os.Stdout and os.Stderr at the parent's console where they have
// no valid handle yet. Handles that are already valid (a pipe, a file, or what Wine passes on)
// are kept, and without a parent console (a double-click) nothing changes.
func AttachConsole() {
	if valid(os.Stdout) && valid(os.Stderr) {
		return
	}
	proc := windows.NewLazySystemDLL("kernel32.dll").NewProc("AttachConsole")
	if proc.Find() != nil {
		return
	}
	if r, _, _ := proc.Call(attachParentProcess); r == 0 {
		return // no console to join
	}
	reopen := func(f **os.File, name string, mode int, std uint32) {
		if valid(*f) {
			return
		}
		c, err := os.OpenFile(name, mode, 0)
		if err != nil {
			return
		}
		*f = c
		_ = windows.SetStdHandle(std, windows.Handle(c.Fd()))
	}
	reopen(&os.Stdout, "CONOUT$", os.O_WRONLY, windows.STD_OUTPUT_HANDLE)
	reopen(&os.Stderr, "CONOUT$", os.O_WRONLY, windows.STD_ERROR_HANDLE)
	reopen(&os.Stdin, "CONIN$", os.O_RDONLY, windows.STD_INPUT_HANDLE)
}

func valid(f *os.File) bool {
	if f == nil {
		return false
	}
	h := windows.Handle(f.Fd())
	if h == windows.InvalidHandle || h == 0 {
		return false
	}
	t, err := windows.GetFileType(h)
	return err == nil && t != windows.FILE_TYPE_UNKNOWN
}
