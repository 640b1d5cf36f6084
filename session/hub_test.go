// hub_test.go: a scripted hub for the session's tests.

package session

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"studioworker/protocol"
)

// scriptHub is a small hub that tests script frame by frame, for the misbehaviour the real hub
// never shows. Each WebSocket connection is handed to the test as a hubConn; uploads and input
// downloads are answered by functions the test sets.
type scriptHub struct {
	t   *testing.T
	srv *httptest.Server

	conns    chan *hubConn
	upgrades atomic.Int32

	mu          sync.Mutex
	upgradeCode int  // non-zero: answer the upgrade with this status
	noWelcome   bool // let the test send welcome itself
	heartbeatMS int64
	noLogAck    bool
	uploadFn    http.HandlerFunc
	inputFn     http.HandlerFunc
}

func newScriptHub(t *testing.T) *scriptHub {
	t.Helper()
	h := &scriptHub{t: t, conns: make(chan *hubConn, 16), heartbeatMS: 50}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+protocol.PathWorkerWS, h.serveWS)
	mux.HandleFunc("POST /v1/worker/jobs/{id}/result", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		fn := h.uploadFn
		h.mu.Unlock()
		if fn == nil {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusOK)
			return
		}
		fn(w, r)
	})
	mux.HandleFunc("GET /v1/worker/jobs/{id}/input", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		fn := h.inputFn
		h.mu.Unlock()
		if fn == nil {
			http.Error(w, "no input", http.StatusNotFound)
			return
		}
		fn(w, r)
	})
	h.srv = httptest.NewServer(mux)
	t.Cleanup(h.srv.Close)
	return h
}

func (h *scriptHub) set(f func(h *scriptHub)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(h)
}

func (h *scriptHub) serveWS(w http.ResponseWriter, r *http.Request) {
	h.upgrades.Add(1)
	h.mu.Lock()
	code, noWelcome, hb, noLogAck := h.upgradeCode, h.noWelcome, h.heartbeatMS, h.noLogAck
	h.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get(protocol.HeaderWorkerID) != "w1" {
		code = http.StatusUnauthorized
	}
	if code != 0 {
		http.Error(w, `{"error":"scripted"}`, code)
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{protocol.Subprotocol}})
	if err != nil {
		return
	}
	ws.SetReadLimit(protocol.MaxFrameBytes)
	c := &hubConn{ws: ws, frames: make(chan received, 4096), done: make(chan struct{}), protocolOK: ws.Subprotocol() == protocol.Subprotocol}
	go c.read(noLogAck)
	first, ok := <-c.frames
	if !ok {
		return
	}
	hello, isHello := first.f.(protocol.Hello)
	if !isHello {
		h.t.Errorf("first frame is %s, not hello", first.f.FrameType())
		ws.CloseNow()
		return
	}
	c.hello = hello
	if !noWelcome {
		c.send(protocol.Welcome{WorkerID: "w1", ServerVersion: "script", HeartbeatMS: hb, OfferTTLMS: 10000})
	}
	h.conns <- c
	<-c.done
}

// next waits for the next connection.
func (h *scriptHub) next(t *testing.T) *hubConn {
	t.Helper()
	select {
	case c := <-h.conns:
		t.Cleanup(func() { c.ws.CloseNow() })
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection from the worker")
		return nil
	}
}

type received struct {
	f  protocol.Frame
	at time.Time
}

// hubConn is one worker connection on the script hub. A goroutine reads every frame (so pings are
// answered) into frames; heartbeats are acknowledged, and log batches too unless noLogAck.
type hubConn struct {
	ws         *websocket.Conn
	hello      protocol.Hello
	frames     chan received
	done       chan struct{}
	protocolOK bool

	mu       sync.Mutex
	closeErr error
	seen     []received
}

func (c *hubConn) read(noLogAck bool) {
	defer close(c.done)
	defer close(c.frames)
	for {
		typ, data, err := c.ws.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.closeErr = err
			c.mu.Unlock()
			return
		}
		if typ != websocket.MessageText {
			continue
		}
		f, err := protocol.Decode(data)
		if err != nil {
			c.mu.Lock()
			c.closeErr = err
			c.mu.Unlock()
			c.ws.Close(protocol.CloseProtocolError, "bad frame")
			return
		}
		switch f := f.(type) {
		case protocol.Heartbeat:
			c.send(protocol.HeartbeatAck{})
		case protocol.LogBatch:
			if !noLogAck {
				c.send(protocol.LogAck{Seq: f.Seq})
			}
		}
		r := received{f, time.Now()}
		c.mu.Lock()
		c.seen = append(c.seen, r)
		c.mu.Unlock()
		c.frames <- r
	}
}

