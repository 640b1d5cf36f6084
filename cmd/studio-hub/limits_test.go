package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestIdleAndExcessConnectionsAreClosed runs the real hub binary: an idle keep-alive connection
// is closed after --idle-timeout, and past --max-conns a new connection is closed at once while
// /healthz still answers on a slot that frees up.
func TestIdleAndExcessConnectionsAreClosed(t *testing.T) {
	p := startHubProcess(t, "--db", filepath.Join(t.TempDir(), "hub.db"), "--idle-timeout", "300ms", "--max-conns", "16")
	addr := strings.TrimPrefix(p.url, "http://")
	open := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return c, nil // turned away at the cap
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return c, br
	}
	closedSoon := func(c net.Conn, br *bufio.Reader) bool {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		r := io.Reader(c)
		if br != nil {
			r = br
		}
		_, err := r.Read(make([]byte, 1))
		var ne net.Error
		return err != nil && !(errors.As(err, &ne) && ne.Timeout())
	}

	c, br := open()
	if br == nil {
		t.Fatal("the first connection got no answer")
	}
	if !closedSoon(c, br) {
		t.Fatal("an idle keep-alive connection was still open after the idle timeout")
	}

	var held []net.Conn
	for range 16 {
		c, err := net.Dial("tcp", addr) // open and silent: each holds a slot until its header times out
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		held = append(held, c)
	}
	waitFor(t, "a connection past the cap to be turned away", func() bool {
		c, br := open()
		return br == nil && closedSoon(c, nil)
	})
	for _, c := range held {
		c.Close()
	}
	waitFor(t, "/healthz to answer once slots are free", func() bool { _, br := open(); return br != nil })
	p.kill(t) // its stderr may be read once it has ended
	if !strings.Contains(p.stderr.String(), "connection cap reached") {
		t.Errorf("no log line about the cap:\n%s", p.stderr.String())
	}
}

// waitFor polls cond until it holds or the deadline passes; a socket's state has no event to wait on.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
