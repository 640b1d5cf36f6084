// deadlines_test.go: the body and write deadlines over real sockets against the real hub: a
// trickled body is cut off and answered, a slow but steady one gets through although it takes
// longer than a window, and an answer nobody reads is cut off. It must not know how the
// deadlines are set: only what a client's socket sees.

package hub

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"studioworker/protocol"
)

// slowPost sends a POST whose body goes out in pieces of step bytes, one every every, and returns
// the answer, or an error when the hub closed first. It stops sending once an answer came.
func slowPost(t *testing.T, addr, path string, body string, step int, every time.Duration) (*http.Response, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, addr, len(body))
	answered := make(chan struct{})
	go func() {
		// Pacing the sender, not waiting for an event.
		tick := time.NewTicker(every)
		defer tick.Stop()
		for rest := body; rest != ""; {
			n := min(step, len(rest))
			if _, err := io.WriteString(c, rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
			select {
			case <-tick.C:
			case <-answered:
				return
			}
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(waitLimit))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	close(answered)
	return resp, err
}

func TestTrickledBodyIsCutOff(t *testing.T) {
	e := startHub(t, func(c *Config) { c.BodyWindow, c.MinBodyRate = 300*time.Millisecond, 1000 })
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	// 300 bytes per window are needed; this sends 1 byte every 50 ms (20 B/s) of a 5 kB body,
	// which would take 250 s.
	body := `{"name":"slow","pairing_code":"x"` + strings.Repeat(" ", 5000) + `}`
	start := time.Now()
	resp, err := slowPost(t, addr, protocol.PathRegister, body, 1, 50*time.Millisecond)
	if err != nil {
		t.Fatalf("no answer to a trickled body within %s: %v", waitLimit, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), "too slowly") {
		t.Fatalf("answer %d %s, want 408 saying the body was too slow", resp.StatusCode, b)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cut off after %s, want about one window", d)
	}
}

func TestSteadyBodySlowerThanAWindowGetsThrough(t *testing.T) {
	e := startHub(t, func(c *Config) { c.BodyWindow, c.MinBodyRate = 300*time.Millisecond, 1000 })
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	// 100 bytes every 20 ms (5 kB/s) of a 4 kB body: about 0.8 s, more than two windows.
	body := `{"name":"steady","pairing_code":"x"` + strings.Repeat(" ", 4000) + `}`
	resp, err := slowPost(t, addr, protocol.PathRegister, body, 100, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusCreated {
		t.Fatalf("answer %d %s, want 201", resp.StatusCode, b)
	}
}

// TestAnswerNobodyReadsIsCutOff: a client that stops reading a 16 MB result holds its connection
// only until a write has waited WriteTimeout, and the log says so; the old hub kept the write
// waiting for as long as the client liked.
func TestAnswerNobodyReadsIsCutOff(t *testing.T) {
	e := startHub(t, func(c *Config) { c.WriteTimeout = 300 * time.Millisecond })
	creds := e.register("a")
	a := e.connect(creds, hello(llmCaps, nil, nil))
	id := e.leaseImageJob(a)
	png := make([]byte, 16<<20)
	if code, body := e.upload(creds, id, uploadParts{ext: "png", sha: sha(png), file: png}); code != 200 {
		t.Fatalf("upload: %d %s", code, body)
	}
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetReadBuffer(4096) // so that the hub's writes block soon
	fmt.Fprintf(c, "GET /v1/jobs/%s/result HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", id, addr, e.hub.AdminToken())
	// The client reads nothing; the hub's log is the only witness.
	deadline := time.Now().Add(waitLimit)
	for !strings.Contains(e.logs.String(), "request cut off: the client stopped keeping up") {
		if time.Now().After(deadline) {
			t.Fatalf("the hub was still writing to a client that reads nothing after %s", waitLimit)
		}
		waitTick()
	}
	if !strings.Contains(e.logs.String(), "part=answer") {
		t.Errorf("the log line does not say the answer was cut:\n%s", e.logs.String())
	}
}
