// idle_linux_test.go: 10,000 idle keep-alive connections against the real hub process (issue 17:
// 20,400 of them took the hub down) do not stop a well-behaved worker from being offered and
// completing jobs, and each is closed once --idle-timeout has passed. Linux only, because it
// raises this process's open-file limit with setrlimit. It must not know the hub's internals: it
// sees only sockets, the job API and the worker's frames.

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"studioworker/hub"
	"studioworker/protocol"
)

// idleConn is what one idle connection saw: when its answer came and when the hub closed it.
type idleConn struct {
	answered, closed time.Time
	err              error // why it did not end with the hub's close
}

func TestTenThousandIdleConnectionsDoNotStopAWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 connections and waits out the hub's idle timeout (about 35 s): not under -short")
	}
	const (
		conns       = 10000
		idleTimeout = 20 * time.Second
		jobs        = 20
	)
	// This process holds one end of every connection and the hub (its child, which inherits the
	// limit) the other; a margin covers the test's own files and sockets.
	need := uint64(conns + 1024)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if lim.Max < need {
		t.Skipf("needs an open-file limit of %d for %d connections, but the hard limit is %d (raise it: ulimit -Hn)", need, conns, lim.Max)
	}
	if lim.Cur < need {
		lim.Cur = need
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatalf("setrlimit to %d: %v", need, err)
		}
	}

	p := startHubProcess(t, "--db", filepath.Join(t.TempDir(), "hub.db"), "--open-registration",
		"--admin-token", "idle-admin", "--idle-timeout", idleTimeout.String())
	addr := strings.TrimPrefix(p.url, "http://")
	c := &hub.Client{BaseURL: p.url, AdminToken: "idle-admin"}
	ctx := context.Background()

	// Open them all: one GET /healthz each, then silence, as the attack in the issue did. Each
	// then waits on its socket for the hub to close it.
	seen := make([]idleConn, conns)
	held := make([]net.Conn, conns)
	t.Cleanup(func() {
		for _, conn := range held {
			if conn != nil {
				conn.Close()
			}
		}
	})
	var wg sync.WaitGroup
	opened := make(chan int, conns)
	next := make(chan int)
	for range 64 {
		go func() {
			for i := range next {
				conn, err := openIdle(addr)
				if err != nil {
					seen[i].err = err
					opened <- i
					continue
				}
				seen[i].answered, held[i] = time.Now(), conn
				wg.Add(1)
				go func() {
					defer wg.Done()
					seen[i].closed, seen[i].err = awaitClose(conn, idleTimeout+20*time.Second)
				}()
				opened <- i
			}
		}()
	}
	start := time.Now()
	go func() {
		for i := range conns {
			next <- i
		}
		close(next)
	}()
	for range conns {
		i := <-opened
		if seen[i].err != nil {
			t.Fatalf("connection %d: %v", i, seen[i].err)
		}
	}
	allOpen := time.Now()
	first := allOpen
	for _, s := range seen {
		if s.answered.Before(first) {
			first = s.answered
		}
	}
	t.Logf("%d idle connections open in %v", conns, allOpen.Sub(start).Round(time.Millisecond))

	// A well-behaved worker: registers, connects, and is offered and completes jobs one by one.
	creds, err := c.Register(ctx, "busy-worker", "any")
	if err != nil {
		t.Fatalf("register with %d idle connections open: %v", conns, err)
	}
	w := connect(t, p.url, creds, protocol.ModelsPerKind{protocol.KindLLM: {"m1"}}, nil)
	var slowest time.Duration
	for range jobs {
		t0 := time.Now()
		id, err := c.Submit(ctx, protocol.JobRequest{Kind: protocol.KindLLM, Model: "m1", Input: protocol.Object(`{"prompt":"x"}`)})
		if err != nil {
			t.Fatalf("submit with %d idle connections open: %v", conns, err)
		}
		w.take(id)
		slowest = max(slowest, time.Since(t0))
		w.send(protocol.CompleteJSON{JobID: id, Result: protocol.Object(`{"text":"done"}`)})
		if a, ok := w.next().(protocol.CompleteAck); !ok || a.JobID != id || a.Status != protocol.AckStored {
			t.Fatalf("want complete_ack stored for %s, got %+v", id, a)
		}
		w.send(protocol.ReadyForMore{})
		w.send(protocol.Heartbeat{Status: protocol.Status{State: protocol.StateIdle, Accepting: true, Running: []string{}}})
		if _, ok := w.next().(protocol.HeartbeatAck); !ok {
			t.Fatal("want heartbeat_ack")
		}
	}
	jobsDone := time.Now()
	t.Logf("%d jobs offered and completed in %v, slowest POST → offer %v", jobs, jobsDone.Sub(allOpen).Round(time.Millisecond), slowest.Round(time.Millisecond))
	// The jobs only prove something if every idle connection was still open meanwhile: none can
	// have been closed before the first answer plus the idle timeout.
	if !jobsDone.Before(first.Add(idleTimeout)) {
		t.Fatalf("the jobs ended %v after the first idle connection's answer, past the idle timeout (%v): this machine is too slow for the test to show anything",
			jobsDone.Sub(first), idleTimeout)
	}

	wg.Wait()
	var early, late []string
	var latest time.Duration
	for i, s := range seen {
		if s.err != nil {
			t.Fatalf("idle connection %d: %v", i, s.err)
		}
		lived := s.closed.Sub(s.answered)
		latest = max(latest, lived)
		// The hub starts its idle clock when it has written the answer, a little before the
		// client reads it; a tenth of the timeout covers that on a loaded machine.
		if lived < idleTimeout*9/10 && len(early) < 5 {
			early = append(early, fmt.Sprintf("#%d after %v", i, lived))
		}
		if lived > idleTimeout+15*time.Second && len(late) < 5 {
			late = append(late, fmt.Sprintf("#%d after %v", i, lived))
		}
	}
	if len(early) > 0 || len(late) > 0 {
		t.Fatalf("idle connections closed before the idle timeout (%v): %v; long after it: %v", idleTimeout, early, late)
	}
	t.Logf("every idle connection closed by the hub, the last %v after its answer", latest.Round(time.Millisecond))
}

// openIdle opens a keep-alive connection and reads one answer on it; then it is idle.
func openIdle(addr string) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	_ = conn.SetDeadline(time.Now().Add(waitLimit))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", protocol.PathHealthz, addr); err != nil {
		conn.Close()
		return nil, fmt.Errorf("write: %w", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("read the answer: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || br.Buffered() != 0 {
		conn.Close()
		return nil, fmt.Errorf("answer %d with %d bytes after it", resp.StatusCode, br.Buffered())
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// awaitClose blocks until the hub closes conn and says when; a timeout is an error.
func awaitClose(conn net.Conn, limit time.Duration) (time.Time, error) {
	_ = conn.SetReadDeadline(time.Now().Add(limit))
	n, err := conn.Read(make([]byte, 1))
	at := time.Now()
	var ne net.Error
	switch {
	case n > 0:
		return at, errors.New("the hub sent bytes on an idle connection")
	case errors.As(err, &ne) && ne.Timeout():
		return at, fmt.Errorf("still open %v after its answer: %w", limit, err)
	}
	return at, nil // EOF or a reset: the hub closed it
}
