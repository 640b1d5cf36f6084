// firstrun_control.go: the first-run page's calls (detect the backends, start and stop the demo)
// over the control socket, both ends. It must not know what detection finds.

package app

import (
	"context"
	"net/http"
)

// The first-run controls on the control socket: GET /v1/detect, POST /v1/demo/start and
// POST /v1/demo/stop (routes in NewControlServer).

// detectResponse is the body of GET /v1/detect; found is never null.
type detectResponse struct {
	Found []Detected `json:"found"`
}

func (cs *ControlServer) detect(w http.ResponseWriter, r *http.Request) {
	found, err := cs.ctl.DetectBackends(r.Context())
	if err != nil {
		cs.fail(w, err)
		return
	}
	if found == nil {
		found = []Detected{}
	}
	writeJSON(w, http.StatusOK, detectResponse{Found: found})
}

// DetectBackends asks the worker what backends it finds on its machine.
func (c *Client) DetectBackends(ctx context.Context) ([]Detected, error) {
	var out detectResponse
	if err := c.do(ctx, http.MethodGet, "/v1/detect", nil, &out); err != nil {
		return nil, err
	}
	return out.Found, nil
}

// StartDemo starts the worker's demo.
func (c *Client) StartDemo(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/demo/start", nil, nil)
}

// StopDemo ends the worker's demo.
func (c *Client) StopDemo(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/demo/stop", nil, nil)
}