func (c *hubConn) send(f protocol.Frame) {
	b, err := protocol.Encode(f)
	if err != nil {
		panic(err)
	}
	_ = c.ws.Write(context.Background(), websocket.MessageText, b)
}

func (c *hubConn) sendRaw(typ websocket.MessageType, b []byte) error {
	return c.ws.Write(context.Background(), typ, b)
}

// expect returns the next frame of one of the types, skipping others (heartbeats, logs...).
func (c *hubConn) expect(t *testing.T, types ...protocol.Type) protocol.Frame {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case r, ok := <-c.frames:
			if !ok {
				t.Fatalf("connection closed while waiting for %v: %v", types, c.err())
			}
			if slices.Contains(types, r.f.FrameType()) {
				return r.f
			}
		case <-timeout:
			t.Fatalf("no %v frame", types)
		}
	}
}

// expectClose waits for the worker to close the connection and returns its close code.
func (c *hubConn) expectClose(t *testing.T) websocket.StatusCode {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		t.Fatal("the worker did not close the connection")
	}
	return websocket.CloseStatus(c.err())
}

func (c *hubConn) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeErr
}

// all returns every frame seen so far on this connection, in order.
func (c *hubConn) all() []protocol.Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]protocol.Frame, len(c.seen))
	for i, r := range c.seen {
		out[i] = r.f
	}
	return out
}

func (c *hubConn) allTimed() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.seen)
}

// tcpProxy sits between the worker and a hub and can cut connections, at once or after a given
// number of bytes from the worker, to drop a connection in the middle of a frame or an upload.
type tcpProxy struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	pairs    map[*proxyPair]bool
	cutAfter int64 // > 0: cut the connection that forwards this many more worker bytes
	refuse   bool
	closed   bool
	wg       sync.WaitGroup
}

type proxyPair struct{ a, b net.Conn }

func (p *proxyPair) close() { p.a.Close(); p.b.Close() }

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, pairs: map[*proxyPair]bool{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	for {
		a, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.refuse || p.closed
		p.mu.Unlock()
		if refuse {
			a.Close()
			continue
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		b, err := net.Dial("tcp", target)
		if err != nil {
			a.Close()
			continue
		}
		pair := &proxyPair{a, b}
		p.mu.Lock()
		p.pairs[pair] = true
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(pair, a, b, true) })
		p.wg.Go(func() { p.pipe(pair, b, a, false) })
	}
}

func (p *tcpProxy) pipe(pair *proxyPair, from, to net.Conn, upstream bool) {
	defer func() {
		pair.close()
		p.mu.Lock()
		delete(p.pairs, pair)
		p.mu.Unlock()
	}()
	buf := make([]byte, 16<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			cut := false
			if upstream {
				p.mu.Lock()
				if p.cutAfter > 0 {
					if int64(n) >= p.cutAfter {
						n = int(p.cutAfter)
						p.cutAfter = 0
						cut = true
					} else {
						p.cutAfter -= int64(n)
					}
				}
				p.mu.Unlock()
			}
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
			if cut {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cutAll drops every open connection.
func (p *tcpProxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pair := range p.pairs {
		pair.close()
	}
}

// cutAfterBytes drops the connection that forwards n more bytes from the worker, after them.
func (p *tcpProxy) cutAfterBytes(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutAfter = n
}

// setTarget points new connections at another address (a hub restarted elsewhere).
func (p *tcpProxy) setTarget(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = addr
}

func (p *tcpProxy) setRefuse(v bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = v
}

func (p *tcpProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.cutAll()
	p.wg.Wait()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// run is a Session's Run in progress.
type run struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// startRun runs s until the test ends or stop is called.
func startRun(t *testing.T, s *Session) *run {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = s.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return r
}

// wait returns Run's error once it has returned by itself.
func (r *run) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
		return errors.New("timeout")
	}
}

// stop cancels Run and returns its error.
func (r *run) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	return r.wait(t)
}
