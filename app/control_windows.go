//go:build windows

package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// On Windows the control endpoint is a loopback TCP port; the port and a random token are written
// to a file in the config folder that only this user can read, and every request carries the token.

type controlEndpoint struct {
	Addr  string `json:"addr"`
	Token string `json:"token"`
}

// ControlSocketPath is the endpoint file of the config file at configPath.
func ControlSocketPath(configPath string) string {
	return filepath.Join(filepath.Dir(configPath), "control.json")
}

// ListenControl takes the control endpoint for this config folder.
func ListenControl(configPath string) (net.Listener, string, error) {
	path := ControlSocketPath(configPath)
	if ep, err := readEndpoint(path); err == nil {
		if c, err := net.DialTimeout("tcp", ep.Addr, time.Second); err == nil {
			c.Close()
			return nil, "", fmt.Errorf("%w (%s)", ErrAlreadyRunning, ep.Addr)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("control endpoint: %w", err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		ln.Close()
		return nil, "", err
	}
	ep := controlEndpoint{Addr: ln.Addr().String(), Token: hex.EncodeToString(b)}
	data, _ := json.Marshal(ep)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		ln.Close()
		return nil, "", err
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		ln.Close()
		return nil, "", fmt.Errorf("control endpoint: %w", err)
	}
	return ln, ep.Token, nil
}

func readEndpoint(path string) (controlEndpoint, error) {
	var ep controlEndpoint
	data, err := os.ReadFile(path)
	if err != nil {
		return ep, err
	}
	err = json.Unmarshal(data, &ep)
	return ep, err
}

// DialControl connects to the worker serving this config folder, or returns ErrNoWorker.
func DialControl(ctx context.Context, configPath string) (*Client, error) {
	ep, err := readEndpoint(ControlSocketPath(configPath))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoWorker, err)
	}
	var d net.Dialer
	dial := func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", ep.Addr) }
	c, err := dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", ErrNoWorker, ep.Addr)
	}
	c.Close()
	return newClient(dial, "http://worker", ep.Token), nil
}
