//go:build unix

package engine

import (
	"os"
	"syscall"
)

// groupAttr starts the child as the leader of a process group of its own, so that everything it
// starts can be stopped together.
func groupAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// terminateGroup asks the child's whole process group to stop.
func terminateGroup(p *os.Process) { _ = syscall.Kill(-p.Pid, syscall.SIGTERM) }

// killGroup kills the child's whole process group.
func killGroup(p *os.Process) { _ = syscall.Kill(-p.Pid, syscall.SIGKILL) }
