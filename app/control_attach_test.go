// Tests of a client that follows a worker over the control channel: it attaches again by itself
// when the worker restarts, and passes on what the worker's stream says it dropped. Real control
// servers and clients over real sockets; a worker restart is a new server, on a new port with a new
// token where the endpoint has them.
package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"studioworker/protocol"
)

// attachDeadline is how long a test waits for one event it expects.
const attachDeadline = 10 * time.Second

// controlChannel is one way a worker offers its control channel, and the way a client finds it.
type controlChannel struct {
	name string
	// listen takes the channel for a start of the worker whose config is at path.
	listen func(t *testing.T, path string) (net.Listener, string)
	// dial makes a client that finds the worker as the window does.
	dial func(ctx context.Context, path string) (*Client, error)
}

// controlChannels are the endpoint of this OS, and the endpoint file with a loopback port and a
// token that change at every start (what Windows does), so both run on every OS.
func controlChannels() []controlChannel {
	endpointFile := func(path string) string { return filepath.Join(filepath.Dir(path), "test-endpoint.json") }
	return []controlChannel{
		{
			name: "this OS's endpoint",
			listen: func(t *testing.T, path string) (net.Listener, string) {
				t.Helper()
				ln, token, err := ListenControl(path)
				if err != nil {
					t.Fatal(err)
				}
				return ln, token
			},
			dial: DialControl,
		},
		{
			name: "endpoint file, new port and token at each start",
			listen: func(t *testing.T, path string) (net.Listener, string) {
				t.Helper()
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				b := make([]byte, 16)
				_, _ = rand.Read(b)
				token := hex.EncodeToString(b)
				data, _ := json.Marshal(controlEndpoint{Addr: ln.Addr().String(), Token: token})
				if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(endpointFile(path), data, 0o600); err != nil {
					t.Fatal(err)
				}
				return ln, token
			},
			dial: func(ctx context.Context, path string) (*Client, error) {
				return dialControl(ctx, func() (controlAddr, error) { return endpointAddr(endpointFile(path)) })
			},
		},
	}
}

// runningWorker is one start of a worker: a real unregistered Worker behind a real ControlServer.
type runningWorker struct {
	worker *Worker
	token  string
	stop   func()
}

