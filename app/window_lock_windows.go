//go:build windows

// window_lock_windows.go: the window endpoint on Windows, a loopback TCP port whose address and
// token are in window.json beside control.json, a file only this user can open. It knows nothing
// of what is said over it.

package app

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
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
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", nil, err
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		ln.Close()
		return nil, "", nil, err
	}
	data, err := json.Marshal(controlEndpoint{Addr: ln.Addr().String(), Token: hex.EncodeToString(b)})
	if err != nil {
		ln.Close()
		return nil, "", nil, err
	}
	if err := writePrivate(path, data); err != nil {
		ln.Close()
		return nil, "", nil, err
	}
	release := func() {
		if now, err := os.ReadFile(path); err == nil && bytes.Equal(now, data) {
			_ = os.Remove(path)
		}
	}
	return ln, hex.EncodeToString(b), release, nil
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
