//go:build !windows

package app

import (
	"context"
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

// DialControl connects to the worker serving this config folder, or returns ErrNoWorker.
func DialControl(ctx context.Context, configPath string) (*Client, error) {
	path := ControlSocketPath(configPath)
	var d net.Dialer
	dial := func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "unix", path) }
	c, err := dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", ErrNoWorker, path)
	}
	c.Close()
	return newClient(dial, "http://worker", ""), nil
}
