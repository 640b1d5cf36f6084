//go:build windows

package engine

import (
	"os"
	"syscall"
)

// groupAttr starts the child in a new process group. Windows has no signal to stop a whole group:
// the child itself is killed, and programs it started may outlive it (a job object would fix that).
func groupAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP}
}

// terminateGroup stops the child; Windows has no SIGTERM to send.
func terminateGroup(p *os.Process) { _ = p.Kill() }

// killGroup kills the child.
func killGroup(p *os.Process) { _ = p.Kill() }
