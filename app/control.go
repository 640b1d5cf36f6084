package app

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"studioworker/engine"
	"studioworker/protocol"
)

// The control socket serves the state stream and the Controller to local clients: the CLI
// (`status`, `pause`, ...), and a window attached to a worker that runs as a service. It is HTTP
// with JSON bodies; /v1/events is a Server-Sent Events stream of states and notices.

// ErrAlreadyRunning: another worker already serves the control socket of this config folder.
var ErrAlreadyRunning = errors.New("a Studio Worker is already running for this configuration")

// ErrNoWorker: nothing serves the control socket.
var ErrNoWorker = errors.New("no Studio Worker is running for this configuration")

const controlKeepalive = 15 * time.Second

// controlError is the JSON body of an error answer.
type controlError struct {
	Error  string            `json:"error"`
	Code   string            `json:"code"` // invalid, no_such_offer, no_such_job, error
	Fields map[string]string `json:"fields,omitempty"`
}

// ControlServer serves a Controller and a Source on a listener.
type ControlServer struct {
	ctl   Controller
	src   Source
	token string
	log   *slog.Logger
	srv   *http.Server
}

// NewControlServer builds the server; token, when not empty, must come in the X-Control-Token
// header (the Windows loopback endpoint).
func NewControlServer(ctl Controller, src Source, token string, logger *slog.Logger) *ControlServer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cs := &ControlServer{ctl: ctl, src: src, token: token, log: logger}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/state", cs.state)
	mux.HandleFunc("GET /v1/events", cs.events)
	mux.HandleFunc("POST /v1/pause", cs.simple(ctl.Pause))
	mux.HandleFunc("POST /v1/resume", cs.simple(ctl.Resume))
	mux.HandleFunc("POST /v1/drain", cs.simple(ctl.Drain))
	mux.HandleFunc("POST /v1/reconnect", cs.simple(ctl.Reconnect))
	mux.HandleFunc("POST /v1/auto-accept", cs.autoAccept)
	mux.HandleFunc("POST /v1/offers/{id}/accept", cs.withID(ctl.AcceptOffer))
	mux.HandleFunc("POST /v1/offers/{id}/decline", cs.withID(ctl.DeclineOffer))
	mux.HandleFunc("POST /v1/jobs/{id}/cancel", cs.withID(ctl.CancelJob))
	mux.HandleFunc("POST /v1/register", cs.register)
	mux.HandleFunc("GET /v1/settings", cs.getSettings)
	mux.HandleFunc("PUT /v1/settings", cs.putSettings)
	mux.HandleFunc("POST /v1/test-backend", cs.testBackend)
	mux.HandleFunc("POST /v1/service", cs.service)
	mux.HandleFunc("GET /v1/detect", cs.detect)
	mux.HandleFunc("POST /v1/demo/start", cs.simple(ctl.StartDemo))
	mux.HandleFunc("POST /v1/demo/stop", cs.simple(ctl.StopDemo))
	cs.srv = &http.Server{Handler: cs.auth(mux), ReadHeaderTimeout: 10 * time.Second}
	return cs
}

// Serve serves until ctx ends, then closes the listener and open streams.
func (cs *ControlServer) Serve(ctx context.Context, ln net.Listener) error {
	cs.srv.BaseContext = func(net.Listener) context.Context { return ctx }
	errc := make(chan error, 1)
	go func() { errc <- cs.srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = cs.srv.Shutdown(sctx)
		<-errc
		return nil
	case err := <-errc:
		return err
	}
}

