// api.go: the hub's HTTP surface: the route table and what every handler shares (JSON in and out,
// the admin guard, absolute URLs, ?limit=). Each handler lives with its resource (api_jobs.go,
// api_workers.go, api_register.go, files.go, metrics.go), so this file must not know what any of
// them does.

package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"studioworker/protocol"
)

// Handler serves every HTTP endpoint of the contract and the worker WebSocket.
func (h *Hub) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+protocol.PathWorkerWS, h.handleWS)
	mux.HandleFunc("POST "+protocol.PathRegister, h.handleRegister)
	mux.HandleFunc("POST /v1/worker/jobs/{id}/result", h.handleUpload)
	mux.HandleFunc("GET /v1/worker/jobs/{id}/input", h.handleInput)
	mux.HandleFunc("POST "+protocol.PathJobs, h.admin(h.handleSubmit))
	mux.HandleFunc("GET "+protocol.PathJobs, h.admin(h.handleListJobs))
	mux.HandleFunc("GET /v1/jobs/{id}", h.admin(h.handleJob))
	mux.HandleFunc("GET /v1/jobs/{id}/result", h.admin(h.handleResult))
	mux.HandleFunc("POST /v1/jobs/{id}/cancel", h.admin(h.handleCancel))
	mux.HandleFunc("GET "+protocol.PathWorkers, h.admin(h.handleWorkers))
	mux.HandleFunc("GET /v1/workers/{id}/logs", h.admin(h.handleLogs))
	mux.HandleFunc("DELETE /v1/workers/{id}", h.admin(h.handleRevoke))
	mux.HandleFunc("POST "+protocol.PathPairingCodes, h.admin(h.handlePairingCode))
	mux.HandleFunc("GET "+protocol.PathHealthz, h.handleHealthz)
	mux.HandleFunc("GET "+protocol.PathMetrics, h.handleMetrics)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return h.withDeadlines(mux)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers in the contract's error shape, so that a client reads every failure alike.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, protocol.HTTPError{Error: msg})
}

// handleHealthz answers 200 as the contract says, and says in its body whether the database can
// be reached: a load balancer that reads only the status keeps the hub's sessions (they need no
// database), and one that reads the body can send new jobs elsewhere. See PROTOCOL.md §10.
func (h *Hub) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	out := map[string]string{"status": "ok", "database": h.db.dialect}
	if err := h.dbDown(); err != nil {
		out["status"] = "degraded"
		out["database_error"] = err.Error()
	}
	writeJSON(w, http.StatusOK, out)
}

// dbDown is the error to answer while the database cannot be reached, or nil.
func (h *Hub) dbDown() error {
	if down, since := h.db.health(); down != nil {
		return &errDatabaseDown{cause: down, since: since}
	}
	return nil
}

// writeStoreError answers a request that the database failed: 503 with Retry-After while it cannot
// be reached (nothing was done; the same request later will do), 500 otherwise.
func (h *Hub) writeStoreError(w http.ResponseWriter, err error, what string) {
	var down *errDatabaseDown
	if !errors.As(err, &down) {
		if d := h.dbDown(); d != nil {
			errors.As(d, &down)
		}
	}
	if down != nil {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "could not "+what+": "+down.Error()+"; nothing was done, try again in a few seconds")
		return
	}
	writeError(w, http.StatusInternalServerError, "could not "+what)
}

// admin guards the job API with the admin token.
func (h *Hub) admin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !tokenMatches(bearer(r), h.adminHash) {
			h.log.Warn("admin request refused: wrong or missing admin token", "path", r.URL.Path, "remote", r.RemoteAddr)
			writeError(w, http.StatusUnauthorized, "wrong or missing admin token")
			return
		}
		next(w, r)
	}
}

// baseURL is the absolute base for URLs handed out in answers to r.
func (h *Hub) baseURL(r *http.Request) string {
	if h.cfg.PublicURL != "" {
		return h.cfg.PublicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// readJSON decodes a small JSON body into v, checking the required fields.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	return protocol.DecodeInto(body, v)
}

// limitParam reads ?limit= alike for every list: 100 by default, at most 1000, so that one request
// cannot pull a whole table.
func limitParam(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, errors.New("limit must be a positive integer")
	}
	return min(n, 1000), nil
}
