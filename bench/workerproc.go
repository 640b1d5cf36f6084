// workerproc.go: a worker run as a process of its own (the bench binary in worker mode, or the
// real binary), with its log lines feeding a probe.

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"studioworker/app"
	"studioworker/hub"
)

// workerModeArg makes the bench binary run as a headless worker (`studio-worker run`): a worker
// whose memory and CPU are measured must be a process of its own. The real studio-worker binary
// also links the Fyne window, which `run` never opens.
const workerModeArg = "__worker"

// runWorkerMode is the bench binary in worker mode: `--cpuprofile FILE` first (with --pprof), then
// the arguments of `studio-worker run`.
func runWorkerMode(args []string) int {
	if len(args) >= 2 && args[0] == "--cpuprofile" {
		f, err := os.Create(args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench worker:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench worker:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
		args = args[2:]
	}
	cli := &app.CLI{Stdout: os.Stdout, Stderr: os.Stderr, Build: app.BuildInfo{Version: "bench", Commit: "bench"}}
	return cli.Run(append([]string{"run"}, args...))
}

// workerProc is a headless worker process whose log lines (text, on stderr) feed a probe.
type workerProc struct {
	cmd    *exec.Cmd
	probe  *probe
	exited chan struct{}
	readWG sync.WaitGroup

	mu   sync.Mutex
	tail []string // the last lines of its stderr, for diagnostics
}

const maxTail = 40

// startWorkerProc registers a worker with the hub and runs it as a process against serverURL.
func startWorkerProc(ctx context.Context, e *env, dir string, hc *hub.Client, serverURL, name string) (*workerProc, error) {
	path, err := writeWorkerConfig(ctx, dir, hc, serverURL, name)
	if err != nil {
		return nil, err
	}
	args := []string{workerModeArg}
	if e.pprof != "" {
		args = append(args, "--cpuprofile", filepath.Join(e.pprof, "worker-"+name+".cpu.pprof"))
	}
	cmd := exec.Command(e.self, append(args, "--config", path)...)
	// Its log file and caches go to the run's folder, not the user's.
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	return runWorkerProc(ctx, cmd)
}

// writeWorkerConfig registers a worker named name with the hub and writes its config, pointed at
// serverURL, to dir/config.json (with dir/cache beside it); it returns the config's path.
func writeWorkerConfig(ctx context.Context, dir string, hc *hub.Client, serverURL, name string) (string, error) {
	reg, err := hc.Register(ctx, name, "any")
	if err != nil {
		return "", fmt.Errorf("register %s: %w", name, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "cache"), 0o700); err != nil {
		return "", err
	}
	cfg := workerConfig(serverURL, reg.WorkerID, reg.AuthToken, name, 1)
	path := filepath.Join(dir, "config.json")
	if err := app.SaveConfig(path, cfg); err != nil {
		return "", err
	}
	return path, nil
}

// runWorkerProc starts cmd, a worker that logs slog text lines on stderr (the bench's worker
// mode, or the real studio-worker binary), and returns once its session is connected.
func runWorkerProc(ctx context.Context, cmd *exec.Cmd) (*workerProc, error) {
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = io.Discard
	p := &workerProc{cmd: cmd, probe: newProbe(), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker process: %w", err)
	}
	p.readWG.Add(1)
	go p.readLog(stderr)
	go func() {
		p.readWG.Wait() // Wait closes the pipe: read it to the end first
		_ = cmd.Wait()
		close(p.exited)
	}()
	if err := p.probe.waitConnected(ctx, 1, 30*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("worker process: %w; its last lines:\n%s", err, p.lastLines())
	}
	return p, nil
}

func (p *workerProc) pid() int { return p.cmd.Process.Pid }

func (p *workerProc) readLog(r io.Reader) {
	defer p.readWG.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		if len(p.tail) == maxTail {
			p.tail = p.tail[1:]
		}
		p.tail = append(p.tail, line)
		p.mu.Unlock()
		if r, source, ok := parseLogLine(line); ok {
			p.probe.record(r, source)
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

func (p *workerProc) lastLines() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// stop ends the worker the way a service manager does (SIGTERM), and kills it after 15 s.
func (p *workerProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
}

// parseLogLine reads one line of slog's text handler (key=value pairs, values quoted with Go
// syntax when needed) into a record for the probe.
func parseLogLine(line string) (slog.Record, string, bool) {
	kv, ok := logfmt(line)
	if !ok {
		return slog.Record{}, "", false
	}
	t, err := time.Parse(time.RFC3339Nano, kv["time"])
	if err != nil {
		return slog.Record{}, "", false
	}
	var level slog.Level
	if level.UnmarshalText([]byte(kv["level"])) != nil {
		return slog.Record{}, "", false
	}
	r := slog.NewRecord(t, level, kv["msg"], 0)
	for _, k := range []string{"job_id", "seconds", "took", "bytes"} {
		if v, ok := kv[k]; ok {
			r.AddAttrs(slog.String(k, v))
		}
	}
	return r, kv["source"], true
}

// logfmt splits key=value pairs; a quoted value is unquoted. The first occurrence of a key wins.
func logfmt(line string) (map[string]string, bool) {
	out := map[string]string{}
	s := line
	for {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			return out, len(out) > 0
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || strings.ContainsAny(s[:eq], " \"") {
			return nil, false
		}
		key, rest := s[:eq], s[eq+1:]
		var val string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return nil, false
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else if sp := strings.IndexByte(rest, ' '); sp >= 0 {
			val, rest = rest[:sp], rest[sp:]
		} else {
			val, rest = rest, ""
		}
		if _, dup := out[key]; !dup {
			out[key] = val
		}
		s = rest
	}
}
