// conn.go: one worker WebSocket: the upgrade and its token check, the hello handshake, reading and
// decoding frames, and one writer goroutine per socket that sends what send queues, so that nobody
// holding Hub.mu ever waits on a socket. It must not know what a frame after hello means:
// session.go does.

package hub

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"studioworker/protocol"
)

// conn is one worker session. The session's goroutine reads; what send queues is written by a
// writer goroutine that runs only while there is something to write, so that nobody holding
// Hub.mu ever waits on a socket and an idle session costs no goroutine, channel or buffer of its
// own beyond its reader's (issue 19: 10,000 connected workers on one hub).
type conn struct {
	ws     *websocket.Conn
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once     // the first closeWith counts
	done   chan struct{} // closed once the writing has ended for good (closed or cancelled)
	met    *metrics
	raw    net.Conn // the hijacked socket: write deadlines, and the drain after an oversized frame

	mu       sync.Mutex
	queue    [][]byte  // frames not yet written, oldest first, at most sendQueue
	closing  *closeMsg // asked for by closeWith; it goes before what is still queued
	running  bool      // a writer goroutine is at work
	ended    bool      // writing has ended: the context ended, a write failed or the close went out
	doneOnce sync.Once

	// Unknown frame types are logged at most once per unknownLogEvery, with how many were not:
	// one worker sending them in a loop wrote 40,810 lines in 5 s.
	unknownLog logEvery
}

// newConn makes the session of ws; raw is the socket under it. Its writing ends with ctx.
func newConn(ctx context.Context, cancel context.CancelFunc, ws *websocket.Conn, raw net.Conn, log *slog.Logger, met *metrics) *conn {
	c := &conn{ws: ws, log: log, ctx: ctx, cancel: cancel, done: make(chan struct{}), met: met, raw: raw,
		unknownLog: logEvery{every: unknownLogEvery}}
	// A context that ends while no writer runs has nobody else to say that writing is over.
	context.AfterFunc(ctx, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.ended = true
		c.queue = nil
		if !c.running {
			c.doneOnce.Do(func() { close(c.done) })
		}
	})
	return c
}

// writeTimeout bounds one frame's write: a worker that stops reading is cut off after it.
const writeTimeout = 10 * time.Second

// idleQueueCap is the most queue capacity a session keeps once its queue is empty: a burst that
// grew it gives the rest back, so a quiet worker holds no more than this.
const idleQueueCap = 8

// unknownLogEvery is how often at most a session logs the unknown frame types it ignores.
const unknownLogEvery = time.Minute

// oversizeDrain bounds how long the hub reads (and drops) the rest of an oversized frame and waits
// for the sender's close, so that a sender trickling an endless frame cannot keep its connection.
const oversizeDrain = 5 * time.Second

// hijackKeeper hands the hijacked socket to the session as well as to the WebSocket library: the
// library offers no deadline of its own for the close handshake after an oversized frame. It also
// gives the library buffers of its own, smaller than net/http's 4 KiB each, so that the request's
// connection state, buffers included, is garbage once handleWS returns (issue 19: per-connection
// memory). A frame bigger than a buffer is read and written past it, not in pieces of its size.
type hijackKeeper struct {
	http.ResponseWriter
	conn net.Conn
}

// wsReadBuffer and wsWriteBuffer are the sizes of a session's buffers: a heartbeat, an ack or an
// offer without a big input fits in one.
const (
	wsReadBuffer  = 1 << 10
	wsWriteBuffer = 2 << 10
)

func (k *hijackKeeper) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := k.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hub: the response writer cannot be hijacked")
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hub: hijack: %w", err)
	}
	k.conn = c
	// Bytes the worker sent after its upgrade request may wait in net/http's reader already:
	// they are moved into the new one, where the library looks for them.
	early, _ := brw.Reader.Peek(brw.Reader.Buffered())
	early = bytes.Clone(early)
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(early), c), max(wsReadBuffer, len(early)))
	if len(early) > 0 {
		if _, err := br.Peek(len(early)); err != nil {
			return nil, nil, fmt.Errorf("hub: hijack: keep the bytes read early: %w", err)
		}
	}
	return c, bufio.NewReadWriter(br, bufio.NewWriterSize(c, wsWriteBuffer)), nil
}

func (k *hijackKeeper) Unwrap() http.ResponseWriter { return k.ResponseWriter }

type closeMsg struct {
	frame  protocol.Frame // sent before the close, may be nil
	code   websocket.StatusCode
	reason string
}

func errFrame(code protocol.ErrorCode, msg string) protocol.Frame {
	return protocol.Error{Code: code, Message: msg}
}