// startWorker starts a worker named name on ch; src, when not nil, serves the state in place of
// the worker's own Observers. stop ends it as a worker's exit does, closing its streams.
func startWorker(t *testing.T, ch controlChannel, path, name string, src func(*Worker) Source) *runningWorker {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Name = name
	cfg.GPU.Simulated = &SimulatedGPU{Name: "sim", VRAMGB: 8}
	w, err := NewWorker(Options{ConfigPath: path, Config: cfg, KeepRunning: true})
	if err != nil {
		t.Fatal(err)
	}
	var source Source = w
	if src != nil {
		source = src(w)
	}
	ln, token := ch.listen(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = NewControlServer(w, source, token, nil).Serve(ctx, ln)
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return &runningWorker{worker: w, token: token, stop: stop}
}

// followingClient dials the worker as the window does and follows it, retrying quickly.
func followingClient(t *testing.T, ch controlChannel, path string, retryMin, retryMax time.Duration) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), attachDeadline)
	defer cancel()
	cl, err := ch.dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	cl.retryMin, cl.retryMax = retryMin, retryMax
	if err := cl.Follow(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// nextState reads sub's states until one satisfies ok, failing after attachDeadline.
func nextState(t *testing.T, sub *Subscription, what string, ok func(State) bool) State {
	t.Helper()
	deadline := time.NewTimer(attachDeadline)
	defer deadline.Stop()
	var last State
	for {
		select {
		case s, open := <-sub.States():
			if !open {
				t.Fatalf("the subscription closed while waiting for %s", what)
			}
			if ok(s) {
				return s
			}
			last = s
		case <-deadline.C:
			t.Fatalf("no state with %s within %s; last: name=%q conn=%+v", what, attachDeadline, last.Name, last.Conn)
		}
	}
}

func TestControlClientReattachesAfterTheWorkerRestarts(t *testing.T) {
	for _, ch := range controlChannels() {
		t.Run(ch.name, func(t *testing.T) { checkReattach(t, ch, t.TempDir()) })
	}
}

// checkReattach restarts the worker a client follows, in dir, and checks that the client attaches
// to the new start by itself, saying meanwhile that it is out of reach.
func checkReattach(t *testing.T, ch controlChannel, dir string) {
	t.Helper()
	path := filepath.Join(dir, "worker", "config.json")
	first := startWorker(t, ch, path, "first start", nil)
	cl := followingClient(t, ch, path, 5*time.Millisecond, 50*time.Millisecond)
	snap, sub := cl.Subscribe()
	defer sub.Close()
	if snap.Name != "first start" {
		t.Fatalf("attached to %q, want the first start", snap.Name)
	}

	first.stop()
	gone := nextState(t, sub, "the worker out of reach", func(s State) bool { return s.Conn.State == connReattaching })
	if gone.Conn.LastError == "" || gone.Conn.Since.IsZero() || gone.Conn.Attempt < 1 {
		t.Errorf("while reattaching the state says %+v, want why, since when and the attempt", gone.Conn)
	}
	if gone.Name != "first start" {
		t.Errorf("while reattaching the state is %q, want what the worker last said", gone.Name)
	}

	second := startWorker(t, ch, path, "second start", nil)
	if first.token != "" && second.token == first.token {
		t.Fatal("the restarted worker kept its token: the test would not show that it is read again")
	}
	back := nextState(t, sub, "the restarted worker's state", func(s State) bool { return s.Name == "second start" })
	if back.Conn.State == connReattaching {
		t.Errorf("attached again, yet the state still says %+v", back.Conn)
	}

	// The Controller goes to the restarted worker too, with its token.
	ctx, cancel := context.WithTimeout(context.Background(), attachDeadline)
	defer cancel()
	if st, err := cl.State(ctx); err != nil || st.Name != "second start" {
		t.Fatalf("State after the restart: %q, %v", st.Name, err)
	}
	if err := cl.Pause(ctx); err != nil {
		t.Fatalf("Pause after the restart: %v", err)
	}
	nextState(t, sub, "the pause from the restarted worker", func(s State) bool { return s.Paused && s.Name == "second start" })
	if !second.worker.Observers().Snapshot().Paused {
		t.Error("the pause did not reach the restarted worker")
	}
}

// TestControlReconnectWhileDetachedTriesAtOnce: with the next try an hour away, the window's
// "Reconnect now" (Controller.Reconnect) attaches at once.
func TestControlReconnectWhileDetachedTriesAtOnce(t *testing.T) {
	ch := controlChannels()[0]
	path := filepath.Join(t.TempDir(), "worker", "config.json")
	first := startWorker(t, ch, path, "first start", nil)
	cl := followingClient(t, ch, path, time.Hour, time.Hour)
	_, sub := cl.Subscribe()
	defer sub.Close()
	first.stop()
	gone := nextState(t, sub, "the worker out of reach", func(s State) bool { return s.Conn.State == connReattaching })
	if wait := time.Until(gone.Conn.NextRetry); wait < 30*time.Minute {
		t.Fatalf("next try in %s, want about an hour", wait)
	}
	startWorker(t, ch, path, "second start", nil)
	if err := cl.Reconnect(context.Background()); err != nil {
		t.Fatalf("Reconnect while detached: %v", err)
	}
	nextState(t, sub, "the restarted worker's state", func(s State) bool { return s.Name == "second start" })
}

// TestControlCloseStopsAClientThatIsReattaching: Close returns while the client waits to try
// again, and its subscribers' channels close.
func TestControlCloseStopsAClientThatIsReattaching(t *testing.T) {
	ch := controlChannels()[0]
	path := filepath.Join(t.TempDir(), "worker", "config.json")
	first := startWorker(t, ch, path, "first start", nil)
	cl := followingClient(t, ch, path, time.Hour, time.Hour)
	_, sub := cl.Subscribe()
	first.stop()
	nextState(t, sub, "the worker out of reach", func(s State) bool { return s.Conn.State == connReattaching })
	closed := make(chan struct{})
	go func() { cl.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(attachDeadline):
		t.Fatal("Close did not return while the client waited to attach again")
	}
	sub.Close()
}

// slowReaderSource is a worker's Observers whose first subscriber starts as a reader too slow
// for it: flood notices are published to it before the control server reads any, more than its
// buffer holds, so it has lost exactly flood-noticeBuffer of them. A real slow reader on a socket
// cannot be made to lose an exact number.
type slowReaderSource struct {
	obs   *Observers
	mu    sync.Mutex
	flood int
}

func (s *slowReaderSource) Subscribe() (State, *Subscription) {
	snap, sub := s.obs.Subscribe()
	s.mu.Lock()
	n := s.flood
	s.flood = 0
	s.mu.Unlock()
	for i := range n {
		s.obs.Notify(Notice{Kind: NoticeLog, Level: protocol.LevelInfo, Text: fmt.Sprintf("flood %d", i)})
	}
	return snap, sub
}

// TestControlLostNoticesReachTheSubscribers: the notices a worker's stream dropped are counted in
// the Lost of the client's own subscribers, and nothing goes missing uncounted.
func TestControlLostNoticesReachTheSubscribers(t *testing.T) {
	const flood = noticeBuffer + 44
	ch := controlChannels()[0]
	path := filepath.Join(t.TempDir(), "worker", "config.json")
	first := startWorker(t, ch, path, "first start", nil)
	cl := followingClient(t, ch, path, 5*time.Millisecond, 50*time.Millisecond)
	_, sub := cl.Subscribe()
	defer sub.Close()
	// The subscriber must be there before the stream that drops notices opens: a worker restart.
	first.stop()
	startWorker(t, ch, path, "second start", func(w *Worker) Source {
		return &slowReaderSource{obs: w.Observers(), flood: flood}
	})

	var received, lost uint64
	var texts []string
	deadline := time.NewTimer(attachDeadline)
	defer deadline.Stop()
	for last := fmt.Sprintf("flood %d", flood-1); !strings.Contains(strings.Join(texts, "\n"), last); {
		select {
		case n := <-sub.Notices():
			received++
			lost += sub.Lost()
			texts = append(texts, n.Text)
		case <-deadline.C:
			t.Fatalf("the last flood notice never came; received %d, lost %d", received, lost)
		}
	}
	lost += sub.Lost()
	if lost < flood-noticeBuffer {
		t.Errorf("the subscriber was told of %d lost notices, want at least the %d the worker dropped", lost, flood-noticeBuffer)
	}
	// Every notice is received or counted: the flood, and the client's own two about the restart.
	if want := uint64(flood + 2); received+lost != want {
		t.Errorf("received %d + lost %d = %d notices, want %d", received, lost, received+lost, want)
	}
	// With nothing lost here, the client's own word that it lost the worker came too.
	said := slices.ContainsFunc(texts, func(s string) bool { return strings.HasPrefix(s, "Lost the connection to the worker") })
	if lost == flood-noticeBuffer && !said {
		t.Errorf("the client did not say it lost the worker: %q", texts[:min(len(texts), 3)])
	}
}

func TestReattachDelay(t *testing.T) {
	const lo, hi = 250 * time.Millisecond, 5 * time.Second
	for _, tc := range []struct {
		attempt int
		want    time.Duration
	}{
		{1, 250 * time.Millisecond},
		{2, 500 * time.Millisecond},
		{3, time.Second},
		{5, 4 * time.Second},
		{6, 5 * time.Second},
		{1000, 5 * time.Second}, // no overflow however long the worker stays away
	} {
		if got := reattachDelay(tc.attempt, lo, hi); got != tc.want {
			t.Errorf("attempt %d: %s, want %s", tc.attempt, got, tc.want)
		}
	}
}

func TestSSEReader(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream string
		want   []sseEvent
		err    error
	}{
		{"one event", "event: state\ndata: {}\n\n", []sseEvent{{"state", []byte("{}")}}, io.EOF},
		{"keepalives are skipped", ": keepalive\n\nevent: lost\ndata: 3\n\n: keepalive\n\n", []sseEvent{{"lost", []byte("3")}}, io.EOF},
		{"data lines join with a newline", "event: notice\ndata: a\ndata: b\n\n", []sseEvent{{"notice", []byte("a\nb")}}, io.EOF},
		{"an event cut short is not returned", "event: state\ndata: {\"na", nil, io.EOF},
		{"empty", "", nil, io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newSSEReader(strings.NewReader(tc.stream))
			for i, want := range tc.want {
				got, err := r.next()
				if err != nil || got.event != want.event || string(got.data) != string(want.data) {
					t.Fatalf("event %d: %q %q, %v; want %q %q", i, got.event, got.data, err, want.event, want.data)
				}
			}
			if _, err := r.next(); !errors.Is(err, tc.err) {
				t.Fatalf("after the events: %v, want %v", err, tc.err)
			}
		})
	}
}
