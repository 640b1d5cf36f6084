package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"studioworker/hub"
	"studioworker/internal/pgtest"
	"studioworker/protocol"
)

// The crash test runs this test binary as the hub: with the variable set, TestMain is main.
const execArgsEnv = "STUDIO_HUB_TEST_EXEC_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(execArgsEnv); args != "" {
		os.Exit(run(context.Background(), strings.Split(args, "\x1f"), os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

const waitLimit = 20 * time.Second

type hubProcess struct {
	cmd    *exec.Cmd
	url    string
	done   chan struct{} // closed when the process has exited; err is set then
	err    error
	stderr *bytes.Buffer // read only after done
}

// startHubProcess runs `studio-hub serve` as a child process and waits until it listens.
func startHubProcess(t *testing.T, args ...string) *hubProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), execArgsEnv+"="+strings.Join(append([]string{"serve", "--addr", "127.0.0.1:0"}, args...), "\x1f"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &bytes.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &hubProcess{cmd: cmd, done: make(chan struct{}), stderr: stderr}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				urls <- u
			}
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(waitLimit):
		}
	})
	select {
	case p.url = <-urls:
	case <-p.done:
		t.Fatalf("hub exited: %v\n%s", p.err, stderr.String())
	case <-time.After(waitLimit):
		t.Fatalf("hub did not start\n%s", stderr.String())
	}
	return p
}

func (p *hubProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(waitLimit):
		t.Fatal("the hub did not die")
	}
}

// worker is the smallest worker that can take a job: dial, hello, read frames.
type worker struct {
	t      *testing.T
	creds  protocol.RegisterResponse
	ws     *websocket.Conn
	frames chan protocol.Frame
}

func connect(t *testing.T, base string, creds protocol.RegisterResponse, models protocol.ModelsPerKind, inFlight []string) *worker {
	t.Helper()
	return connectHello(t, base, creds, protocol.Hello{Protocol: 1, AgentVersion: "crash-test", InFlight: inFlight, Capabilities: protocol.Capabilities{
		VRAMThresholdGB: 24, MaxConcurrentJobs: 4, SupportedModelsPerKind: models}})
}

// connectHello is connect with the whole hello given, for a worker that lists its outbox too.
func connectHello(t *testing.T, base string, creds protocol.RegisterResponse, hello protocol.Hello) *worker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	hdr := http.Header{}
	hdr.Set("Authorization", "Bearer "+creds.AuthToken)
	hdr.Set(protocol.HeaderWorkerID, creds.WorkerID)
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+protocol.PathWorkerWS,
		&websocket.DialOptions{HTTPHeader: hdr, Subprotocols: []string{protocol.Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{t: t, creds: creds, ws: ws, frames: make(chan protocol.Frame, 64)}
	go func() {
		defer close(w.frames)
		for {
			_, data, err := ws.Read(context.Background())
			if err != nil {
				return
			}
			if f, err := protocol.Decode(data); err == nil {
				w.frames <- f
			}
		}
	}()
	t.Cleanup(func() { ws.CloseNow() })
	w.send(hello)
	if _, ok := w.next().(protocol.Welcome); !ok {
		t.Fatal("no welcome")
	}
	return w
}

func (w *worker) send(f protocol.Frame) {
	w.t.Helper()
	b, _ := protocol.Encode(f)
	if err := w.ws.Write(context.Background(), websocket.MessageText, b); err != nil {
		w.t.Fatal(err)
	}
}

func (w *worker) next() protocol.Frame {
	w.t.Helper()
	select {
	case f, ok := <-w.frames:
		if !ok {
			w.t.Fatal("connection closed")
		}
		return f
	case <-time.After(waitLimit):
		w.t.Fatal("no frame")
	}
	return nil
}

// take waits for the offer of id and accepts it.
func (w *worker) take(id string) {
	w.t.Helper()
	o, ok := w.next().(protocol.Offer)
	if !ok || o.Claim.JobID != id {
		w.t.Fatalf("want the offer of %s, got %+v", id, o)
	}
	w.send(protocol.Accept{JobID: id})
}

func waitStatus(t *testing.T, c *hub.Client, id string, s protocol.JobStatus) protocol.JobInfo {
	t.Helper()
	return waitStatusWithin(t, c, id, s, waitLimit)
}

// uploadRequest streams a multipart upload from body; the caller writes the file part.
func uploadRequest(base string, creds protocol.RegisterResponse, id string, body io.Reader, contentType string) *http.Request {
	req, _ := http.NewRequest("POST", base+protocol.ResultPath(id), body)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+creds.AuthToken)
	req.Header.Set(protocol.HeaderWorkerID, creds.WorkerID)
	return req
}

