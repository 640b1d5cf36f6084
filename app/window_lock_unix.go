//go:build !windows

// window_lock_unix.go: the window endpoint on Linux and macOS, a Unix socket beside the control
// socket that only this user can open. It knows nothing of what is said over it.

package app

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// windowSocketPath is the window socket of the config file at configPath.
func windowSocketPath(configPath string) string {
	return filepath.Join(filepath.Dir(configPath), "window.sock")
}

// listenWindow takes the window socket; errWindowTaken when its file exists (a live window, or
// one that crashed).
func listenWindow(configPath string) (net.Listener, string, func(), error) {
	path := windowSocketPath(configPath)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, "", nil, err
	}
	ln, err := net.Listen("unix", path)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, "", nil, fmt.Errorf("%w (%s)", errWindowTaken, path)
	}
	if err != nil {
		return nil, "", nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, "", nil, err
	}
	return ln, "", nil, nil // the listener removes the socket file when it closes
}

func locateWindow(configPath string) (controlAddr, error) {
	return controlAddr{network: "unix", address: windowSocketPath(configPath)}, nil
}

// clearWindow removes the socket file a crashed window left.
func clearWindow(configPath string) error {
	if err := os.Remove(windowSocketPath(configPath)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
