// conn_queue_test.go: the send queue of one session, over a real WebSocket on an in-memory pipe
// (net.Pipe buffers nothing, so a peer that does not read stops the writer at once): a send never
// waits on the socket, a worker that lets sendQueue frames wait is closed with 1013, and frames
// reach a reading worker whole and in order. It must not know what the frames mean.

package hub

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"studioworker/protocol"
)

// pipeListener hands out one end of a net.Pipe, once.
type pipeListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// pipeSession connects a client WebSocket to a server-side conn over a net.Pipe. The conn's
// session reads (as handleWS does) until the test ends.
func pipeSession(t *testing.T) (*conn, *websocket.Conn) {
	t.Helper()
	server, client := net.Pipe()
	ln := &pipeListener{conns: make(chan net.Conn, 1), done: make(chan struct{})}
	ln.conns <- server
	got := make(chan *conn, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keep := &hijackKeeper{ResponseWriter: w}
		ws, err := websocket.Accept(keep, r, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		defer ws.CloseNow()
		ctx, cancel := context.WithCancel(context.Background())
		c := newConn(ctx, cancel, ws, keep.conn, slog.New(slog.DiscardHandler), newMetrics())
		defer func() { cancel(); <-c.done }()
		got <- c
		for {
			if _, _, err := ws.Read(ctx); err != nil {
				return
			}
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	dialer := &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		return client, nil
	}}}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://pipe/", &websocket.DialOptions{HTTPClient: dialer})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	select {
	case c := <-got:
		return c, ws
	case <-ctx.Done():
		t.Fatal("no server session")
		return nil, nil
	}
}

func TestConnSendNeverWaitsAndAFullQueueClosesWith1013(t *testing.T) {
	c, ws := pipeSession(t)
	// Nobody reads the client's end: the first frame's write blocks, the rest wait in the queue.
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range sendQueue + 10 {
			c.send(protocol.Cancel{JobID: fmt.Sprintf("job-%d", i), Reason: protocol.CancelCancelled})
		}
	}()
	select {
	case <-sent:
	case <-time.After(waitLimit):
		t.Fatal("send waited on a worker that does not read")
	}
	// Now the worker reads: at most the frame being written comes before the close.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	frames := 0
	for {
		_, _, err := ws.Read(ctx)
		if err != nil {
			if got := websocket.CloseStatus(err); got != websocket.StatusTryAgainLater {
				t.Fatalf("session ended with %v (status %d), want 1013 (try again later)", err, got)
			}
			break
		}
		frames++
	}
	if frames > 1 {
		t.Errorf("%d frames came before the close, want at most the one being written", frames)
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		t.Fatal("the session's writing did not end after the close")
	}
}

func TestConnFramesArriveWholeAndInOrder(t *testing.T) {
	c, ws := pipeSession(t)
	const n = sendQueue // all that the queue holds, sent while the worker reads
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	read := make(chan error, 1)
	go func() {
		for i := range n {
			_, b, err := ws.Read(ctx)
			if err != nil {
				read <- fmt.Errorf("frame %d: %w", i, err)
				return
			}
			f, err := protocol.Decode(b)
			if err != nil {
				read <- err
				return
			}
			if want := fmt.Sprintf("job-%d", i); f.(protocol.Cancel).JobID != want {
				read <- fmt.Errorf("frame %d is %s, want %s", i, f.(protocol.Cancel).JobID, want)
				return
			}
		}
		read <- nil
	}()
	for i := range n {
		c.send(protocol.Cancel{JobID: fmt.Sprintf("job-%d", i), Reason: protocol.CancelCancelled})
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() {
		_, _, err := ws.Read(ctx) // answers the close, as a worker's read loop does
		closed <- err
	}()
	c.closeWith(nil, websocket.StatusNormalClosure, "")
	if err := <-closed; websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Errorf("after closeWith the worker read %v, want a normal close", err)
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		t.Fatal("close did not end the session's writing")
	}
}
