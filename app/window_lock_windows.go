//go:build windows

// window_lock_windows.go: the window endpoint on Windows, a loopback TCP port whose address and
// token are in window.json beside control.json, a file only this user can open. It knows nothing
// of what is said over it.

package app

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// windowEndpointPath is the window endpoint file of the config file at configPath.
func windowEndpointPath(configPath string) string {
	return filepath.Join(filepath.Dir(configPath), "window.json")
}

// listenWindow takes the window endpoint; errWindowTaken when its file exists (a live window, or
// one that crashed). The returned release removes the file if it is still this window's.
func listenWindow(configPath string) (net.Listener, string, func(), error) {
	path := windowEndpointPath(configPath)
	if _, err := os.Stat(path); err == nil {
		return nil, "", nil, fmt.Errorf("%w (%s)", errWindowTaken, path)
	}
	ln, ep, data, err := listenLoopbackEndpoint(path, 16)
	if err != nil {
		return nil, "", nil, err
	}
	release := func() {
		if now, err := os.ReadFile(path); err == nil && bytes.Equal(now, data) {
			_ = os.Remove(path)
		}
	}
	return ln, ep.Token, release, nil
}

func locateWindow(configPath string) (controlAddr, error) {
	return endpointAddr(windowEndpointPath(configPath))
}

// clearWindow removes the endpoint file a crashed window left.
func clearWindow(configPath string) error {
	if err := os.Remove(windowEndpointPath(configPath)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
