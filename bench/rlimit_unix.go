//go:build !windows

// rlimit_unix.go: the open-file limit the hostile figure needs, on the systems that have one.

package main

import (
	"fmt"
	"syscall"
)

// raiseOpenFiles makes sure this process may hold need files: Go raises the soft limit to the
// hard one at start, so this only says clearly when the hard limit is too low.
func raiseOpenFiles(need uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("read the open-file limit: %w", err)
	}
	if lim.Cur >= need {
		return nil
	}
	if lim.Max < need {
		return fmt.Errorf("the figure needs an open-file limit of %d, the hard limit is %d (raise it: ulimit -Hn)", need, lim.Max)
	}
	lim.Cur = need
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise the open-file limit to %d: %w", need, err)
	}
	return nil
}
