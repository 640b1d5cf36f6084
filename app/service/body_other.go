//go:build !windows

// body_other.go: outside Windows no service manager needs answering — systemd and launchd just
// start `run` — so Serve only says so.

package service

import "errors"

// Serve is Windows-only; elsewhere it returns an error and runs nothing.
func Serve(Body) (int, error) {
	return 0, errors.New("only the Windows service manager runs studio-worker as a service body")
}
