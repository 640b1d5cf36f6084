// hubproc.go: the hub a figure runs against, built once and run as a process of its own.

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"studioworker/hub"
	"studioworker/protocol"
)

// buildHub builds cmd/studio-hub into dir: the figures run the real binary as its own process.
func buildHub(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "studio-hub")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/studio-hub")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/studio-hub: %w\n%s", err, out)
	}
	return bin, nil
}

// moduleRoot finds the folder of go.mod from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run the bench from the repository")
		}
		dir = parent
	}
}

// startFigureHub makes the figure's folder and starts a hub process in it on a free loopback address.
func startFigureHub(ctx context.Context, e *env, figure string) (dir string, h *hubProc, err error) {
	dir, err = e.dir(figure)
	if err != nil {
		return "", nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return "", nil, err
	}
	h, err = startHub(ctx, e, filepath.Join(dir, "hub"), addr)
	if err != nil {
		return "", nil, err
	}
	return dir, h, nil
}

// freeAddr returns a loopback address with a port that was free a moment ago. The hub needs a
// fixed address so a restarted hub is found where the workers left it.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// hubProc is a studio-hub process.
type hubProc struct {
	bin, dir, addr, token string
	cmd                   *exec.Cmd
	http                  *http.Client
	exited                chan struct{}
	logFile               *os.File
	heapProf              string // with --pprof: where the hub writes its heap profile when asked
}

const benchAdminToken = "bench-admin-token-not-secret"

// startHub runs `studio-hub serve` on addr with its database in dir (created on first start,
// reused on a restart) and waits until /healthz answers.
func startHub(ctx context.Context, e *env, dir, addr string) (*hubProc, error) {
	return startHubOn(ctx, e, dir, addr, []string{"--db", filepath.Join(dir, "hub.db")})
}

// startHubOn is startHub with the database flags given (a PostgreSQL URL and a --data folder for a
// replica); the hub's log is still dir/hub.log.
func startHubOn(ctx context.Context, e *env, dir, addr string, db []string) (*hubProc, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(filepath.Join(dir, "hub.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	h := &hubProc{bin: e.hubBin, dir: dir, addr: addr, token: benchAdminToken, http: e.http, exited: make(chan struct{}), logFile: lf}
	h.cmd = exec.Command(h.bin, append(append([]string{"serve", "--addr", addr}, db...),
		"--open-registration", "--admin-token", h.token,
		// The figures register thousands of workers from this one address.
		"--register-addr-burst", "1000000", "--register-rate", "1000000")...)
	if e.pprof != "" {
		e.hubs++
		base := filepath.Join(e.pprof, fmt.Sprintf("hub-%d-%s", e.hubs, filepath.Base(filepath.Dir(dir))))
		h.heapProf = base + ".heap.pprof"
		h.cmd = exec.Command(e.self, append(append([]string{hubModeArg, "--addr", addr}, db...),
			"--admin-token", h.token, "--cpuprofile", base+".cpu.pprof", "--heapprofile", h.heapProf)...)
	}
	h.cmd.Stdout, h.cmd.Stderr = lf, lf
	if err := h.cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start studio-hub: %w", err)
	}
	go func() {
		_ = h.cmd.Wait()
		close(h.exited)
	}()
	if err := h.waitHealthy(ctx, 30*time.Second); err != nil {
		h.kill()
		return nil, err
	}
	return h, nil
}

func (h *hubProc) URL() string { return "http://" + h.addr }

func (h *hubProc) pid() int { return h.cmd.Process.Pid }

func (h *hubProc) client() *hub.Client {
	return &hub.Client{BaseURL: h.URL(), AdminToken: h.token, HTTP: h.http}
}

func (h *hubProc) waitHealthy(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.URL()+protocol.PathHealthz, nil)
		resp, err := h.http.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-h.exited:
			return fmt.Errorf("studio-hub exited at start (see %s)", h.logFile.Name())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("studio-hub not healthy after %v: %v", timeout, err)
		}
	}
}

// kill ends the hub with SIGKILL, as a crash would, and waits for it.
func (h *hubProc) kill() {
	_ = h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.exited
	h.logFile.Close()
}

// stop asks the hub to shut down (SIGTERM) and kills it if it has not after 15 s.
func (h *hubProc) stop() {
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(15 * time.Second):
		_ = h.cmd.Process.Signal(syscall.SIGKILL)
		<-h.exited
	}
	h.logFile.Close()
}

// metrics scrapes /metrics into name{labels} → value.
func (h *hubProc) metrics(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL()+protocol.PathMetrics, nil)
	if err != nil {
		return nil, err
	}
	resp, err := h.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the Prometheus text format's samples (comments skipped).
func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("metrics line %q: no value", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// jobsDone is how many jobs the hub counts as completed, failed and cancelled.
func jobsDone(m map[string]float64) (completed, ended int) {
	c := int(m[`studio_hub_jobs{status="completed"}`])
	return c, c + int(m[`studio_hub_jobs{status="failed"}`]) + int(m[`studio_hub_jobs{status="cancelled"}`])
}

// waitEnded polls the hub's metrics until at least n jobs ended, and returns when it saw them.
func (h *hubProc) waitEnded(ctx context.Context, n int, every, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		m, err := h.metrics(ctx)
		now := time.Now()
		if err == nil {
			if _, ended := jobsDone(m); ended >= n {
				return now, nil
			}
		}
		if now.After(deadline) {
			_, ended := jobsDone(m)
			return now, fmt.Errorf("%d of %d jobs ended after %v (last scrape error: %v)", ended, n, timeout, err)
		}
		select {
		case <-ctx.Done():
			return now, ctx.Err()
		case <-time.After(every):
		}
	}
}

// newHTTPClient keeps enough idle connections for parallel submitters, so a run does not churn
// through loopback ports.
func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     30 * time.Second,
	}}
}
