// control_follow.go: mirrors a running worker's event stream into a local Observers, so that a
// window attached over the control channel subscribes as it would in-process. It knows nothing of
// the window, nor of how the stream is framed (control_sse.go).
package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Follow starts mirroring the worker's state into a local Observers (for Subscribe) and returns
// once the first state has arrived. It stops on Close or when ctx ends.
func (c *Client) Follow(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/events", nil)
	if err != nil {
		cancel()
		return err
	}
	if c.token != "" {
		req.Header.Set("X-Control-Token", c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		cancel()
		return fmt.Errorf("%w: %v", ErrNoWorker, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return fmt.Errorf("worker event stream: %s", resp.Status)
	}
	events := newSSEReader(resp.Body)
	first, err := events.next()
	if err != nil || first.event != "state" {
		resp.Body.Close()
		cancel()
		return fmt.Errorf("worker event stream: no initial state: %v", err)
	}
	var st State
	if err := json.Unmarshal(first.data, &st); err != nil {
		resp.Body.Close()
		cancel()
		return fmt.Errorf("worker event stream: %w", err)
	}
	obs := NewObservers(st)
	done := make(chan struct{})
	c.mu.Lock()
	c.obs, c.cancel, c.done = obs, cancel, done
	c.mu.Unlock()
	go func() {
		defer close(done)
		defer resp.Body.Close()
		for {
			ev, err := events.next()
			if err != nil {
				obs.Update(func(s *State) {
					s.Conn = ConnInfo{State: "offline", LastError: "lost the connection to the worker: " + err.Error()}
				})
				return
			}
			switch ev.event {
			case "state":
				var s State
				if json.Unmarshal(ev.data, &s) == nil {
					obs.Update(func(cur *State) { seq := cur.Seq; *cur = s; cur.Seq = seq })
				}
			case "notice":
				var n Notice
				if json.Unmarshal(ev.data, &n) == nil {
					obs.Notify(n)
				}
			}
		}
	}()
	return nil
}

// Subscribe implements Source; Follow must have been called.
func (c *Client) Subscribe() (State, *Subscription) {
	c.mu.Lock()
	obs := c.obs
	c.mu.Unlock()
	if obs == nil {
		obs = NewObservers(State{Conn: ConnInfo{State: "offline", LastError: "not following the worker"}})
	}
	return obs.Subscribe()
}

// Close stops following and releases connections.
func (c *Client) Close() {
	c.mu.Lock()
	cancel, done := c.cancel, c.done
	c.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	c.http.CloseIdleConnections()
}
