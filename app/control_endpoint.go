// control_endpoint.go: where a client finds a worker's control channel — a network address and the
// token it wants — and the endpoint file that carries them where both change with every start of
// the worker (Windows' loopback port). It knows nothing of HTTP, nor of what the channel serves.
package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
)

// controlAddr is one worker's control channel as a client dials it.
type controlAddr struct {
	network string // "unix" or "tcp"
	address string // a socket path or host:port
	token   string // sent as X-Control-Token; "" where the socket's mode is the protection
}

func (a controlAddr) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, a.network, a.address)
}

// controlEndpoint is the endpoint file's content.
type controlEndpoint struct {
	Addr  string `json:"addr"`
	Token string `json:"token"`
}

// readEndpoint reads the endpoint file at path.
func readEndpoint(path string) (controlEndpoint, error) {
	var ep controlEndpoint
	data, err := os.ReadFile(path)
	if err != nil {
		return ep, err
	}
	if err := json.Unmarshal(data, &ep); err != nil {
		return ep, fmt.Errorf("control endpoint %s: %w", path, err)
	}
	return ep, nil
}

// endpointAddr is the loopback address an endpoint file names. It is read again at every dial of
// a re-attach: a restarted worker listens on a new port with a new token.
func endpointAddr(path string) (controlAddr, error) {
	ep, err := readEndpoint(path)
	if err != nil {
		return controlAddr{}, err
	}
	if ep.Addr == "" {
		return controlAddr{}, fmt.Errorf("control endpoint %s: no address in the file", path)
	}
	return controlAddr{network: "tcp", address: ep.Addr, token: ep.Token}, nil
}
