// listener_test.go: the hub's listener turns connections away past its cap.

package hub

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestLimitListenerTurnsAwayPastTheCap: past the cap a new connection is closed at once, and a
// slot that frees up is taken again.
func TestLimitListenerTurnsAwayPastTheCap(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := LimitListener(raw, 2, nil)
	defer ln.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	take := func() net.Conn {
		select {
		case c := <-accepted:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("no connection accepted")
			return nil
		}
	}
	dial()
	dial()
	first, _ := take(), take()
	third := dial()
	_ = third.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := third.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("the connection past the cap: read %v, want it closed", err)
	}
	first.Close()
	first.Close() // twice gives one slot back, not two
	dial()
	take()
	fourth := dial()
	_ = fourth.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := fourth.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("after a slot was taken again: read %v, want the next one closed", err)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}
