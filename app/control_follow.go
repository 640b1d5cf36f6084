// control_follow.go: mirrors a running worker's event stream into a local Observers, so that a
// window attached over the control channel subscribes as it would in-process, and attaches again
// by itself when that worker restarts. It knows nothing of the window, nor of how the stream is
// framed (control_sse.go) or where the worker listens (control_endpoint.go).
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"studioworker/protocol"
)

const (
	// The wait between re-attach attempts doubles from reattachMin up to reattachMax. The worker is
	// on this machine: a restart takes a second or two, and each try is one read of a small file
	// and one local dial, cheap enough to keep trying while the window stays open.
	reattachMin = 250 * time.Millisecond
	reattachMax = 5 * time.Second
	// firstStateTimeout bounds the wait for a stream's first state: a worker that takes the
	// connection but never answers is as good as not there.
	firstStateTimeout = 10 * time.Second
	// connReattaching is ConnInfo.State while a following client has lost the worker and dials
	// it again; what the worker last said stays in the rest of the State until it answers.
	connReattaching = "reattaching"
)

// eventStream is one open /v1/events response.
type eventStream struct {
	events *sseReader
	body   io.Closer
	cancel context.CancelFunc
}

func (s *eventStream) close() {
	s.cancel()
	s.body.Close()
}

// Follow starts mirroring the worker's state into a local Observers (for Subscribe) and returns
// once the first state has arrived. It stops on Close or when ctx ends; when the worker goes away
// it keeps the same Observers and attaches again, so subscribers carry on across a restart.
func (c *Client) Follow(ctx context.Context) error {
	c.mu.Lock()
	following := c.obs != nil
	c.mu.Unlock()
	if following {
		return errors.New("control client: already following the worker")
	}
	ctx, cancel := context.WithCancel(ctx)
	st, stream, err := c.openStream(ctx)
	if err != nil {
		cancel()
		return err
	}
	obs := NewObservers(st)
	done := make(chan struct{})
	c.mu.Lock()
	c.obs, c.cancel, c.done = obs, cancel, done
	c.mu.Unlock()
	go func() {
		defer close(done)
		c.follow(ctx, obs, stream)
	}()
	return nil
}

// openStream opens the event stream where the worker is now and reads its first state.
func (c *Client) openStream(ctx context.Context) (State, *eventStream, error) {
	sctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(firstStateTimeout, cancel)
	fail := func(err error) (State, *eventStream, error) {
		timer.Stop()
		cancel()
		return State{}, nil, err
	}
	req, err := c.newRequest(sctx, http.MethodGet, "/v1/events", nil)
	if err != nil {
		return fail(err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrNoWorker, err))
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return fail(fmt.Errorf("worker event stream: %s", resp.Status))
	}
	stream := &eventStream{events: newSSEReader(resp.Body), body: resp.Body, cancel: cancel}
	var st State
	first, err := stream.events.next()
	if err == nil && first.event != eventState {
		err = fmt.Errorf("the first event is %q", first.event)
	}
	if err == nil {
		err = json.Unmarshal(first.data, &st)
	}
	if !timer.Stop() && err == nil {
		err = fmt.Errorf("none within %s", firstStateTimeout)
	}
	if err != nil {
		resp.Body.Close()
		return fail(fmt.Errorf("worker event stream: no initial state: %w", err))
	}
	return st, stream, nil
}

// follow is the goroutine Follow starts and Close stops: it mirrors the stream and, when the
// stream ends, attaches again, until ctx ends.
func (c *Client) follow(ctx context.Context, obs *Observers, stream *eventStream) {
	for {
		err := c.mirror(obs, stream)
		stream.close()
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("lost the connection to the worker; attaching again", "source", "control", "err", err)
		if stream = c.reattach(ctx, obs, err); stream == nil {
			return
		}
	}
}

