package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"studioworker/protocol"
)

// TestTapDecodesHubFrames runs a real coder/websocket server behind the tap and checks that every
// text message the server sends — short, 16-bit and 64-bit lengths, and one sent in fragments —
// reaches the callback decoded, while the client still receives every byte.
func TestTapDecodesHubFrames(t *testing.T) {
	big := strings.Repeat("x", 70<<10)  // 64-bit length
	mid := strings.Repeat("y", 300)     // 16-bit length
	frag := strings.Repeat("z", 12<<10) // sent as three frames
	sent := []protocol.Frame{
		protocol.HeartbeatAck{},
		protocol.CompleteAck{JobID: "j-short", Status: protocol.AckStored},
		protocol.Error{Code: protocol.ErrCodeInternal, Message: mid},
		protocol.Error{Code: protocol.ErrCodeInternal, Message: big},
	}
	last := protocol.Error{Code: protocol.ErrCodeShuttingDown, Message: frag}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var handlers sync.WaitGroup
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlers.Add(1)
		defer handlers.Done()
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		for _, f := range sent {
			b, _ := protocol.Encode(f)
			if err := c.Write(ctx, websocket.MessageText, b); err != nil {
				return
			}
		}
		b, _ := protocol.Encode(last)
		wr, err := c.Writer(ctx, websocket.MessageText)
		if err != nil {
			return
		}
		for _, part := range [][]byte{b[:100], b[100 : len(b)/2], b[len(b)/2:]} {
			if _, err := wr.Write(part); err != nil {
				return
			}
		}
		if err := wr.Close(); err != nil {
			return
		}
		_, _, _ = c.Read(ctx) // until the client closes
	})}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		srv.Close()
		handlers.Wait()
	}()

	var mu sync.Mutex
	var got []protocol.Frame
	tp, err := newTap(ln.Addr().String(), func(f protocol.Frame) {
		mu.Lock()
		got = append(got, f)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A plain HTTP request through the tap first: the scanner must let it pass untouched.
	resp, err := http.Get(tp.URL() + "/plain")
	if err != nil {
		t.Fatalf("plain GET through the tap: %v", err)
	}
	resp.Body.Close()

	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(tp.URL(), "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(protocol.MaxFrameBytes)
	var received [][]byte
	for range len(sent) + 1 {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("client read: %v", err)
		}
		received = append(received, b)
	}
	c.Close(websocket.StatusNormalClosure, "")

	want := append(append([]protocol.Frame(nil), sent...), last)
	for i, f := range want {
		b, _ := protocol.Encode(f)
		if !bytes.Equal(received[i], b) {
			t.Errorf("client message %d changed by the tap", i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("the tap decoded %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		a, _ := json.Marshal(got[i])
		b, _ := json.Marshal(want[i])
		if got[i].FrameType() != want[i].FrameType() || !bytes.Equal(a, b) {
			t.Errorf("decoded message %d = %s %.60s, want %s %.60s", i, got[i].FrameType(), a, want[i].FrameType(), b)
		}
	}
	if tp.up.Load() == 0 || tp.down.Load() < int64(len(big)) {
		t.Errorf("counted %d bytes up, %d down", tp.up.Load(), tp.down.Load())
	}
}

// TestTapTargetDown: a worker that reaches the tap while the hub is down sees its connection
// closed, as a refused connection would be, and the tap keeps serving.
func TestTapTargetDown(t *testing.T) {
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	tp, err := newTap(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		if _, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(tp.URL(), "http"), nil); err == nil {
			t.Fatal("dial through a tap whose target is down succeeded")
		}
	}
}
