// conn.go: one worker WebSocket: the upgrade and its token check, the hello handshake, reading and
// decoding frames, and one writer goroutine per socket that sends what send queues, so that nobody
// holding Hub.mu ever waits on a socket. It must not know what a frame after hello means:
// session.go does.

package hub

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"studioworker/protocol"
)

// conn is one worker session. The handler goroutine reads; one writer goroutine writes what send
// queues, so nobody holding Hub.mu ever waits on a socket.
type conn struct {
	ws       *websocket.Conn
	log      *slog.Logger
	out      chan []byte
	closeReq chan closeMsg
	ctx      context.Context
	cancel   context.CancelFunc
	once     sync.Once
	done     chan struct{} // writer ended
	met      *metrics
	raw      net.Conn // the hijacked socket, only to bound the drain after an oversized frame

	// Unknown frame types are logged at most once per unknownLogEvery, with how many were not:
	// one worker sending them in a loop wrote 40,810 lines in 5 s.
	unknownLog logEvery
}

// unknownLogEvery is how often at most a session logs the unknown frame types it ignores.
const unknownLogEvery = time.Minute

// oversizeDrain bounds how long the hub reads (and drops) the rest of an oversized frame and waits
// for the sender's close, so that a sender trickling an endless frame cannot keep its connection.
const oversizeDrain = 5 * time.Second

// hijackKeeper hands the hijacked socket to the session as well as to the WebSocket library: the
// library offers no deadline of its own for the close handshake after an oversized frame.
type hijackKeeper struct {
	http.ResponseWriter
	conn net.Conn
}

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
	return c, brw, nil
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

// send queues a frame without blocking. A worker whose queue is full is too slow to keep up and
// is disconnected; its leases then follow the grace rule.
func (c *conn) send(f protocol.Frame) {
	b, err := protocol.Encode(f)
	if err != nil {
		c.log.Error("encode frame", "type", f.FrameType(), "err", err)
		return
	}
	select {
	case c.out <- b:
	default:
		c.log.Warn("send queue full: closing a worker too slow to read its frames")
		c.closeWith(nil, websocket.StatusTryAgainLater, "send queue full")
	}
}

// closeWith sends frame (if any), then closes with code. Only the first call counts.
func (c *conn) closeWith(frame protocol.Frame, code websocket.StatusCode, reason string) {
	c.once.Do(func() { c.closeReq <- closeMsg{frame: frame, code: code, reason: reason} })
}

// abort drops the connection without a handshake.
func (c *conn) abort() { c.cancel() }

func (c *conn) writer() {
	defer close(c.done)
	write := func(b []byte) bool {
		ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
		defer cancel()
		if err := c.ws.Write(ctx, websocket.MessageText, b); err != nil {
			c.log.Debug("write failed", "err", err)
			c.cancel()
			return false
		}
		return true
	}
	for {
		select {
		case <-c.ctx.Done():
			return
		case b := <-c.out:
			if !write(b) {
				return
			}
		case m := <-c.closeReq:
			if m.frame != nil {
				if b, err := protocol.Encode(m.frame); err == nil && !write(b) {
					return
				}
			}
			// Close waits for the worker's close frame (up to 5 s), read by the handler's loop.
			_ = c.ws.Close(m.code, m.reason)
			c.cancel()
			return
		}
	}
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
	defer h.connsWG.Done()
	keep := &hijackKeeper{ResponseWriter: w}
	ws, err := websocket.Accept(keep, r, &websocket.AcceptOptions{Subprotocols: []string{protocol.Subprotocol}})
	if err != nil {
		h.log.Warn("websocket upgrade failed", "worker_id", workerID, "err", err)
		return
	}
	defer ws.CloseNow()
	ws.SetReadLimit(protocol.MaxFrameBytes)
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		ws:         ws,
		log:        h.log.With("worker_id", workerID),
		out:        make(chan []byte, sendQueue),
		closeReq:   make(chan closeMsg, 1),
		ctx:        ctx,
		cancel:     cancel,
		done:       make(chan struct{}),
		met:        h.met,
		raw:        keep.conn,
		unknownLog: logEvery{every: unknownLogEvery},
	}
	go c.writer()
	defer func() { cancel(); <-c.done }()
	if ws.Subprotocol() != protocol.Subprotocol {
		c.log.Debug("worker did not ask for the subprotocol", "want", protocol.Subprotocol)
	}
	base := h.cfg.PublicURL
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
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
