//go:build !unix && !windows

package engine

import (
	"os"
	"syscall"
)

func groupAttr() *syscall.SysProcAttr { return nil }

func terminateGroup(p *os.Process) { _ = p.Kill() }

func killGroup(p *os.Process) { _ = p.Kill() }
