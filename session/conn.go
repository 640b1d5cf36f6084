// conn.go is one WebSocket connection to the hub: the dial with the worker's token, the welcome,
// the read loop that dispatches frames, heartbeats, pings and log batches, and acks of the outbox's
// entries. It must not decide about jobs: jobs.go does, through the Handler.

package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"studioworker/protocol"
)

const (
	dialTimeout    = 30 * time.Second
	welcomeTimeout = 15 * time.Second
)

var errNoWelcome = errors.New("the hub sent no welcome")

// conn is one WebSocket connection and the goroutines that serve it.
type conn struct {
	s   *Session
	ws  *websocket.Conn
	gen uint64
	// ctx lives until the connection is torn down. It is deliberately not the Run context: a
	// context that ends during a read or write makes coder/websocket drop the connection without
	// a close frame, and on shutdown the worker must close with 1000.
	ctx    context.Context
	cancel context.CancelFunc

	welcome protocol.Welcome
	since   time.Time
	// lastCaps is the JSON of the capabilities last sent on this connection (hello, then
	// heartbeats); only the heartbeat goroutine touches it after hello.
	lastCaps []byte

	causeMu  sync.Mutex
	cause    error
	closeReq chan closeRequest
}

type closeRequest struct {
	code   websocket.StatusCode // < 0: drop at once, no close handshake (dead peer)
	reason string
}

// requestClose asks the connection's watcher to close it, and records why (the first reason wins).
func (c *conn) requestClose(code websocket.StatusCode, reason string, cause error) {
	c.setCause(cause)
	select {
	case c.closeReq <- closeRequest{code, reason}:
	default:
	}
}

func (c *conn) setCause(err error) {
	c.causeMu.Lock()
	defer c.causeMu.Unlock()
	if c.cause == nil {
		c.cause = err
	}
}

func (c *conn) getCause() error {
	c.causeMu.Lock()
	defer c.causeMu.Unlock()
	return c.cause
}

// write sends one frame; a failed write ends the connection.
func (c *conn) write(f protocol.Frame) error {
	b, err := protocol.Encode(f)
	if err != nil {
		return err
	}
	if err := c.ws.Write(c.ctx, websocket.MessageText, b); err != nil {
		err = fmt.Errorf("send %s: %w", f.FrameType(), err)
		c.requestClose(-1, "", err)
		return err
	}
	return nil
}

type outcome struct {
	err     error
	healthy bool // the session stayed up long enough to reset the backoff
}

func (s *Session) dial(ctx context.Context) (*websocket.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	h := http.Header{}
	s.authHeaders(h)
	ws, resp, err := websocket.Dial(dctx, s.wsURL, &websocket.DialOptions{
		HTTPClient:   s.client,
		HTTPHeader:   h,
		Subprotocols: []string{protocol.Subprotocol},
	})
	if err != nil {
		if resp != nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
			return nil, fmt.Errorf("%w: the hub answered %s at the upgrade%s", ErrAuthFailed, resp.Status, bodySnippet(resp.Body))
		}
		if resp != nil {
			return nil, fmt.Errorf("connect: %s%s: %w", resp.Status, bodySnippet(resp.Body), err)
		}
		return nil, fmt.Errorf("connect: %w", err)
	}
	if sp := ws.Subprotocol(); sp != protocol.Subprotocol {
		s.log.Warn("the hub did not select the subprotocol", "want", protocol.Subprotocol, "got", sp)
	}
	ws.SetReadLimit(protocol.MaxFrameBytes)
	return ws, nil
}

// bodySnippet returns a short, single-line piece of an HTTP error body for a message.
func bodySnippet(r io.Reader) string {
	if r == nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(r, 200))
	var he protocol.HTTPError
	if json.Unmarshal(b, &he) == nil && he.Error != "" {
		return ": " + he.Error
	}
	t := strings.Join(strings.Fields(string(b)), " ")
	if t == "" {
		return ""
	}
	return ": " + t
}

