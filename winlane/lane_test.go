// TestWindowsLane runs the packaged exe under Wine through what a creator on Windows does: the
// version, the demo, registering with a Linux hub, jobs of both result types, the control channel,
// a kill with a result spooled, and the window. One prefix serves every step, in order, as one
// machine would.
package winlane

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"studioworker/protocol"
)

func TestWindowsLane(t *testing.T) {
	if testing.Short() {
		t.Skip("the Windows lane runs the real exe under Wine; skipped with -short")
	}
	laneStart := time.Now()
	w := newWine(t)
	hubBin := buildHub(t, w.root, w.dir)
	h := newHub(t, hubBin, filepath.Join(w.dir, "hub"))
	cfgDir := filepath.Join(w.appData(), "studio-worker")

	t.Run("version", func(t *testing.T) {
		code, out := w.run(time.Minute, "version")
		want := regexp.MustCompile(`^studio-worker \d+\.\d+\.\d+ \(commit [0-9a-f]{12}(-dirty)?\), protocol v1\s*$`)
		if code != 0 || !want.MatchString(lastLine(out)) {
			t.Fatalf("version: exit %d, output %q", code, out)
		}
	})

	t.Run("demo", func(t *testing.T) {
		start := time.Now()
		code, out := w.run(3*time.Minute, "demo", "--headless")
		t.Logf("demo --headless under Wine: %.1f s", time.Since(start).Seconds())
		if code != 0 || !strings.Contains(out, "All 12 jobs ended as expected.") {
			t.Fatalf("demo --headless: exit %d\n%s", code, out)
		}
	})

	if !t.Run("register", func(t *testing.T) {
		code, out := w.run(time.Minute, "register", "--server", h.url(), "--pairing-code", h.pairingCode(), "--name", "Wine worker")
		if code != 0 {
			t.Fatalf("register: exit %d\n%s", code, out)
		}
		var cfg struct {
			ServerURL string `json:"server_url"`
			WorkerID  string `json:"worker_id"`
		}
		readJSON(t, filepath.Join(cfgDir, "config.json"), &cfg)
		if cfg.ServerURL != h.url() || cfg.WorkerID == "" {
			t.Fatalf("config under %%AppData%%: %+v", cfg)
		}
	}) {
		t.FailNow()
	}

	run := w.startRun(t)
	h.waitConnected(t)

	t.Run("jobs", func(t *testing.T) {
		llm := h.submit(t, protocol.JobRequest{Kind: protocol.KindLLM, Model: "synthetic", Input: protocol.Object(`{"prompt":"hello from Wine"}`)})
		img := h.submit(t, protocol.JobRequest{Kind: protocol.KindImage, Model: "synthetic", Input: protocol.Object(`{"prompt":"a lighthouse","width":64,"height":64}`)})
		if info := h.wait(t, llm); info.Status != protocol.JobCompleted || !strings.Contains(string(info.Result), `"text"`) {
			t.Fatalf("llm job: %+v\nworker:\n%s", info, run.out())
		}
		if info := h.wait(t, img); info.Status != protocol.JobCompleted {
			t.Fatalf("image job: %+v\nworker:\n%s", info, run.out())
		}
		h.wantPNG(t, img)
	})

	t.Run("control", func(t *testing.T) {
		st := w.status(t)
		if !st.Registered || st.Conn.State != "connected" {
			t.Fatalf("status --json: registered %v, conn %q", st.Registered, st.Conn.State)
		}
		wantUnder(t, "config", st.ConfigPath, `C:\users\`+winUser+`\AppData\Roaming\studio-worker\`)
		wantUnder(t, "log file", st.LogFile, `C:\users\`+winUser+`\AppData\Local\studio-worker\`)
		if fi, err := os.Stat(filepath.Join(w.localAppData(), "studio-worker", "worker.log")); err != nil || fi.Size() == 0 {
			t.Fatalf("log file under %%LocalAppData%%: %v", err)
		}
		if _, err := os.Stat(filepath.Join(cfgDir, "control.json")); err != nil {
			t.Fatalf("control endpoint file: %v", err)
		}
		for _, step := range []struct {
			cmd    string
			paused bool
		}{{"pause", true}, {"resume", false}} {
			if code, out := w.run(time.Minute, step.cmd); code != 0 {
				t.Fatalf("%s: exit %d\n%s", step.cmd, code, out)
			}
			if st := w.status(t); st.Paused != step.paused {
				t.Fatalf("after %s: paused = %v", step.cmd, st.Paused)
			}
		}
	})

	t.Run("killed with a result spooled", func(t *testing.T) {
		id := h.submit(t, protocol.JobRequest{Kind: protocol.KindImage, Model: "synthetic",
			Input: protocol.Object(`{"prompt":"spooled","width":64,"height":64,"duration_ms":3000}`)})
		h.waitStatus(t, id, protocol.JobRunning)
		h.kill() // the result cannot be delivered: it stays in the outbox
		outbox := filepath.Join(cfgDir, "spool", "outbox")
		waitFor(t, 60*time.Second, "the result spooled in "+outbox, func() bool { return len(metaFiles(outbox)) == 1 })
		w.killAll() // TerminateProcess for every process of the prefix: no goodbye, no drain
		run.wait()
		if n := len(metaFiles(outbox)); n != 1 {
			t.Fatalf("after the kill the outbox holds %d entries, want 1", n)
		}
		h.start()
		run = w.startRun(t)
		info := h.wait(t, id)
		if info.Status != protocol.JobCompleted || info.Attempts != 0 {
			t.Fatalf("after restart: %+v (want completed with no new attempt)\nworker:\n%s", info, run.out())
		}
		h.wantPNG(t, id)
		if n := h.resultFiles(t, id); n != 1 {
			t.Fatalf("the hub stored %d result files for %s, want exactly 1", n, id)
		}
		waitFor(t, 30*time.Second, "the outbox to empty after the ack", func() bool { return len(metaFiles(outbox)) == 0 })
	})

	w.killAll()
	run.wait()

	t.Run("autostart", w.autostart)
	t.Run("service", func(t *testing.T) { w.service(t, h) })
	t.Run("window", func(t *testing.T) { w.window(t, h) })

	t.Logf("Windows lane: %.1f s in all", time.Since(laneStart).Seconds())
}

// runProc is a long-running `studio-worker.exe run`.
type runProc struct {
	cmd  *exec.Cmd
	out  func() string
	done chan struct{}
}

func (w *wine) startRun(t *testing.T) *runProc {
	t.Helper()
	r := &runProc{done: make(chan struct{})}
	r.cmd = w.worker(context.Background(), "run")
	r.out = w.outputFile(r.cmd)
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		w.killAll()
		r.wait()
	})
	return r
}

// wait returns once the process has ended; the caller ended it (killAll).
func (r *runProc) wait() {
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

// status is `status --json`, decoded.
func (w *wine) status(t *testing.T) laneState {
	t.Helper()
	code, out := w.run(time.Minute, "status", "--json")
	if code != 0 {
		t.Fatalf("status --json: exit %d\n%s", code, out)
	}
	var st laneState
	if i := strings.IndexByte(out, '{'); i < 0 || firstJSON(out[i:], &st) != nil {
		t.Fatalf("status --json is not JSON:\n%s", out)
	}
	return st
}

// laneState is the part of `status --json` the lane reads.
type laneState struct {
	Registered bool `json:"registered"`
	Paused     bool `json:"paused"`
	Conn       struct {
		State string `json:"state"`
	} `json:"conn"`
	ConfigPath string `json:"config_path"`
	LogFile    string `json:"log_file"`
	Counters   struct {
		Done     int            `json:"done"`
		Declined map[string]int `json:"declined"`
	} `json:"counters"`
	Mode       protocol.WorkerState `json:"mode"`
	ModeReason string               `json:"mode_reason"`
	VRAM       struct {
		Basis string `json:"basis"`
	} `json:"vram"`
	YieldedTo string `json:"yielded_to"`
	GPU       struct {
		Cards []struct {
			ProcessMemoryUnknown bool `json:"process_memory_unknown"`
		} `json:"cards"`
	} `json:"gpu"`
}

func wantUnder(t *testing.T, what, path, prefix string) {
	t.Helper()
	if !strings.HasPrefix(strings.ToLower(path), strings.ToLower(prefix)) {
		t.Fatalf("%s is %q, want it under %q", what, path, prefix)
	}
}

// metaFiles lists the outbox's committed entries (one metadata file each).
func metaFiles(dir string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	return m
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// waitFor polls cond (files and processes of another OS have no event to wait on) until it holds
// or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// firstJSON decodes the first JSON value of out and ignores what follows: the exe's output file
// is shared with Wine's own messages ("wine client error:…: sendmsg: Socket operation on
// non-socket" was seen after a status), which are not the exe's answer.
func firstJSON(out string, v any) error {
	return json.NewDecoder(strings.NewReader(out)).Decode(v)
}