func upload(t *testing.T, base string, creds protocol.RegisterResponse, id string, data []byte) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("ext", "png")
	sum := sha256.Sum256(data)
	mw.WriteField("sha256", hex.EncodeToString(sum[:]))
	fw, _ := mw.CreateFormFile("file", "r.png")
	fw.Write(data)
	mw.Close()
	resp, err := http.DefaultClient.Do(uploadRequest(base, creds, id, &body, mw.FormDataContentType()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("upload: %d", resp.StatusCode)
	}
}

// TestSIGKILLLosesNothingAcknowledged kills the hub in the middle of an upload with jobs queued,
// restarts it on the same database, and checks that every acknowledged result and every queued
// job is there and that no partial file was left.
// TestSIGKILLLosesNothingAcknowledged, on each store: SQLite's file, and a real PostgreSQL whose
// session with the killed hub ends with it (so the restarted hub takes the database's lock).
func TestSIGKILLLosesNothingAcknowledged(t *testing.T) {
	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			dir := t.TempDir()
			db := []string{"--db", filepath.Join(dir, "hub.db")}
			if store == "postgres" {
				db = []string{"--db", pgtest.Start(t).NewDatabase(t), "--data", filepath.Join(dir, "data"), "--replica-dead-after", "1s"}
			}
			sigkillLosesNothing(t, dir, db)
		})
	}
}