func (cs *ControlServer) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cs.token != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Control-Token")), []byte(cs.token)) != 1 {
			writeJSON(w, http.StatusUnauthorized, controlError{Error: "wrong or missing control token", Code: "error"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (cs *ControlServer) fail(w http.ResponseWriter, err error) {
	var ve *ValidationError
	switch {
	case errors.As(err, &ve):
		writeJSON(w, http.StatusUnprocessableEntity, controlError{Error: err.Error(), Code: "invalid", Fields: ve.Fields})
	case errors.Is(err, ErrNoSuchOffer):
		writeJSON(w, http.StatusNotFound, controlError{Error: err.Error(), Code: "no_such_offer"})
	case errors.Is(err, ErrNoSuchJob):
		writeJSON(w, http.StatusNotFound, controlError{Error: err.Error(), Code: "no_such_job"})
	default:
		writeJSON(w, http.StatusInternalServerError, controlError{Error: err.Error(), Code: "error"})
	}
}

func (cs *ControlServer) simple(fn func(context.Context) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := fn(r.Context()); err != nil {
			cs.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	}
}

func (cs *ControlServer) withID(fn func(context.Context, string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := fn(r.Context(), r.PathValue("id")); err != nil {
			cs.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	}
}

// decodeBody reads a small JSON body strictly.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &ValidationError{Fields: map[string]string{"body": err.Error()}}
	}
	return nil
}

func (cs *ControlServer) autoAccept(w http.ResponseWriter, r *http.Request) {
	var body struct {
		On *bool `json:"on"`
	}
	if err := decodeBody(r, &body); err != nil {
		cs.fail(w, err)
		return
	}
	if body.On == nil {
		cs.fail(w, &ValidationError{Fields: map[string]string{"on": "required: true or false"}})
		return
	}
	cs.simple(func(ctx context.Context) error { return cs.ctl.SetAutoAccept(ctx, *body.On) })(w, r)
}

func (cs *ControlServer) register(w http.ResponseWriter, r *http.Request) {
	var req RegisterRequest
	if err := decodeBody(r, &req); err != nil {
		cs.fail(w, err)
		return
	}
	cs.simple(func(ctx context.Context) error { return cs.ctl.Register(ctx, req) })(w, r)
}

func (cs *ControlServer) getSettings(w http.ResponseWriter, r *http.Request) {
	s, err := cs.ctl.Settings(r.Context())
	if err != nil {
		cs.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (cs *ControlServer) putSettings(w http.ResponseWriter, r *http.Request) {
	var s Settings
	if err := decodeBody(r, &s); err != nil {
		cs.fail(w, err)
		return
	}
	cs.simple(func(ctx context.Context) error { return cs.ctl.SaveSettings(ctx, s) })(w, r)
}

type testBackendRequest struct {
	Kind    protocol.Kind        `json:"kind"`
	Backend engine.BackendConfig `json:"backend"`
}

func (cs *ControlServer) testBackend(w http.ResponseWriter, r *http.Request) {
	var req testBackendRequest
	if err := decodeBody(r, &req); err != nil {
		cs.fail(w, err)
		return
	}
	models, err := cs.ctl.TestBackend(r.Context(), req.Kind, req.Backend)
	if err != nil {
		writeJSON(w, http.StatusOK, map[string]any{"models": []string{}, "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": models})
}

func (cs *ControlServer) service(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Install bool `json:"install"`
	}
	if err := decodeBody(r, &body); err != nil {
		cs.fail(w, err)
		return
	}
	status, err := cs.ctl.SetService(r.Context(), body.Install)
	if err != nil {
		cs.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": status})
}

func (cs *ControlServer) state(w http.ResponseWriter, r *http.Request) {
	snap, sub := cs.src.Subscribe()
	sub.Close()
	writeJSON(w, http.StatusOK, snap)
}

// events streams the current state, then every state and notice, as Server-Sent Events.
func (cs *ControlServer) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	snap, sub := cs.src.Subscribe()
	defer sub.Close()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	send := func(event string, v any) error {
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data); err != nil {
			return err
		}
		flusher.Flush()
		return nil
	}
	if send("state", snap) != nil {
		return
	}
	keep := time.NewTicker(controlKeepalive)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case s, ok := <-sub.States():
			if !ok || send("state", s) != nil {
				return
			}
		case n, ok := <-sub.Notices():
			if !ok {
				return
			}
			if lost := sub.Lost(); lost > 0 {
				if send("lost", lost) != nil {
					return
				}
			}
			if send("notice", n) != nil {
				return
			}
		case <-keep.C:
			if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil {
				return
			}
			flusher.Flush()
		}
	}
}

// ---- client ----

// Client talks to a running worker's control socket. It implements Controller and Source; its
// Subscribe follows the worker's event stream until Close.
type Client struct {
	http  *http.Client
	base  string
	token string
	log   *slog.Logger

	mu     sync.Mutex
	obs    *Observers
	cancel context.CancelFunc
	done   chan struct{}
}

func newClient(dial func(ctx context.Context) (net.Conn, error), base, token string) *Client {
	tr := &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		MaxIdleConnsPerHost: 4,
	}
	return &Client{http: &http.Client{Transport: tr}, base: base, token: token, log: slog.New(slog.DiscardHandler)}
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("X-Control-Token", c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoWorker, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var ce controlError
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ce)
		switch ce.Code {
		case "invalid":
			return &ValidationError{Fields: ce.Fields}
		case "no_such_offer":
			return fmt.Errorf("%w (%s)", ErrNoSuchOffer, ce.Error)
		case "no_such_job":
			return fmt.Errorf("%w (%s)", ErrNoSuchJob, ce.Error)
		}
		if ce.Error == "" {
			ce.Error = resp.Status
		}
		return fmt.Errorf("worker: %s", ce.Error)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// State returns the worker's current state.
func (c *Client) State(ctx context.Context) (State, error) {
	var s State
	err := c.do(ctx, http.MethodGet, "/v1/state", nil, &s)
	return s, err
}