// connectAndServe runs one connection from dial to teardown.
func (s *Session) connectAndServe(ctx context.Context) outcome {
	ws, err := s.dial(ctx)
	if err != nil {
		return outcome{err: err}
	}
	defer ws.CloseNow()
	s.mu.Lock()
	s.gen++
	gen := s.gen
	s.mu.Unlock()
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &conn{s: s, ws: ws, gen: gen, ctx: cctx, cancel: cancel, closeReq: make(chan closeRequest, 1)}

	var helpers sync.WaitGroup
	helpers.Go(func() { c.watch(ctx) })
	defer func() {
		cancel()
		ws.CloseNow()
		helpers.Wait()
	}()

	caps := s.h.Capabilities()
	c.lastCaps, _ = json.Marshal(caps)
	s.mu.Lock()
	inFlight := s.runningLocked()
	s.mu.Unlock()
	hello := protocol.Hello{Protocol: protocol.Version, AgentVersion: s.cfg.AgentVersion, Capabilities: caps,
		InFlight: inFlight, Outbox: s.out.ids()}
	if err := c.write(hello); err != nil {
		return outcome{err: c.endErr(err)}
	}
	noWelcome := time.AfterFunc(welcomeTimeout, func() { c.requestClose(-1, "", errNoWelcome) })
	w, err := c.readWelcome()
	noWelcome.Stop()
	if err != nil {
		return outcome{err: c.endErr(err)}
	}
	c.welcome, c.since = w, time.Now()
	s.log.Info("connected", "server", s.host, "server_version", w.ServerVersion, "heartbeat", w.Heartbeat())

	s.mu.Lock()
	s.conn = c
	s.mu.Unlock()
	s.emit(ConnEvent{State: ConnConnected, Server: s.host})

	// The outbox goes first: results and fails are written before any offer is read, and every
	// waiting upload is made due now.
	s.sendFrames(c, "")
	s.out.retryNow()
	s.kick()

	helpers.Go(c.heartbeats)
	helpers.Go(c.shipLogs)
	helpers.Go(c.pings)

	err = c.readLoop()

	s.mu.Lock()
	if s.conn == c {
		s.conn = nil
	}
	// Offers belong to the connection they came on: an answer can no longer be sent.
	for _, o := range s.offers {
		if o.conn == c {
			o.cancel()
		}
	}
	s.mu.Unlock()
	return outcome{err: c.endErr(err), healthy: time.Since(c.since) >= s.bo.HealthyAfter}
}

// watch closes the connection when Run stops or when someone asks.
func (c *conn) watch(runCtx context.Context) {
	select {
	case <-runCtx.Done():
		c.setCause(errStopped)
		_ = c.ws.Close(protocol.CloseNormal, "worker shutting down")
	case r := <-c.closeReq:
		if r.code < 0 {
			_ = c.ws.CloseNow()
		} else {
			_ = c.ws.Close(r.code, r.reason)
		}
	case <-c.ctx.Done():
	}
}

// endErr says why the connection ended: the recorded cause first (shutdown, reconnect request,
// missing pong), then close codes that end reconnecting, then the read error itself.
func (c *conn) endErr(readErr error) error {
	if cause := c.getCause(); cause != nil {
		return cause
	}
	switch websocket.CloseStatus(readErr) {
	case protocol.CloseAuthFailed:
		return fmt.Errorf("%w: the hub closed with %d", ErrAuthFailed, protocol.CloseAuthFailed)
	case protocol.CloseSuperseded:
		return fmt.Errorf("%w: the hub closed with %d", ErrSuperseded, protocol.CloseSuperseded)
	}
	if errors.Is(readErr, websocket.ErrMessageTooBig) {
		return fmt.Errorf("the hub sent a frame over %d bytes (closed with 1009): %w", protocol.MaxFrameBytes, readErr)
	}
	return readErr
}

