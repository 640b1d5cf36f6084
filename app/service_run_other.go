//go:build !windows

// Outside Windows no service manager needs answering: systemd and launchd just start `run`.
package app

import "errors"

func serveService(string, serviceBody) (int, error) {
	return ExitError, errors.New("only the Windows service manager runs studio-worker as a service body")
}
