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

	"studioworker/engine"
	"studioworker/protocol"
)

// ErrNoWorker: nothing serves the control socket.
var ErrNoWorker = errors.New("no Studio Worker is running for this configuration")

// Client talks to a running worker's control socket. It implements Controller and Source; its
// Subscribe follows the worker's event stream until Close.
type Client struct {
	http  *http.Client
	base  string
	token string
	log   *slog.Logger

	mu     sync.Mutex
	obs    *Observers
	cancel context.CancelFunc
	done   chan struct{}
}

func newClient(dial func(ctx context.Context) (net.Conn, error), base, token string) *Client {
	tr := &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		MaxIdleConnsPerHost: 4,
	}
	return &Client{http: &http.Client{Transport: tr}, base: base, token: token, log: slog.New(slog.DiscardHandler)}
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("X-Control-Token", c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoWorker, err)
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
	return json.NewDecoder(resp.Body).Decode(out)
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
func (c *Client) Reconnect(ctx context.Context) error {
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
func (c *Client) TestBackend(ctx context.Context, kind protocol.Kind, b engine.BackendConfig) ([]string, error) {
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