// protocolError answers a frame that breaks the contract: close 1002, then reconnect with backoff.
func (c *conn) protocolError(err error) error {
	c.s.log.Warn("protocol error from the hub", "err", err)
	reason := err.Error()
	if len(reason) > 120 {
		reason = reason[:120]
	}
	c.setCause(fmt.Errorf("protocol error: %w", err))
	_ = c.ws.Close(protocol.CloseProtocolError, strings.ToValidUTF8(reason, ""))
	return err
}

// next reads and decodes one frame.
func (c *conn) next() (protocol.Frame, error) {
	typ, data, err := c.ws.Read(c.ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageText {
		return nil, c.protocolError(errors.New("binary frame: the protocol uses text frames only"))
	}
	f, err := protocol.Decode(data)
	if err != nil {
		return nil, c.protocolError(err)
	}
	return f, nil
}

func (c *conn) readWelcome() (protocol.Welcome, error) {
	for {
		f, err := c.next()
		if err != nil {
			return protocol.Welcome{}, err
		}
		switch f := f.(type) {
		case protocol.Welcome:
			return f, nil
		case protocol.Error:
			return protocol.Welcome{}, c.hubError(f)
		case protocol.Unknown:
			c.s.log.Info("unknown frame ignored", "type", f.Type)
		default:
			return protocol.Welcome{}, c.protocolError(fmt.Errorf("%s frame before welcome", f.FrameType()))
		}
	}
}

// hubError turns an error frame into the session's verdict and closes the connection.
func (c *conn) hubError(e protocol.Error) error {
	var err error
	switch e.Code {
	case protocol.ErrCodeAuthFailed:
		err = fmt.Errorf("%w: %s", ErrAuthFailed, e.Message)
	case protocol.ErrCodeSuperseded:
		err = fmt.Errorf("%w: %s", ErrSuperseded, e.Message)
	default:
		err = fmt.Errorf("the hub sent error %s: %s", e.Code, e.Message)
	}
	c.s.log.Warn("error from the hub", "code", e.Code, "message", e.Message)
	c.setCause(err)
	_ = c.ws.Close(protocol.CloseNormal, "")
	return err
}

func (c *conn) readLoop() error {
	s := c.s
	for {
		f, err := c.next()
		if err != nil {
			return err
		}
		switch f := f.(type) {
		case protocol.Offer:
			claim := f.Claim
			// Our own clock decides when an offer lapses: a hub that says ttl_ms is believed over
			// its expires_at, which a skewed clock here would misread (spec §6).
			claim.ExpiresAt = f.LocalDeadline(time.Now())
			s.onOffer(c, claim)
		case protocol.Cancel:
			s.onCancel(f)
		case protocol.HeartbeatAck:
		case protocol.CompleteAck:
			s.onAck(c, f.JobID, f.Status, itemJSON, itemFile)
		case protocol.FailAck:
			s.onAck(c, f.JobID, "", itemFail)
		case protocol.LogAck:
			if !s.logs.ack(f.Seq) {
				s.log.Debug("log_ack for no pending batch", "seq", f.Seq)
			}
		case protocol.Error:
			return c.hubError(f)
		case protocol.Welcome:
			s.log.Debug("second welcome ignored")
		case protocol.Unknown:
			s.log.Info("unknown frame ignored", "type", f.Type)
		default:
			// A worker-to-hub type coming from the hub: not ours to act on.
			s.log.Info("frame of the wrong direction ignored", "type", f.FrameType())
		}
	}
}

// minHeartbeatGap bounds the heartbeats that StatusChanged adds between the regular ones.
const minHeartbeatGap = 50 * time.Millisecond

func (c *conn) heartbeats() {
	t := time.NewTicker(c.welcome.Heartbeat())
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		case <-c.s.statusCh:
			if wait := minHeartbeatGap - time.Since(last); wait > 0 {
				select {
				case <-c.ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		last = time.Now()
		if c.write(c.heartbeat()) != nil {
			return
		}
	}
}

// heartbeat builds the next heartbeat. Capabilities go in only when they differ from the last
// ones sent on this connection (hello carries them after every reconnect).
func (c *conn) heartbeat() protocol.Heartbeat {
	state, accepting, gpus := c.s.h.Status()
	hb := protocol.Heartbeat{
		Status: protocol.Status{State: state, Running: c.s.leased(), Accepting: accepting},
		GPUs:   gpus,
	}
	caps := c.s.h.Capabilities()
	if b, err := json.Marshal(caps); err == nil && !bytes.Equal(b, c.lastCaps) {
		c.lastCaps = b
		hb.Capabilities = &caps
	}
	return hb
}

// shipLogs sends log batches at most once every LogFlushInterval, and only when entries wait:
// the first flush (pending batches are resent at once on a new connection), then it sleeps until
// an entry arrives, lets more gather for an interval, and flushes them together.
func (c *conn) shipLogs() {
	for {
		if c.s.flushLogs(c) != nil {
			return
		}
		select {
		case <-c.ctx.Done():
			return
		case <-c.s.logs.wake:
		}
		t := time.NewTimer(c.s.cfg.LogFlushInterval)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// flushLogs writes the batches due on c, in seq order.
func (s *Session) flushLogs(c *conn) error {
	if c == nil {
		return nil
	}
	s.shipMu.Lock()
	defer s.shipMu.Unlock()
	batches := s.logs.due(c.gen)
	for i, b := range batches {
		if err := c.write(protocol.LogBatch{Seq: b.seq, Entries: b.entries}); err != nil {
			for _, b := range batches[i:] {
				s.logs.unsent(b, c.gen)
			}
			return err
		}
	}
	return nil
}

func (c *conn) pings() {
	t := time.NewTicker(c.s.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.PingTimeout)
		err := c.ws.Ping(ctx)
		cancel()
		if err != nil {
			if c.ctx.Err() == nil {
				c.requestClose(-1, "", fmt.Errorf("no pong within %s: %w", c.s.cfg.PingTimeout, err))
			}
			return
		}
	}
}

// sendFrames writes the outbox's JSON results and fails not yet sent on c (only one job's when
// only is set).
func (s *Session) sendFrames(c *conn, only string) {
	if c == nil {
		return
	}
	for _, m := range s.out.claimFrames(c.gen, only) {
		var f protocol.Frame
		if m.Type == itemFail {
			f = protocol.Fail{JobID: m.JobID, Error: m.Error, Retryable: m.Retryable}
		} else {
			f = protocol.CompleteJSON{JobID: m.JobID, Result: m.Result, Prompt: m.Prompt}
		}
		if err := c.write(f); err != nil {
			s.out.unclaim(m.JobID, c.gen)
			return
		}
	}
}

// onAck handles complete_ack and fail_ack: the entry is deleted whatever the status; a rejected
// result is logged (the hub does not hold this job for this worker). Acks carry only a job id, so
// an ack on c answers only a frame sent on c: a late ack for an earlier run of the same job (the
// hub offered it again meanwhile) must not delete the new result before it was even sent.
func (s *Session) onAck(c *conn, jobID string, status protocol.AckStatus, types ...itemType) {
	it := s.out.get(jobID)
	if it == nil || !slices.Contains(types, it.meta.Type) || !s.out.sentOn(it, c.gen) {
		s.log.Debug("ack for no outbox entry sent on this connection", "job_id", jobID, "status", status)
		return
	}
	s.out.remove(jobID)
	if status == protocol.AckRejected {
		s.note(slog.LevelWarn, jobID, "the hub rejected the result: it does not hold this job for this worker")
	}
	s.emit(DeliveredEvent{JobID: jobID, Status: status})
}
