// control_server.go: the worker's end of the control channel. It serves a Controller and the
// state stream (a Source) to local clients over HTTP with JSON bodies; it knows nothing of how
// the endpoint is taken (control_unix.go, control_windows.go) nor of the clients that attach.
package app

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"studioworker/protocol"
)

// The control socket serves the state stream and the Controller to local clients: the CLI
// (`status`, `pause`, ...), and a window attached to a worker that runs as a service. It is HTTP
// with JSON bodies; /v1/events is a Server-Sent Events stream of these events:
//
//   - state: a whole State, first at once, then after every change. A slow reader skips states,
//     never loses one: each is whole and the newest replaces any not yet sent.
//   - notice: a Notice, in order.
//   - lost: a number, how many notices this stream dropped because its reader was slow, sent just
//     before the next notice it does get.
//
// A comment line (": keepalive") comes every controlKeepalive while nothing else does.

// The event names on /v1/events.
const (
	eventState  = "state"
	eventNotice = "notice"
	eventLost   = "lost"
)

// ErrAlreadyRunning: another worker already serves the control socket of this config folder.
var ErrAlreadyRunning = errors.New("a Studio Worker is already running for this configuration")

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
	Kind    protocol.Kind `json:"kind"`
	Backend BackendForm   `json:"backend"`
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
	if send(eventState, snap) != nil {
		return
	}
	keep := time.NewTicker(controlKeepalive)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case s, ok := <-sub.States():
			if !ok || send(eventState, s) != nil {
				return
			}
		case n, ok := <-sub.Notices():
			if !ok {
				return
			}
			if lost := sub.Lost(); lost > 0 {
				if send(eventLost, lost) != nil {
					return
				}
			}
			if send(eventNotice, n) != nil {
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
