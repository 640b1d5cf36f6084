//go:build !windows

// control_unix.go: the control endpoint on Linux and macOS, a Unix socket in the config folder
// that only this user can open. It knows nothing of what is served over it.
package app

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// ControlSocketPath is the control socket of the config file at configPath.
func ControlSocketPath(configPath string) string {
	return filepath.Join(filepath.Dir(configPath), "control.sock")
}

// ListenControl takes the control socket for this config folder: mode 0600, so only this user
// can steer the worker. A live socket means another worker runs (ErrAlreadyRunning); a stale one
// left by a crash is removed. It returns the listener and the token clients must send ("" here).
func ListenControl(configPath string) (net.Listener, string, error) {
	path := ControlSocketPath(configPath)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, "", fmt.Errorf("control socket: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, "", fmt.Errorf("%w (%s)", ErrAlreadyRunning, path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("control socket: remove a stale socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, "", fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, "", fmt.Errorf("control socket: %w", err)
	}
	return ln, "", nil
}

// locateControl is the socket of this config folder: the same path at every start of a worker.
func locateControl(configPath string) (controlAddr, error) {
	return controlAddr{network: "unix", address: ControlSocketPath(configPath)}, nil
}
