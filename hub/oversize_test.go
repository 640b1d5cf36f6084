// oversize_test.go: what a worker that sends a frame over the limit sees on its own socket: the
// hub's 1009 close, after the rest of the frame was read, rather than a reset that loses it
// (issue 17). It must not look at the hub's state: only what the sender's socket says.

package hub

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"studioworker/protocol"
)

// rawSender is a plain coder/websocket client with no reader of its own, as a careless or hostile
// peer would write: it sends, then reads.
func (e *env) rawSender(t *testing.T) *websocket.Conn {
	t.Helper()
	ws, resp, err := e.dial(e.register("big"))
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	t.Cleanup(func() { ws.CloseNow() })
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	b, err := protocol.Encode(hello(llmCaps, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ws.Read(ctx); err != nil { // welcome
		t.Fatal(err)
	}
	return ws
}

// TestOversizedFrameCloseReachesTheSender: a 5 MB frame. The hub used to close the socket with
// 4 MB of it unread, which makes the kernel send a reset: the sender's write failed with
// "connection reset by peer", and a peer whose system drops received data on a reset (Windows
// does) never read the 1009 and saw 1006. The hub now reads the rest of the frame before it
// closes, so the write completes and the next read is the 1009.
func TestOversizedFrameCloseReachesTheSender(t *testing.T) {
	e := startHub(t, nil)
	ws := e.rawSender(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	big := `{"type":"progress","job_id":"x","fraction":0.1,"message":"` + strings.Repeat("a", 5<<20) + `"}`
	if err := ws.Write(ctx, websocket.MessageText, []byte(big)); err != nil {
		t.Fatalf("the sender's write failed (reset: %v): %v", errors.Is(err, syscall.ECONNRESET), err)
	}
	_, _, err := ws.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusMessageTooBig {
		t.Fatalf("the sender read %v (close %d), want the hub's 1009", err, code)
	}
	e.waitMetric("studio_hub_frame_errors_total 1")
}

// TestOversizedFrameThatNeverEndsIsCutOff: reading the rest of a frame is bounded in time, so a
// peer that trickles an endless frame after the limit does not keep its connection.
func TestOversizedFrameThatNeverEndsIsCutOff(t *testing.T) {
	e := startHub(t, nil)
	ws := e.rawSender(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	wr, err := ws.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wr.Write([]byte(`{"type":"progress","message":"` + strings.Repeat("a", protocol.MaxFrameBytes))); err != nil {
		t.Fatal(err)
	}
	// Pacing, not waiting: a fragment every 20 ms until the hub ends the connection.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := wr.Write([]byte(strings.Repeat("a", 1024))); err != nil {
			return // cut off
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("the hub still read an endless frame after %s", waitLimit)
		}
	}
}
