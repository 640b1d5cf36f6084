// session.go is the Session: one connection at a time with the hub, reconnecting with backoff
// until credentials are rejected, the id is connected elsewhere or the caller stops it, and the
// few calls the app makes on it (cancel a job, reconnect now, what runs, what waits in the outbox).

package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"studioworker/internal/durable"
	"studioworker/protocol"
)

// uploadWorkers is how many binary results upload at the same time: two, so that one large
// video does not hold back a small image behind it.
const uploadWorkers = 2

var (
	errStopped            = errors.New("the worker is shutting down")
	errReconnectRequested = errors.New("reconnect requested")
)

// Session is the worker's side of the protocol. It is created once per process (New) and driven
// by Run; its other methods are safe to call from any goroutine, before, during or after Run.
type Session struct {
	cfg     Config
	h       Handler
	log     *slog.Logger
	base    *url.URL // server_url, path without trailing slash
	wsURL   string
	host    string
	client  *http.Client
	bo      Backoff
	out     *outbox
	logs    *logShipper
	jobsDir string

	reconnectCh chan struct{} // Reconnect() wakes the backoff wait
	shipMu      sync.Mutex    // keeps log batches on the wire in seq order

	kickMu sync.Mutex
	kickCh chan struct{} // closed and replaced to wake every uploader
	// statusCh asks for a heartbeat now: the worker's state changed (paused, resumed, a slot freed)
	// and the hub should not wait a whole interval to know whether to offer.
	statusCh chan struct{}

	mu     sync.Mutex
	active bool               // Run in progress
	runCtx context.Context    // of the Run in progress
	conn   *conn              // current connection after welcome, nil when none
	gen    uint64             // connection generation counter
	jobs   map[string]*job    // accepted and not yet ended (downloading or running)
	offers map[string]*offerD // offers the Handler is deciding
	wg     sync.WaitGroup     // offer deciders and job runners
}

// New checks the configuration, opens the spool folder and loads the outbox left by an earlier
// process. It returns ErrRegisterFirst without a worker id or token, and an error wrapping
// ErrInsecureURL for plain http:// to a host that is not loopback without AllowInsecure.
func New(cfg Config, h Handler) (*Session, error) {
	if cfg.WorkerID == "" || cfg.AuthToken == "" {
		return nil, ErrRegisterFirst
	}
	if h == nil {
		return nil, errors.New("session: nil Handler")
	}
	cfg = cfg.withDefaults()
	base, err := parseServerURL(cfg.ServerURL, cfg.AllowInsecure)
	if err != nil {
		return nil, err
	}
	if cfg.SpoolDir == "" {
		return nil, errors.New("session: no spool folder configured")
	}
	if err := os.MkdirAll(cfg.SpoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("session: spool folder: %w", err)
	}
	jobsDir := filepath.Join(cfg.SpoolDir, "jobs")
	// Working files of jobs that ran in an earlier process: those runs are over, whatever they
	// finished is in the outbox.
	if err := durable.RemoveAll(jobsDir); err != nil {
		return nil, fmt.Errorf("session: clean job folders: %w", err)
	}
	if err := os.MkdirAll(jobsDir, 0o700); err != nil {
		return nil, fmt.Errorf("session: job folders: %w", err)
	}
	log := cfg.Logger.With("component", "session")
	out, err := openOutbox(filepath.Join(cfg.SpoolDir, "outbox"), log)
	if err != nil {
		return nil, err
	}
	ws := *base
	if ws.Scheme == "https" {
		ws.Scheme = "wss"
	} else {
		ws.Scheme = "ws"
	}
	ws.Path += protocol.PathWorkerWS
	s := &Session{
		cfg: cfg, h: h, log: log, base: base, wsURL: ws.String(), host: base.Host,
		client: cfg.HTTPClient, bo: cfg.Backoff, out: out, logs: newLogShipper(cfg.LogBufferSize),
		jobsDir: jobsDir, reconnectCh: make(chan struct{}, 1), kickCh: make(chan struct{}), statusCh: make(chan struct{}, 1),
		jobs: map[string]*job{}, offers: map[string]*offerD{},
	}
	s.client = s.withRedirectPolicy(cfg.HTTPClient)
	if n := out.len(); n > 0 {
		log.Info("outbox loaded", "entries", n)
	}
	return s, nil
}

// Run connects, serves and reconnects until ctx ends, and returns nil then, after closing the
// connection with 1000 and cancelling the running jobs (what they leave is spooled). Otherwise it
// returns an error wrapping ErrAuthFailed, ErrSuperseded or ErrGaveUp. One Run at a time.
func (s *Session) Run(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	if s.active {
		s.mu.Unlock()
		return errors.New("session: Run is already running")
	}
	s.active, s.runCtx = true, runCtx
	s.mu.Unlock()

	var up sync.WaitGroup
	for range uploadWorkers {
		up.Go(func() { s.uploader(runCtx) })
	}
	err, state := s.loop(runCtx)
	cancel()
	s.wg.Wait() // jobs see runCtx end; what they finish goes to the outbox
	up.Wait()
	s.out.closeStage() // every staged entry is settled once the jobs are done
	s.mu.Lock()
	s.active, s.runCtx = false, nil
	s.mu.Unlock()
	s.emit(ConnEvent{State: state, Server: s.host, Err: err})
	return err
}