func (c *Client) Pause(ctx context.Context) error  { return c.do(ctx, "POST", "/v1/pause", nil, nil) }
func (c *Client) Resume(ctx context.Context) error { return c.do(ctx, "POST", "/v1/resume", nil, nil) }
func (c *Client) Drain(ctx context.Context) error  { return c.do(ctx, "POST", "/v1/drain", nil, nil) }
func (c *Client) Reconnect(ctx context.Context) error {
	return c.do(ctx, "POST", "/v1/reconnect", nil, nil)
}
func (c *Client) SetAutoAccept(ctx context.Context, on bool) error {
	return c.do(ctx, "POST", "/v1/auto-accept", map[string]bool{"on": on}, nil)
}
func (c *Client) AcceptOffer(ctx context.Context, id string) error {
	return c.do(ctx, "POST", "/v1/offers/"+id+"/accept", nil, nil)
}
func (c *Client) DeclineOffer(ctx context.Context, id string) error {
	return c.do(ctx, "POST", "/v1/offers/"+id+"/decline", nil, nil)
}
func (c *Client) CancelJob(ctx context.Context, id string) error {
	return c.do(ctx, "POST", "/v1/jobs/"+id+"/cancel", nil, nil)
}
func (c *Client) Register(ctx context.Context, req RegisterRequest) error {
	return c.do(ctx, "POST", "/v1/register", req, nil)
}
func (c *Client) Settings(ctx context.Context) (Settings, error) {
	var s Settings
	err := c.do(ctx, "GET", "/v1/settings", nil, &s)
	return s, err
}
func (c *Client) SaveSettings(ctx context.Context, s Settings) error {
	return c.do(ctx, "PUT", "/v1/settings", s, nil)
}
func (c *Client) TestBackend(ctx context.Context, kind protocol.Kind, b engine.BackendConfig) ([]string, error) {
	var out struct {
		Models []string `json:"models"`
		Error  string   `json:"error"`
	}
	if err := c.do(ctx, "POST", "/v1/test-backend", testBackendRequest{Kind: kind, Backend: b}, &out); err != nil {
		return nil, err
	}
	if out.Error != "" {
		return nil, errors.New(out.Error)
	}
	return out.Models, nil
}
func (c *Client) SetService(ctx context.Context, install bool) (string, error) {
	var out struct {
		Status string `json:"status"`
	}
	err := c.do(ctx, "POST", "/v1/service", map[string]bool{"install": install}, &out)
	return out.Status, err
}

// Follow starts mirroring the worker's state into a local Observers (for Subscribe) and returns
// once the first state has arrived. It stops on Close or when ctx ends.
func (c *Client) Follow(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/events", nil)
	if err != nil {
		cancel()
		return err
	}
	if c.token != "" {
		req.Header.Set("X-Control-Token", c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		cancel()
		return fmt.Errorf("%w: %v", ErrNoWorker, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return fmt.Errorf("worker event stream: %s", resp.Status)
	}
	events := newSSEReader(resp.Body)
	first, err := events.next()
	if err != nil || first.event != "state" {
		resp.Body.Close()
		cancel()
		return fmt.Errorf("worker event stream: no initial state: %v", err)
	}
	var st State
	if err := json.Unmarshal(first.data, &st); err != nil {
		resp.Body.Close()
		cancel()
		return fmt.Errorf("worker event stream: %w", err)
	}
	obs := NewObservers(st)
	done := make(chan struct{})
	c.mu.Lock()
	c.obs, c.cancel, c.done = obs, cancel, done
	c.mu.Unlock()
	go func() {
		defer close(done)
		defer resp.Body.Close()
		for {
			ev, err := events.next()
			if err != nil {
				obs.Update(func(s *State) {
					s.Conn = ConnInfo{State: "offline", LastError: "lost the connection to the worker: " + err.Error()}
				})
				return
			}
			switch ev.event {
			case "state":
				var s State
				if json.Unmarshal(ev.data, &s) == nil {
					obs.Update(func(cur *State) { seq := cur.Seq; *cur = s; cur.Seq = seq })
				}
			case "notice":
				var n Notice
				if json.Unmarshal(ev.data, &n) == nil {
					obs.Notify(n)
				}
			}
		}
	}()
	return nil
}

// Subscribe implements Source; Follow must have been called.
func (c *Client) Subscribe() (State, *Subscription) {
	c.mu.Lock()
	obs := c.obs
	c.mu.Unlock()
	if obs == nil {
		obs = NewObservers(State{Conn: ConnInfo{State: "offline", LastError: "not following the worker"}})
	}
	return obs.Subscribe()
}

// Close stops following and releases connections.
func (c *Client) Close() {
	c.mu.Lock()
	cancel, done := c.cancel, c.done
	c.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	c.http.CloseIdleConnections()
}

type sseEvent struct {
	event string
	data  []byte
}

type sseReader struct{ sc *bufio.Scanner }

func newSSEReader(r io.Reader) *sseReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	return &sseReader{sc: sc}
}

func (s *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case line == "":
			if ev.event != "" || len(ev.data) > 0 {
				return ev, nil
			}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event: "):
			ev.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.data = append(ev.data, strings.TrimPrefix(line, "data: ")...)
		}
	}
	if err := s.sc.Err(); err != nil {
		return ev, err
	}
	return ev, io.EOF
}