func sigkillLosesNothing(t *testing.T, dir string, db []string) {
	args := append(db, "--open-registration", "--admin-token", "crash-admin", "--log-format", "json")
	p := startHubProcess(t, args...)
	c := &hub.Client{BaseURL: p.url, AdminToken: "crash-admin"}
	ctx := context.Background()
	creds, err := c.Register(ctx, "crash-worker", "any")
	if err != nil {
		t.Fatal(err)
	}
	models := protocol.ModelsPerKind{protocol.KindImage: {"sd"}, protocol.KindLLM: {"m1"}}
	w := connect(t, p.url, creds, models, nil)
	imageInput := protocol.Object(`{"prompt":"x","width":8,"height":8}`)

	// An acknowledged binary result.
	stored, _ := c.Submit(ctx, protocol.JobRequest{Kind: protocol.KindImage, Model: "sd", Input: imageInput})
	w.take(stored)
	waitStatus(t, c, stored, protocol.JobRunning)
	png := bytes.Repeat([]byte("finished image "), 4096)
	upload(t, p.url, creds, stored, png)
	// An acknowledged JSON result.
	text, _ := c.Submit(ctx, protocol.JobRequest{Kind: protocol.KindLLM, Model: "m1", Input: protocol.Object(`{"prompt":"x"}`)})
	w.take(text)
	w.send(protocol.CompleteJSON{JobID: text, Result: protocol.Object(`{"text":"kept"}`)})
	for {
		if a, ok := w.next().(protocol.CompleteAck); ok && a.Status == protocol.AckStored {
			break
		}
	}
	// Queued jobs nobody can take.
	var queued []string
	for range 5 {
		id, err := c.Submit(ctx, protocol.JobRequest{Kind: protocol.KindLLM, Model: "nobody-serves-this", Input: protocol.Object(`{"prompt":"x"}`)})
		if err != nil {
			t.Fatal(err)
		}
		queued = append(queued, id)
	}
	// An upload cut by the kill.
	partial, _ := c.Submit(ctx, protocol.JobRequest{Kind: protocol.KindImage, Model: "sd", Input: imageInput})
	w.send(protocol.ReadyForMore{})
	w.take(partial)
	waitStatus(t, c, partial, protocol.JobRunning)
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	uploadDone := make(chan struct{})
	go func() {
		defer close(uploadDone)
		resp, err := http.DefaultClient.Do(uploadRequest(p.url, creds, partial, pr, mw.FormDataContentType()))
		if err == nil {
			resp.Body.Close()
			t.Errorf("the cut upload got an answer: %d", resp.StatusCode)
		}
	}()
	mw.WriteField("ext", "png")
	mw.WriteField("sha256", strings.Repeat("0", 64))
	fw, _ := mw.CreateFormFile("file", "r.png")
	// More than the hub's copy holds in memory (hub/files_stage.go: 4 buffers of 1 MiB), so some
	// of it is on disk at the kill.
	fw.Write(bytes.Repeat([]byte("half an image "), 8<<20/14))
	tmp := filepath.Join(dir, "data", "tmp")
	deadline := time.Now().Add(waitLimit)
	for !hasBytes(tmp) {
		if time.Now().After(deadline) {
			t.Fatal("the partial upload never reached the hub's tmp folder")
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	p.kill(t)
	pw.CloseWithError(fmt.Errorf("hub killed"))
	<-uploadDone

	// Restart on the same database.
	p2 := startHubProcess(t, args...)
	c2 := &hub.Client{BaseURL: p2.url, AdminToken: "crash-admin"}
	if info := waitStatus(t, c2, stored, protocol.JobCompleted); info.ResultURL == "" {
		t.Fatalf("stored: %+v", info)
	}
	var got bytes.Buffer
	if _, err := c2.Result(ctx, stored, &got); err != nil || !bytes.Equal(got.Bytes(), png) {
		t.Fatalf("stored result: %d bytes, %v", got.Len(), err)
	}
	if info := waitStatus(t, c2, text, protocol.JobCompleted); string(info.Result) != `{"text":"kept"}` {
		t.Fatalf("text: %+v", info)
	}
	for _, id := range queued {
		waitStatus(t, c2, id, protocol.JobQueued)
	}
	// The cut job keeps its lease for the grace period, with no result.
	if info := waitStatus(t, c2, partial, protocol.JobRunning); info.WorkerID != creds.WorkerID || info.ResultURL != "" {
		t.Fatalf("partial: %+v", info)
	}
	// On PostgreSQL each replica stages in tmp/<replica>: the killed one's folder goes once the
	// replicas call it dead (--replica-dead-after), and the new one's holds nothing.
	deadline = time.Now().Add(waitLimit)
	for names := filesUnder(t, tmp); len(names) != 0 || (len(db) > 2 && len(dirNames(t, tmp)) > 1); names = filesUnder(t, tmp) {
		if time.Now().After(deadline) {
			t.Fatalf("partial files left: %v (folders %v)", names, dirNames(t, tmp))
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	if names := dirNames(t, filepath.Join(dir, "data", "results")); len(names) != 1 || !strings.HasPrefix(names[0], stored+".") {
		t.Fatalf("results: %v", names)
	}
	// The worker comes back and finishes the cut job.
	w.ws.CloseNow()
	connect(t, p2.url, creds, models, []string{partial})
	upload(t, p2.url, creds, partial, []byte("the whole image"))
	waitStatus(t, c2, partial, protocol.JobCompleted)
	if err := p2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p2.done:
		if p2.err != nil {
			t.Fatalf("graceful stop: %v\n%s", p2.err, p2.stderr)
		}
	case <-time.After(waitLimit):
		t.Fatal("the hub did not stop on SIGTERM")
	}
}

func hasBytes(dir string) bool {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Size() > 0 {
			return true
		}
	}
	return false
}

// filesUnder lists the files (not folders) anywhere under dir.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"2GiB", 2 << 30, true}, {"500MiB", 500 << 20, true}, {"10KB", 10000, true}, {"1024", 1024, true},
		{"0", 0, false}, {"-1GiB", 0, false}, {"lots", 0, false},
	} {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v", tc.in, got, err)
		}
	}
}