// loop is the reconnect policy.
func (s *Session) loop(ctx context.Context) (error, ConnState) {
	attempt := 0
	for {
		select {
		case <-s.reconnectCh: // a request made before this dial is already honoured
		default:
		}
		s.emit(ConnEvent{State: ConnConnecting, Server: s.host, Attempt: attempt})
		o := s.connectAndServe(ctx)
		if ctx.Err() != nil {
			return nil, ConnStopped
		}
		switch {
		case errors.Is(o.err, ErrAuthFailed):
			s.log.Error("credentials rejected: register again", "err", o.err)
			return o.err, ConnAuthFailed
		case errors.Is(o.err, ErrSuperseded):
			s.log.Error("this worker id connected elsewhere: not reconnecting", "err", o.err)
			return o.err, ConnSuperseded
		case errors.Is(o.err, errReconnectRequested):
			attempt = 0
			continue
		}
		if o.healthy {
			attempt = 0
		}
		attempt++
		if n := s.cfg.ReconnectAttempts; n > 0 && attempt > n {
			return fmt.Errorf("%w after %d reconnect attempts: %w", ErrGaveUp, n, o.err), ConnGaveUp
		}
		d := s.bo.Delay(attempt)
		s.log.Warn("disconnected", "err", o.err, "attempt", attempt, "retry_in", d)
		s.emit(ConnEvent{State: ConnReconnecting, Server: s.host, Attempt: attempt, NextRetry: time.Now().Add(d), Err: o.err})
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ConnStopped
		case <-t.C:
		case <-s.reconnectCh:
			t.Stop()
			attempt = 0
		}
	}
}

// Log buffers an entry for the hub. It never blocks; past the buffer's bound entries are dropped
// and counted, and the count is reported as one warn entry in the next batch.
func (s *Session) Log(e protocol.LogEntry) { s.logs.add(e) }

// CancelJob cancels a running job on the user's request: its ctx is cancelled and it is reported
// as a retryable fail. It reports whether the job was running.
func (s *Session) CancelJob(jobID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[jobID]
	if j == nil {
		return false
	}
	j.userCancelled.Store(true)
	j.cancel()
	return true
}

// Reconnect drops the current connection (close 1000) and dials again at once, backoff reset.
func (s *Session) Reconnect() {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		c.requestClose(protocol.CloseNormal, "reconnecting", errReconnectRequested)
	}
	select {
	case s.reconnectCh <- struct{}{}:
	default:
	}
}

// Running returns the ids of the jobs accepted and not yet ended, sorted.
func (s *Session) Running() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runningLocked()
}

func (s *Session) runningLocked() []string {
	ids := make([]string, 0, len(s.jobs))
	for id := range s.jobs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// OutboxLen returns how many results and fails wait for the hub's acknowledgement.
func (s *Session) OutboxLen() int { return s.out.len() }

// leased lists the jobs a heartbeat must renew: the running ones and those whose result waits in
// the outbox (a long upload must not lose its lease); fails are not leases.
func (s *Session) leased() []string {
	s.mu.Lock()
	ids := s.runningLocked()
	s.mu.Unlock()
	for _, id := range s.out.idsWhere(func(it *outboxItem) bool { return it.meta.Type != itemFail }) {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func (s *Session) currentConn() *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

func (s *Session) emit(e Event) { s.h.Event(e) }

// note logs locally and ships the line to the hub as well.
func (s *Session) note(level slog.Level, jobID, msg string, args ...any) {
	if jobID != "" {
		args = append(args, "job_id", jobID)
	}
	s.log.Log(context.Background(), level, msg, args...)
	lv := protocol.LevelInfo
	switch {
	case level >= slog.LevelError:
		lv = protocol.LevelError
	case level >= slog.LevelWarn:
		lv = protocol.LevelWarn
	case level < slog.LevelInfo:
		lv = protocol.LevelDebug
	}
	text := msg
	for i := 0; i+1 < len(args); i += 2 {
		if args[i] == "job_id" {
			continue
		}
		text += fmt.Sprintf(" %v=%v", args[i], args[i+1])
	}
	e := protocol.LogEntry{TS: time.Now().UTC(), Level: lv, Source: "session", Message: text, JobID: jobID}
	s.logs.add(e)
	s.emit(LogEvent{Entry: e})
}

// StatusChanged sends a heartbeat soon (at most one every minHeartbeatGap) instead of at the next
// interval, so the hub learns at once that the worker paused, resumed or freed a slot.
func (s *Session) StatusChanged() {
	select {
	case s.statusCh <- struct{}{}:
	default:
	}
}

// kick wakes every uploader.
func (s *Session) kick() {
	s.kickMu.Lock()
	close(s.kickCh)
	s.kickCh = make(chan struct{})
	s.kickMu.Unlock()
}

func (s *Session) kicked() <-chan struct{} {
	s.kickMu.Lock()
	defer s.kickMu.Unlock()
	return s.kickCh
}

// url returns server_url + path; path must already be escaped (job ids go through
// url.PathEscape).
func (s *Session) url(path string) string {
	return s.base.String() + path
}

func (s *Session) authHeaders(h http.Header) {
	h.Set("Authorization", "Bearer "+s.cfg.AuthToken)
	h.Set(protocol.HeaderWorkerID, s.cfg.WorkerID)
}
