// helpers_test.go: the harness every hub test shares: a real hub on a real listener with a fresh
// database, and a test worker that speaks the protocol over a real WebSocket. It must not reach
// into the hub's state: a test sees only what a worker or an admin client could.

package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"studioworker/protocol"
)

const waitLimit = 15 * time.Second

// lockedBuffer collects log output from several goroutines.
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

type env struct {
	t      *testing.T
	hub    *Hub
	srv    *httptest.Server
	client *Client
	cfg    Config
	logs   *lockedBuffer
}

// startHub runs a real hub on a real listener with a fresh database.
func startHub(t *testing.T, mutate func(*Config)) *env {
	t.Helper()
	dir := t.TempDir()
	logs := &lockedBuffer{}
	cfg := Config{
		OpenRegistration: true,
		AdminToken:       "admin-secret-token",
		Logger:           slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	useTestDB(t, &cfg, dir)
	if mutate != nil {
		mutate(&cfg)
	}
	return startHubWith(t, cfg, logs)
}

func startHubWith(t *testing.T, cfg Config, logs *lockedBuffer) *env {
	t.Helper()
	h, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	srv := httptest.NewServer(h.Handler())
	e := &env{t: t, hub: h, srv: srv, cfg: cfg, logs: logs,
		client: &Client{BaseURL: srv.URL, AdminToken: h.AdminToken(), HTTP: srv.Client()}}
	t.Cleanup(e.stop)
	return e
}

func (e *env) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.hub.Close(ctx); err != nil {
		e.t.Errorf("Close: %v", err)
	}
	e.srv.Close()
}

func (e *env) register(name string) protocol.RegisterResponse {
	e.t.Helper()
	creds, err := e.client.Register(context.Background(), name, "any")
	if err != nil {
		e.t.Fatalf("Register: %v", err)
	}
	return creds
}

func (e *env) submit(req protocol.JobRequest) string {
	e.t.Helper()
	id, err := e.client.Submit(context.Background(), req)
	if err != nil {
		e.t.Fatalf("Submit: %v", err)
	}
	return id
}

func llmJob(model string) protocol.JobRequest {
	return protocol.JobRequest{Kind: protocol.KindLLM, Model: model, Input: protocol.Object(`{"prompt":"hi"}`)}
}

func imageJob(model string) protocol.JobRequest {
	return protocol.JobRequest{Kind: protocol.KindImage, Model: model, Input: protocol.Object(`{"prompt":"a cat","width":64,"height":64}`)}
}

// waitJob polls the job API until ok accepts the job.
func (e *env) waitJob(id string, what string, ok func(protocol.JobInfo) bool) protocol.JobInfo {
	e.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		info, err := e.client.Job(context.Background(), id)
		if err != nil {
			e.t.Fatalf("Job(%s): %v", id, err)
		}
		if ok(info) {
			return info
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("job %s never became %s; last: %+v", id, what, info)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for an event
	}
}

func statusIs(s protocol.JobStatus) func(protocol.JobInfo) bool {
	return func(i protocol.JobInfo) bool { return i.Status == s }
}

// caps describes a worker serving the given models per kind.
func caps(slots int, vram float64, models map[protocol.Kind][]string) protocol.Capabilities {
	c := protocol.Capabilities{MachineName: "test", AgentVersion: "test", Engine: "fake-test-engine",
		VRAMTotalGB: vram, VRAMThresholdGB: vram, AutoAccept: true, MaxConcurrentJobs: slots,
		SupportedModelsPerKind: protocol.ModelsPerKind{}}
	for k, ms := range models {
		c.TaskKinds = append(c.TaskKinds, k)
		c.SupportedModels = append(c.SupportedModels, ms...)
		c.SupportedModelsPerKind[k] = ms
	}
	return c
}

func hello(c protocol.Capabilities, inFlight, outbox []string) protocol.Hello {
	return protocol.Hello{Protocol: protocol.Version, AgentVersion: "test", Capabilities: c, InFlight: inFlight, Outbox: outbox}
}

var llmCaps = caps(1, 24, map[protocol.Kind][]string{protocol.KindLLM: {"m1"}, protocol.KindImage: {"sd"}})

// testWorker is a minimal worker written for these tests: a real coder/websocket client speaking
// the protocol package, with no policy of its own.
type testWorker struct {
	t      *testing.T
	creds  protocol.RegisterResponse
	ws     *websocket.Conn
	frames chan protocol.Frame
	done   chan struct{}
	err    error
}

func (e *env) wsURL() string {
	return "ws" + strings.TrimPrefix(e.srv.URL, "http") + protocol.PathWorkerWS
}

func (e *env) dial(creds protocol.RegisterResponse) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	hdr := http.Header{}
	hdr.Set("Authorization", "Bearer "+creds.AuthToken)
	hdr.Set(protocol.HeaderWorkerID, creds.WorkerID)
	return websocket.Dial(ctx, e.wsURL(), &websocket.DialOptions{HTTPHeader: hdr, Subprotocols: []string{protocol.Subprotocol}})
}

// connect dials, sends hello and waits for welcome.
func (e *env) connect(creds protocol.RegisterResponse, h protocol.Hello) *testWorker {
	e.t.Helper()
	w := e.connectRaw(creds)
	w.send(h)
	wel := expect[protocol.Welcome](w)
	if wel.WorkerID != creds.WorkerID {
		e.t.Fatalf("welcome for %q, want %q", wel.WorkerID, creds.WorkerID)
	}
	return w
}

