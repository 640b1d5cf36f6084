// The Linux side of the lane: the real studio-hub binary on a loopback port, restartable at the
// same address with the same database, and a typed client of its job API.
package winlane

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"studioworker/hub"
	"studioworker/protocol"
)

const laneAdminToken = "winlane-admin-token"

// hubProc is a studio-hub serve process; start and kill may be called again to restart it.
type hubProc struct {
	t    *testing.T
	bin  string
	dir  string
	addr string
	cmd  *exec.Cmd
	log  *lockedBuffer
	api  *hub.Client
}

func buildHub(t *testing.T, root, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "studio-hub")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/studio-hub")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build studio-hub: %v\n%s", err, out)
	}
	return bin
}

func newHub(t *testing.T, bin, dir string) *hubProc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h := &hubProc{t: t, bin: bin, dir: dir, addr: addr}
	h.api = &hub.Client{BaseURL: h.url(), AdminToken: laneAdminToken}
	t.Cleanup(h.kill)
	h.start()
	return h
}

func (h *hubProc) url() string { return "http://" + h.addr }

func (h *hubProc) start() {
	h.t.Helper()
	h.log = &lockedBuffer{}
	h.cmd = exec.Command(h.bin, "serve", "--addr", h.addr, "--db", filepath.Join(h.dir, "hub.db"),
		"--admin-token", laneAdminToken, "--offer-ttl", "10s")
	h.cmd.Stdout, h.cmd.Stderr = h.log, h.log
	if err := h.cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(h.url() + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("studio-hub did not answer /healthz within 20 s: %v\n%s", err, h.log)
		}
		time.Sleep(50 * time.Millisecond) // polling a port: there is no event to wait on
	}
}

// kill ends the hub as a crash would (SIGKILL); start brings it back on the same database.
func (h *hubProc) kill() {
	if h.cmd == nil || h.cmd.Process == nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGKILL)
	_ = h.cmd.Wait()
	h.cmd = nil
}

// pairingCode asks the hub for a single-use code.
func (h *hubProc) pairingCode() string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code, err := h.api.PairingCode(ctx)
	if err != nil {
		h.t.Fatalf("pairing code: %v", err)
	}
	return code
}

func (h *hubProc) String() string { return fmt.Sprintf("studio-hub at %s", h.addr) }

func (h *hubProc) ctx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitConnected waits until a worker has a session with the hub.
func (h *hubProc) waitConnected(t *testing.T) {
	t.Helper()
	waitFor(t, 90*time.Second, "the worker under Wine to connect to "+h.String(), func() bool {
		ws, err := h.api.Workers(h.ctx(t, 5*time.Second))
		for _, w := range ws {
			if w.Connected {
				return true
			}
		}
		_ = err // not up yet
		return false
	})
}

func (h *hubProc) submit(t *testing.T, req protocol.JobRequest) string {
	t.Helper()
	id, err := h.api.Submit(h.ctx(t, 10*time.Second), req)
	if err != nil {
		t.Fatalf("submit %s: %v", req.Kind, err)
	}
	return id
}

// wait waits for a job's final status.
func (h *hubProc) wait(t *testing.T, id string) protocol.JobInfo {
	t.Helper()
	info, err := h.api.WaitJob(h.ctx(t, 2*time.Minute), id)
	if err != nil {
		t.Fatalf("job %s: %v\nhub log:\n%s", id, err, h.log)
	}
	return info
}

func (h *hubProc) waitStatus(t *testing.T, id string, want protocol.JobStatus) {
	t.Helper()
	waitFor(t, time.Minute, "job "+id+" to be "+string(want), func() bool {
		info, err := h.api.Job(h.ctx(t, 5*time.Second), id)
		return err == nil && info.Status == want
	})
}

// wantPNG fetches a job's stored result and checks that it is a PNG.
func (h *hubProc) wantPNG(t *testing.T, id string) {
	t.Helper()
	var b bytes.Buffer
	if _, err := h.api.Result(h.ctx(t, 10*time.Second), id, &b); err != nil {
		t.Fatalf("result of %s: %v", id, err)
	}
	if !bytes.HasPrefix(b.Bytes(), []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("result of %s is not a PNG (%d bytes)", id, b.Len())
	}
}

// resultFiles counts the files the hub stored for a job's result: exactly one means the result
// was taken once, however often it was sent.
func (h *hubProc) resultFiles(t *testing.T, id string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(h.dir, "data", "results", id+".*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

// lockedBuffer collects a process's output while tests read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
