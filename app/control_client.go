// control_client.go: the caller's end of the control channel, the Controller over HTTP that the
// CLI and an attached window use. It knows nothing of how the worker serves it, nor of the event
// stream (control_follow.go) beyond sharing the connection.
package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"studioworker/protocol"
)

// ErrNoWorker: nothing serves the control socket.
var ErrNoWorker = errors.New("no Studio Worker is running for this configuration")

// controlBase is the URL every request names; the transport dials the worker's current address
// whatever the host says.
const controlBase = "http://worker"

// Client talks to a running worker's control socket. It implements Controller and Source; its
// Subscribe follows the worker's event stream until Close, attaching again by itself when the
// worker restarts (control_follow.go).
type Client struct {
	http   *http.Client
	locate func() (controlAddr, error) // where the worker is now: read again at each re-attach
	log    *slog.Logger
	// retryMin and retryMax bound the wait between re-attach attempts (tests shorten them).
	retryMin, retryMax time.Duration

	mu       sync.Mutex
	addr     controlAddr // where the worker was last found
	obs      *Observers
	cancel   context.CancelFunc
	done     chan struct{}
	detached bool          // the event stream ended and follow is attaching again
	poke     chan struct{} // Reconnect while detached: try again now (capacity 1)
}

// DialControl connects to the worker serving this config folder, or returns ErrNoWorker.
func DialControl(ctx context.Context, configPath string) (*Client, error) {
	return dialControl(ctx, func() (controlAddr, error) { return locateControl(configPath) })
}

// dialControl checks that a worker answers where locate says, and returns a client for it.
func dialControl(ctx context.Context, locate func() (controlAddr, error)) (*Client, error) {
	addr, err := locate()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoWorker, err)
	}
	conn, err := addr.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", ErrNoWorker, addr.address)
	}
	conn.Close()
	c := &Client{
		locate: locate, addr: addr, log: slog.New(slog.DiscardHandler),
		retryMin: reattachMin, retryMax: reattachMax, poke: make(chan struct{}, 1),
	}
	tr := &http.Transport{
		// Every connection goes to where the worker is now, so after a re-attach the Controller
		// calls reach the restarted worker too.
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return c.current().dial(ctx) },
		MaxIdleConnsPerHost: 4,
	}
	c.http = &http.Client{Transport: tr}
	return c, nil
}

// current is where the worker was last found.
func (c *Client) current() controlAddr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, controlBase+path, body)
	if err != nil {
		return nil, fmt.Errorf("control request: %w", err)
	}
	if token := c.current().token; token != "" {
		req.Header.Set("X-Control-Token", token)
	}
	return req, nil
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("control request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoWorker, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var ce controlError
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ce)
		switch ce.Code {
		case "invalid":
			return &ValidationError{Fields: ce.Fields}
		case "no_such_offer":
			return fmt.Errorf("%w (%s)", ErrNoSuchOffer, ce.Error)
		case "no_such_job":
			return fmt.Errorf("%w (%s)", ErrNoSuchJob, ce.Error)
		}
		if ce.Error == "" {
			ce.Error = resp.Status
		}
		return fmt.Errorf("worker: %s", ce.Error)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("worker's answer to %s: %w", path, err)
	}
	return nil
}

// State returns the worker's current state.
func (c *Client) State(ctx context.Context) (State, error) {
	var s State
	err := c.do(ctx, http.MethodGet, "/v1/state", nil, &s)
	return s, err
}

func (c *Client) Pause(ctx context.Context) error  { return c.do(ctx, "POST", "/v1/pause", nil, nil) }
func (c *Client) Resume(ctx context.Context) error { return c.do(ctx, "POST", "/v1/resume", nil, nil) }
func (c *Client) Drain(ctx context.Context) error  { return c.do(ctx, "POST", "/v1/drain", nil, nil) }

// Reconnect asks the worker to reconnect to its hub; while the worker itself is out of reach it
// makes a following client try to attach again at once instead, which is what the window's
// "Reconnect now" then means.
func (c *Client) Reconnect(ctx context.Context) error {
	c.mu.Lock()
	detached := c.detached
	c.mu.Unlock()
	if detached {
		select {
		case c.poke <- struct{}{}:
		default: // a try is already asked for
		}
		return nil
	}
	return c.do(ctx, "POST", "/v1/reconnect", nil, nil)
}
func (c *Client) SetAutoAccept(ctx context.Context, on bool) error {
	return c.do(ctx, "POST", "/v1/auto-accept", map[string]bool{"on": on}, nil)
}
func (c *Client) AcceptOffer(ctx context.Context, id string) error {
	return c.do(ctx, "POST", "/v1/offers/"+id+"/accept", nil, nil)
}
func (c *Client) DeclineOffer(ctx context.Context, id string) error {
	return c.do(ctx, "POST", "/v1/offers/"+id+"/decline", nil, nil)
}
func (c *Client) CancelJob(ctx context.Context, id string) error {
	return c.do(ctx, "POST", "/v1/jobs/"+id+"/cancel", nil, nil)
}
func (c *Client) Register(ctx context.Context, req RegisterRequest) error {
	return c.do(ctx, "POST", "/v1/register", req, nil)
}
func (c *Client) Settings(ctx context.Context) (Settings, error) {
	var s Settings
	err := c.do(ctx, "GET", "/v1/settings", nil, &s)
	return s, err
}
func (c *Client) SaveSettings(ctx context.Context, s Settings) error {
	return c.do(ctx, "PUT", "/v1/settings", s, nil)
}
func (c *Client) TestBackend(ctx context.Context, kind protocol.Kind, b BackendForm) ([]string, error) {
	var out struct {
		Models []string `json:"models"`
		Error  string   `json:"error"`
	}
	if err := c.do(ctx, "POST", "/v1/test-backend", testBackendRequest{Kind: kind, Backend: b}, &out); err != nil {
		return nil, err
	}
	if out.Error != "" {
		return nil, errors.New(out.Error)
	}
	return out.Models, nil
}
func (c *Client) SetService(ctx context.Context, install bool) (string, error) {
	var out struct {
		Status string `json:"status"`
	}
	err := c.do(ctx, "POST", "/v1/service", map[string]bool{"install": install}, &out)
	return out.Status, err
}