// send queues a frame without blocking. A worker that lets sendQueue frames wait is too slow to
// keep up and is disconnected; its leases then follow the grace rule.
func (c *conn) send(f protocol.Frame) {
	b, err := protocol.Encode(f)
	if err != nil {
		c.log.Error("encode frame", "type", f.FrameType(), "err", err)
		return
	}
	c.mu.Lock()
	if c.ended || c.closing != nil {
		c.mu.Unlock()
		return // the session is closing: the frame would never be written
	}
	if len(c.queue) >= sendQueue {
		c.mu.Unlock()
		c.log.Warn("send queue full: closing a worker too slow to read its frames")
		c.closeWith(nil, websocket.StatusTryAgainLater, "send queue full")
		return
	}
	c.queue = append(c.queue, b)
	c.startWriterLocked()
	c.mu.Unlock()
}

// closeWith sends frame (if any), then closes with code, ahead of the frames still queued. Only
// the first call counts.
func (c *conn) closeWith(frame protocol.Frame, code websocket.StatusCode, reason string) {
	c.once.Do(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.closing = &closeMsg{frame: frame, code: code, reason: reason}
		c.startWriterLocked()
	})
}

// abort drops the connection without a handshake.
func (c *conn) abort() { c.cancel() }

// startWriterLocked starts the writer unless one runs or writing has ended. c.mu is held.
func (c *conn) startWriterLocked() {
	if c.running || c.ended {
		return
	}
	c.running = true
	go c.writer()
}

// writer writes what is queued, then ends; the next send starts another. It ends writing for good
// when the context ends, a write fails or the close went out.
func (c *conn) writer() {
	for {
		c.mu.Lock()
		if c.ended {
			c.running = false
			c.doneOnce.Do(func() { close(c.done) })
			c.mu.Unlock()
			return
		}
		if m := c.closing; m != nil {
			c.queue = nil
			c.mu.Unlock()
			if m.frame != nil {
				if b, err := protocol.Encode(m.frame); err == nil && !c.write(b) {
					continue // ended: the loop closes done
				}
			}
			// Close waits for the worker's close frame (up to 5 s), read by the session's loop.
			_ = c.ws.Close(m.code, m.reason)
			c.cancel()
			c.endWriting()
			continue
		}
		if len(c.queue) == 0 {
			if cap(c.queue) > idleQueueCap {
				c.queue = nil
			}
			c.running = false
			c.mu.Unlock()
			return
		}
		b := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		c.mu.Unlock()
		if !c.write(b) {
			continue
		}
	}
}

// endWriting marks writing as over; the writer's loop then closes done.
func (c *conn) endWriting() {
	c.mu.Lock()
	c.ended = true
	c.queue = nil
	c.mu.Unlock()
}

// write writes one frame within writeTimeout; a failure ends the session.
func (c *conn) write(b []byte) bool {
	var err error
	if c.raw != nil {
		// The socket's own deadline costs no timer or context per frame, unlike a context with a
		// timeout; a missed deadline fails the write and the session ends the same way. It is
		// cleared after the frame: the library's own writes (a close, a pong) keep their timing.
		_ = c.raw.SetWriteDeadline(time.Now().Add(writeTimeout))
		err = c.ws.Write(c.ctx, websocket.MessageText, b)
		_ = c.raw.SetWriteDeadline(time.Time{})
	} else {
		ctx, cancel := context.WithTimeout(c.ctx, writeTimeout)
		err = c.ws.Write(ctx, websocket.MessageText, b)
		cancel()
	}
	if err != nil {
		c.log.Debug("write failed", "err", err)
		c.cancel()
		c.endWriting()
		return false
	}
	return true
}

func (h *Hub) handleWS(w http.ResponseWriter, r *http.Request) {
	workerID := r.Header.Get(protocol.HeaderWorkerID)
	token := bearer(r)
	h.loadWorker(r.Context(), workerID) // registered on another replica: read it from the database
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "the hub is shutting down")
		return
	}
	wk := h.workers[workerID]
	ok := wk != nil && token != "" && tokenMatches(token, wk.tokenHash)
	if ok {
		h.connsWG.Add(1)
	}
	h.mu.Unlock()
	if !ok {
		h.met.authFailures.Add(1)
		h.log.Warn("worker connection refused: unknown worker or wrong token", "worker_id", workerID, "remote", r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, "unknown worker or wrong token")
		return
	}
	keep := &hijackKeeper{ResponseWriter: w}
	ws, err := websocket.Accept(keep, r, &websocket.AcceptOptions{Subprotocols: []string{protocol.Subprotocol}})
	if err != nil {
		h.connsWG.Done()
		h.log.Warn("websocket upgrade failed", "worker_id", workerID, "err", err)
		return
	}
	base := h.cfg.PublicURL
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	// The session runs on a goroutine of its own and this handler returns, so that net/http lets
	// go of the request and its connection's state; nothing of r or w is used past this point.
	go func() {
		defer h.connsWG.Done()
		h.serveSession(ws, keep.conn, wk, workerID, base)
	}()
}