func (e *env) connectRaw(creds protocol.RegisterResponse) *testWorker {
	e.t.Helper()
	ws, resp, err := e.dial(creds)
	if err != nil {
		e.t.Fatalf("dial: %v (resp %v)", err, resp)
	}
	if ws.Subprotocol() != protocol.Subprotocol {
		e.t.Fatalf("subprotocol %q", ws.Subprotocol())
	}
	ws.SetReadLimit(protocol.MaxFrameBytes)
	w := &testWorker{t: e.t, creds: creds, ws: ws, frames: make(chan protocol.Frame, 1024), done: make(chan struct{})}
	go w.readLoop()
	e.t.Cleanup(w.close)
	return w
}

func (w *testWorker) readLoop() {
	defer close(w.done)
	for {
		_, data, err := w.ws.Read(context.Background())
		if err != nil {
			w.err = err
			return
		}
		f, err := protocol.Decode(data)
		if err != nil {
			w.t.Errorf("hub sent a frame the codec refuses: %v: %s", err, data)
			continue
		}
		w.frames <- f
	}
}

func (w *testWorker) close() {
	w.ws.Close(websocket.StatusNormalClosure, "")
	<-w.done
}

// drop ends the connection abruptly, like a network loss.
func (w *testWorker) drop() {
	w.ws.CloseNow()
	<-w.done
}

func (w *testWorker) send(f protocol.Frame) {
	w.t.Helper()
	b, err := protocol.Encode(f)
	if err != nil {
		w.t.Fatalf("encode: %v", err)
	}
	w.sendRaw(b)
}

func (w *testWorker) sendRaw(b []byte) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := w.ws.Write(ctx, websocket.MessageText, b); err != nil {
		w.t.Fatalf("write: %v", err)
	}
}

// next returns the next frame other than heartbeat_ack.
func (w *testWorker) next() protocol.Frame {
	w.t.Helper()
	timeout := time.After(waitLimit)
	for {
		select {
		case f := <-w.frames:
			if _, ack := f.(protocol.HeartbeatAck); ack {
				continue
			}
			return f
		case <-w.done:
			// Frames read before the close are still in the channel.
			select {
			case f := <-w.frames:
				return f
			default:
			}
			w.t.Fatalf("connection closed while waiting for a frame: %v", w.err)
		case <-timeout:
			w.t.Fatalf("no frame within %s", waitLimit)
		}
	}
}

func expect[T protocol.Frame](w *testWorker) T {
	w.t.Helper()
	f := w.next()
	v, ok := f.(T)
	if !ok {
		var zero T
		w.t.Fatalf("got %T %+v, want %T", f, f, zero)
	}
	return v
}

// heartbeat sends a heartbeat and waits for its ack.
func (w *testWorker) heartbeat(st protocol.Status) {
	w.t.Helper()
	w.send(protocol.Heartbeat{Status: st})
	select {
	case f := <-w.frames:
		if _, ok := f.(protocol.HeartbeatAck); !ok {
			w.t.Fatalf("got %T %+v, want heartbeat_ack", f, f)
		}
	case <-w.done:
		w.t.Fatalf("closed: %v", w.err)
	case <-time.After(waitLimit):
		w.t.Fatal("no heartbeat_ack")
	}
}

// lease has w take job id (offer, accept) and waits until the hub shows it running.
func (e *env) lease(w *testWorker, id string) {
	e.t.Helper()
	w.offerFor(id)
	w.send(protocol.Accept{JobID: id})
	e.waitJob(id, "running", statusIs(protocol.JobRunning))
}

// waitMetric polls GET /metrics until it has the line.
func (e *env) waitMetric(line string) {
	e.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		resp, err := e.srv.Client().Get(e.srv.URL + protocol.PathMetrics)
		if err != nil {
			e.t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), line+"\n") {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("metrics never had %q:\n%s", line, b)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

// closeStatus waits for the hub to close the connection and returns the close code.
func (w *testWorker) closeStatus() websocket.StatusCode {
	w.t.Helper()
	select {
	case <-w.done:
		return websocket.CloseStatus(w.err)
	case <-time.After(waitLimit):
		w.t.Fatal("the hub did not close the connection")
	}
	return 0
}

// offerFor accepts the next frame as an offer of job id.
func (w *testWorker) offerFor(id string) protocol.Claim {
	w.t.Helper()
	o := expect[protocol.Offer](w)
	if o.Claim.JobID != id {
		w.t.Fatalf("offer for %s, want %s", o.Claim.JobID, id)
	}
	return o.Claim
}

func (w *testWorker) complete(id string, result string) protocol.CompleteAck {
	w.t.Helper()
	w.send(protocol.CompleteJSON{JobID: id, Result: protocol.Object(result)})
	return expect[protocol.CompleteAck](w)
}

func apiStatus(t *testing.T, err error) int {
	t.Helper()
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want an *APIError, got %v", err)
	}
	return ae.StatusCode
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newServer(h *Hub) *httptest.Server { return httptest.NewServer(h.Handler()) }

// waitTick is the polling interval of loops that wait for a file to go.
func waitTick() { time.Sleep(5 * time.Millisecond) }