// mirror copies one stream's events into obs until the stream ends, and says why it ended.
func (c *Client) mirror(obs *Observers, stream *eventStream) error {
	for {
		ev, err := stream.events.next()
		if err != nil {
			return err
		}
		switch ev.event {
		case eventState:
			var s State
			if err := json.Unmarshal(ev.data, &s); err != nil {
				c.log.Warn("the worker sent a state this client cannot read", "source", "control", "err", err)
				continue
			}
			obs.Update(replaceState(s))
		case eventNotice:
			var n Notice
			if err := json.Unmarshal(ev.data, &n); err != nil {
				c.log.Warn("the worker sent a notice this client cannot read", "source", "control", "err", err)
				continue
			}
			obs.Notify(n)
		case eventLost:
			// The worker dropped n notices for this stream because it read too slowly. States are
			// never among them (each is whole, and the newest replaces the ones not yet sent), so
			// the state needs nothing; every local subscriber missed those notices too, and is told
			// through its own Lost count, as if it had been the slow one.
			var n uint64
			if err := json.Unmarshal(ev.data, &n); err != nil {
				c.log.Warn("the worker sent a lost count this client cannot read", "source", "control", "err", err)
				continue
			}
			c.log.Warn("the worker's event stream skipped notices", "source", "control", "lost", n)
			obs.addLost(n)
		}
	}
}

// reattach dials the worker again, where locate says it is now, until a stream with its first
// state comes (returned), or ctx ends (nil). Meanwhile the State says so. The first state of the
// new stream replaces all of the old, which a restarted worker may have changed in any way.
func (c *Client) reattach(ctx context.Context, obs *Observers, cause error) *eventStream {
	c.setDetached(true)
	defer c.setDetached(false)
	since := time.Now()
	lastErr := lostWords(cause)
	obs.Notify(Notice{Kind: NoticeLog, Time: since, Level: protocol.LevelWarn, Source: "window",
		Text: "Lost the connection to the worker (" + lastErr + "); attaching again. What it logs meanwhile is in its log file."})
	for attempt := 1; ; attempt++ {
		wait := reattachDelay(attempt, c.retryMin, c.retryMax)
		obs.Update(func(s *State) {
			s.Conn = ConnInfo{State: connReattaching, Server: s.Conn.Server, Attempt: attempt,
				NextRetry: time.Now().Add(wait), LastError: lastErr, Since: since}
		})
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-c.poke:
			timer.Stop()
		case <-timer.C:
		}
		stream, err := c.attachOnce(ctx, obs)
		if err == nil {
			c.log.Info("attached to the worker again", "source", "control", "attempts", attempt)
			obs.Notify(Notice{Kind: NoticeLog, Time: time.Now(), Level: protocol.LevelInfo, Source: "window",
				Text: "Attached to the worker again."})
			return stream
		}
		if ctx.Err() != nil {
			return nil
		}
		lastErr = err.Error()
	}
}

// attachOnce finds the worker anew (a restarted one listens on a new port with a new token),
// opens its stream and takes its first state as the whole State.
func (c *Client) attachOnce(ctx context.Context, obs *Observers) (*eventStream, error) {
	addr, err := c.locate()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoWorker, err)
	}
	c.mu.Lock()
	c.addr = addr
	c.mu.Unlock()
	// Idle connections lead to the worker that went away.
	c.http.CloseIdleConnections()
	st, stream, err := c.openStream(ctx)
	if err != nil {
		return nil, err
	}
	obs.Update(replaceState(st))
	return stream, nil
}

func (c *Client) setDetached(on bool) {
	c.mu.Lock()
	c.detached = on
	c.mu.Unlock()
}

// reattachDelay is the wait before attempt n (from 1): lo doubled each time, at most hi. No
// jitter: one window dials one worker on its own machine, there is no crowd to spread.
func reattachDelay(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// lostWords says why a stream ended.
func lostWords(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "the worker closed the connection"
	}
	return err.Error()
}

// replaceState swaps in a State from the worker, keeping this Observers' own Seq counting up: a
// restarted worker counts from the start again.
func replaceState(s State) func(*State) {
	return func(cur *State) {
		seq := cur.Seq
		*cur = s
		cur.Seq = seq
	}
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

// Close stops following, waits for the goroutine Follow started, and releases connections.
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