// serveSession runs one upgraded worker connection: hello, then every frame until it ends.
func (h *Hub) serveSession(ws *websocket.Conn, raw net.Conn, wk *worker, workerID, base string) {
	defer ws.CloseNow()
	ws.SetReadLimit(protocol.MaxFrameBytes)
	ctx, cancel := context.WithCancel(context.Background())
	c := newConn(ctx, cancel, ws, raw, h.log.With("worker_id", workerID), h.met)
	defer func() { cancel(); <-c.done }()
	if ws.Subprotocol() != protocol.Subprotocol {
		c.log.Debug("worker did not ask for the subprotocol", "want", protocol.Subprotocol)
	}

	// The first frame must be hello, within a few heartbeats.
	hctx, hcancel := context.WithTimeout(ctx, 3*h.cfg.HeartbeatInterval+10*time.Second)
	f, ok := h.readFrame(hctx, c)
	hcancel()
	if !ok {
		return
	}
	hello, isHello := f.(protocol.Hello)
	if !isHello {
		h.protocolError(c, "the first frame must be hello, got "+string(f.FrameType()))
		return
	}
	if hello.Protocol != protocol.Version {
		h.protocolError(c, "unsupported protocol version")
		return
	}
	h.onHello(ctx, c, wk, hello, base)
	defer h.onDisconnect(wk, c)

	for {
		f, ok := h.readFrame(ctx, c)
		if !ok {
			return
		}
		if !h.dispatch(ctx, c, wk, f) {
			return
		}
	}
}

// readFrame reads and decodes one frame; on a bad frame it answers as the contract says and
// returns false.
func (h *Hub) readFrame(ctx context.Context, c *conn) (protocol.Frame, bool) {
	for {
		typ, data, err := c.ws.Read(ctx)
		if err != nil {
			if errors.Is(err, websocket.ErrMessageTooBig) {
				h.met.frameErrors.Add(1)
				c.log.Warn("frame over the size limit: closed with 1009", "limit", protocol.MaxFrameBytes)
				c.drainAfterOversize()
			} else {
				c.log.Debug("session read ended", "err", err, "close_status", websocket.CloseStatus(err))
			}
			return nil, false
		}
		if typ != websocket.MessageText {
			h.protocolError(c, "binary frames are not part of the protocol")
			return nil, false
		}
		if !utf8.Valid(data) {
			// RFC 6455 §8.1: a text frame that is not UTF-8 fails the connection with 1007.
			h.met.frameErrors.Add(1)
			c.log.Warn("text frame is not valid UTF-8: closing the session with 1007")
			c.closeWith(errFrame(protocol.ErrCodeProtocolError, "a text frame was not valid UTF-8"), websocket.StatusInvalidFramePayloadData, "invalid UTF-8")
			<-c.done
			return nil, false
		}
		f, err := protocol.Decode(data)
		if err != nil {
			h.protocolError(c, err.Error())
			return nil, false
		}
		if u, unknown := f.(protocol.Unknown); unknown {
			h.met.unknownFrames.Add(1)
			if ok, quiet := c.unknownLog.take(time.Now()); ok {
				c.log.Info("ignoring a frame of unknown type", "type", u.Type, "ignored_since_last_line", quiet)
			}
			continue
		}
		return f, true
	}
}

// drainAfterOversize finishes the close the library began with its 1009. Closing the socket with
// the rest of the frame unread makes the kernel send a reset, and a sender whose system drops
// what it received on a reset (Windows does) loses the 1009 and sees 1006. So the rest of the
// frame is read and dropped, and the sender's close awaited, within oversizeDrain.
func (c *conn) drainAfterOversize() {
	if c.raw != nil {
		_ = c.raw.SetDeadline(time.Now().Add(oversizeDrain))
	}
	// The 1009 is already sent, so the writer's Close only reads: the frame's rest, then up to
	// the sender's close.
	c.closeWith(nil, websocket.StatusMessageTooBig, "frame over 1 MiB")
	<-c.done
}

// protocolError sends error{protocol_error}, closes with 1002 and waits for the writer to finish.
func (h *Hub) protocolError(c *conn, msg string) {
	h.met.frameErrors.Add(1)
	c.log.Warn("protocol error: closing the session", "err", msg)
	if len(msg) > 512 {
		msg = msg[:512]
	}
	c.closeWith(errFrame(protocol.ErrCodeProtocolError, msg), websocket.StatusProtocolError, "protocol error")
	// The writer sends the error frame, then closes; Close reads the worker's close frame itself.
	<-c.done
}