// A hub without a retry cool-off would let a dead backend use up a job's attempts in
// milliseconds, so --retry-cooloff has no "off": 0 and below are usage errors.
func TestServeRefusesNoRetryCoolOff(t *testing.T) {
	// A cancelled context: were the flag taken, serve would stop at once instead of serving.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, v := range []string{"0", "-1s"} {
		var stderr bytes.Buffer
		db := filepath.Join(t.TempDir(), "hub.db")
		args := []string{"serve", "--addr", "127.0.0.1:0", "--db", db, "--retry-cooloff", v}
		if rc := run(ctx, args, io.Discard, &stderr); rc != 2 {
			t.Errorf("--retry-cooloff %s: exit %d, want 2 (%s)", v, rc, stderr.String())
		}
		if !strings.Contains(stderr.String(), "--retry-cooloff must be positive") {
			t.Errorf("--retry-cooloff %s: stderr %q", v, stderr.String())
		}
		if _, err := os.Stat(db); err == nil {
			t.Errorf("--retry-cooloff %s: a database was created", v)
		}
	}
}

// The registration limits and the pairing TTL have no "off" either: 0 on the command line is
// refused rather than quietly taking the default.
func TestServeRefusesNonPositiveRegistrationLimits(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, args := range [][]string{
		{"--register-addr-burst", "0"}, {"--register-addr-refill", "0s"},
		{"--register-rate", "-1"}, {"--register-max-addrs", "0"}, {"--pairing-ttl", "0s"},
	} {
		var stderr bytes.Buffer
		db := filepath.Join(t.TempDir(), "hub.db")
		if rc := run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0", "--db", db}, args...), io.Discard, &stderr); rc != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, rc, stderr.String())
		}
		if !strings.Contains(stderr.String(), "must be positive") {
			t.Errorf("%v: stderr %q", args, stderr.String())
		}
	}
}

func TestCommandsTalkToARunningHub(t *testing.T) {
	dir := t.TempDir()
	p := startHubProcess(t, "--db", filepath.Join(dir, "hub.db"))
	hubFlags := []string{"--hub", p.url, "--db", filepath.Join(dir, "hub.db")}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), append([]string{"pair"}, hubFlags...), &out, &errOut); code != 0 || len(strings.TrimSpace(out.String())) != 11 {
		t.Fatalf("pair: %d %q %q", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := run(context.Background(), append([]string{"submit", "--kind", "llm", "--model", "m1", "--input", `{"prompt":"hi"}`}, hubFlags...), &out, &errOut); code != 0 {
		t.Fatalf("submit: %d %q", code, errOut.String())
	}
	id := strings.TrimSpace(out.String())
	out.Reset()
	if code := run(context.Background(), append([]string{"jobs"}, hubFlags...), &out, &errOut); code != 0 || !strings.Contains(out.String(), id) {
		t.Fatalf("jobs: %d %q %q", code, out.String(), errOut.String())
	}
	if code := run(context.Background(), []string{"submit", "--kind", "llm", "--model", "m1", "--input", `{"prompt":"hi"}`, "--hub", p.url, "--admin-token", "wrong"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "401") {
		t.Fatalf("wrong token: %d %q", code, errOut.String())
	}
	if code := run(context.Background(), []string{"serve"}, &out, &errOut); code != 2 {
		t.Fatalf("serve without --db: %d", code)
	}
}
