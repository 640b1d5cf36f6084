package hub

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

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
	mux.HandleFunc("POST "+protocol.PathPairingCodes, h.admin(h.handlePairingCode))
	mux.HandleFunc("GET "+protocol.PathHealthz, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET "+protocol.PathMetrics, h.handleMetrics)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, protocol.HTTPError{Error: msg})
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

// ---- jobs ----

// maxInputBytes keeps a job's input small enough for its offer to fit in one frame.
const maxInputBytes = protocol.MaxFrameBytes - 16<<10

// validateJob checks a job request against the contract's input shapes.
func validateJob(req *protocol.JobRequest, hasFile bool) error {
	if !req.Kind.Valid() {
		return fmt.Errorf("unknown kind %q", req.Kind)
	}
	if strings.TrimSpace(req.Model) == "" {
		return errors.New("model is required")
	}
	if req.VRAMGBEstimate != nil && *req.VRAMGBEstimate < 0 {
		return errors.New("vram_gb_estimate must not be negative")
	}
	if len(req.Input) > maxInputBytes {
		return fmt.Errorf("input is over %d bytes", maxInputBytes)
	}
	var err error
	switch req.Kind {
	case protocol.KindLLM:
		var in protocol.LLMInput
		if err = protocol.DecodeInto(req.Input, &in); err == nil && in.Prompt == "" && len(in.Messages) == 0 {
			err = errors.New("an llm input needs prompt or messages")
		}
	case protocol.KindImage:
		err = protocol.DecodeInto(req.Input, &protocol.ImageInput{})
	case protocol.KindTTS:
		err = protocol.DecodeInto(req.Input, &protocol.TTSInput{})
	case protocol.KindSTT:
		if err = protocol.DecodeInto(req.Input, &protocol.STTInput{}); err == nil && !hasFile {
			err = errors.New("an stt job needs an input_file part (multipart/form-data)")
		}
	case protocol.KindVideo:
		err = protocol.DecodeInto(req.Input, &protocol.VideoInput{})
	}
	if err != nil {
		return fmt.Errorf("input: %w", err)
	}
	return nil
}

func (h *Hub) handleSubmit(w http.ResponseWriter, r *http.Request) {
	var req protocol.JobRequest
	var input *stagedFile
	defer func() {
		if input != nil {
			input.discard()
		}
	}()
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		var status int
		var err error
		input, status, err = h.readJobMultipart(w, r, &req)
		if err != nil {
			writeError(w, status, err.Error())
			return
		}
	} else if err := readJSON(w, r, protocol.MaxFrameBytes, &req); err != nil {
		writeError(w, http.StatusBadRequest, "bad job: "+err.Error())
		return
	}
	if err := validateJob(&req, input != nil); err != nil {
		writeError(w, http.StatusBadRequest, "bad job: "+err.Error())
		return
	}
	id := newID("j")
	var inputFile, inputType string
	if input != nil {
		name, err := input.placeAs(h.dirs.inputs, id, input.ext)
		if err != nil {
			h.log.Error("store input file", "err", err)
			writeError(w, http.StatusInternalServerError, "could not store the input file")
			return
		}
		inputFile, inputType = name, input.contentType
	}
	if _, err := h.submit(r.Context(), id, req, inputFile, inputType); err != nil {
		if inputFile != "" {
			_ = os.Remove(filepath.Join(h.dirs.inputs, inputFile))
		}
		h.log.Error("submit job", "err", err)
		writeError(w, http.StatusInternalServerError, "could not store the job")
		return
	}
	writeJSON(w, http.StatusCreated, protocol.JobCreated{JobID: id})
}

// submit stores a validated job (its input file, if any, already under the inputs folder) and
// queues it once committed. id "" makes a new id.
func (h *Hub) submit(ctx context.Context, id string, req protocol.JobRequest, inputFile, inputType string) (string, error) {
	if id == "" {
		id = newID("j")
	}
	var vram float64
	if req.VRAMGBEstimate != nil {
		vram = *req.VRAMGBEstimate
	}
	now := h.now()
	h.mu.Lock()
	h.nextSeq++
	seq := h.nextSeq
	h.mu.Unlock()
	j := &job{id: id, seq: seq, kind: req.Kind, model: req.Model, vram: vram, input: req.Input,
		inputFile: inputFile, inputType: inputType, created: now}
	err := h.db.do(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO jobs(id, seq, kind, model, vram_gb, input, input_file, input_type, status, created_at, updated_at)
			VALUES(?,?,?,?,?,?,?,?,'queued',?,?)`, id, seq, string(req.Kind), req.Model, vram, string(req.Input),
			inputFile, inputType, fmtTime(now), fmtTime(now))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("hub: store job: %w", err)
	}
	h.mu.Lock()
	h.jobs[id] = j
	h.enqueueJob(j)
	h.mu.Unlock()
	h.log.Debug("job queued", "job_id", id, "kind", req.Kind, "model", req.Model)
	return id, nil
}

func (h *Hub) info(j *job, base string) protocol.JobInfo {
	in := protocol.JobInfo{JobID: j.id, Kind: j.kind, Model: j.model, Status: j.status, WorkerID: j.holder,
		Attempts: j.attempts, Error: j.errText, Result: j.result}
	if j.resultFile != "" {
		in.ResultURL = base + protocol.PathJobs + "/" + j.id + "/result"
	}
	return in
}

const jobColumns = `id, seq, kind, model, status, worker_id, attempts, error, result, result_file, result_ext`

func scanJob(sc interface{ Scan(...any) error }) (*job, error) {
	j := &job{}
	var kind, status string
	var result sql.NullString
	if err := sc.Scan(&j.id, &j.seq, &kind, &j.model, &status, &j.holder, &j.attempts, &j.errText, &result, &j.resultFile, &j.resultExt); err != nil {
		return nil, err
	}
	j.kind, j.status = protocol.Kind(kind), protocol.JobStatus(status)
	if result.Valid {
		j.result = json.RawMessage(result.String)
	}
	return j, nil
}

// lookup returns a snapshot of the job: from memory when unfinished, else from the database.
func (h *Hub) lookup(ctx context.Context, id string) (*job, error) {
	h.mu.Lock()
	if j := h.jobs[id]; j != nil {
		c := *j
		h.mu.Unlock()
		return &c, nil
	}
	h.mu.Unlock()
	return scanJob(h.db.db.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id=?`, id))
}

// jobOf looks up the request's {id}, answering 404 or 500 itself when it cannot.
func (h *Hub) jobOf(w http.ResponseWriter, r *http.Request) (*job, bool) {
	j, err := h.lookup(r.Context(), r.PathValue("id"))
	if errors.Is(err, sql.ErrNoRows) {
		writeError(w, http.StatusNotFound, "no such job")
		return nil, false
	}
	if err != nil {
		h.log.Error("look up job", "err", err)
		writeError(w, http.StatusInternalServerError, "could not read the job")
		return nil, false
	}
	return j, true
}

func (h *Hub) handleJob(w http.ResponseWriter, r *http.Request) {
	j, ok := h.jobOf(w, r)
	if !ok {
		return
	}
	info := h.info(j, h.baseURL(r))
	if info.Status == protocol.JobQueued {
		info.Waiting = h.waitingFor(j.id)
	}
	writeJSON(w, http.StatusOK, info)
}

func (h *Hub) handleListJobs(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	rows, err := h.db.db.QueryContext(r.Context(), `SELECT `+jobColumns+` FROM jobs ORDER BY seq DESC LIMIT ?`, limit)
	if err != nil {
		h.log.Error("list jobs", "err", err)
		writeError(w, http.StatusInternalServerError, "could not list jobs")
		return
	}
	defer rows.Close()
	base := h.baseURL(r)
	out := protocol.List[protocol.JobInfo]{}
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			h.log.Error("list jobs", "err", err)
			writeError(w, http.StatusInternalServerError, "could not list jobs")
			return
		}
		// Offers and fresh transitions live in memory first.
		h.mu.Lock()
		if m := h.jobs[j.id]; m != nil {
			c := *m
			j = &c
		}
		h.mu.Unlock()
		out = append(out, h.info(j, base))
	}
	writeJSON(w, http.StatusOK, out)
}

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

var contentTypes = map[string]string{
	"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp",
	"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg", "flac": "audio/flac",
	"mp4": "video/mp4", "webm": "video/webm", "gif": "image/gif",
}

func (h *Hub) handleResult(w http.ResponseWriter, r *http.Request) {
	j, ok := h.jobOf(w, r)
	if !ok {
		return
	}
	if j.status != protocol.JobCompleted {
		writeError(w, http.StatusConflict, "the job has no result: it is "+string(j.status))
		return
	}
	if j.resultFile == "" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(j.result)
		return
	}
	f, err := os.Open(filepath.Join(h.dirs.results, j.resultFile))
	if err != nil {
		h.log.Error("open result file", "job_id", j.id, "err", err)
		writeError(w, http.StatusInternalServerError, "the result file is missing")
		return
	}
	defer f.Close()
	ct := contentTypes[j.resultExt]
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.%s"`, j.id, j.resultExt))
	http.ServeContent(w, r, "", time.Time{}, f)
}

// Cancel cancels an unfinished job; a worker holding it or offered it gets cancel{cancelled}.
// It reports whether the job exists and its status after the call.
func (h *Hub) Cancel(ctx context.Context, id string) (protocol.JobStatus, error) {
	h.mu.Lock()
	j := h.jobs[id]
	if j == nil || j.status.Done() {
		h.mu.Unlock()
		if j != nil {
			return j.status, nil
		}
		fj, err := h.lookup(ctx, id)
		if err != nil {
			return "", err
		}
		return fj.status, nil
	}
	if j.holder != "" {
		h.sendTo(j.holder, protocol.Cancel{JobID: id, Reason: protocol.CancelCancelled})
	}
	done := make(chan error, 1)
	h.finish(j, protocol.JobCancelled, "cancelled", func(err error) { done <- err })
	h.mu.Unlock()
	select {
	case err := <-done:
		if err != nil {
			return "", fmt.Errorf("hub: store cancel: %w", err)
		}
	case <-ctx.Done():
		return "", ctx.Err()
	}
	h.log.Info("job cancelled", "job_id", id)
	return protocol.JobCancelled, nil
}

func (h *Hub) handleCancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	status, err := h.Cancel(r.Context(), id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		writeError(w, http.StatusNotFound, "no such job")
		return
	case err != nil:
		h.log.Error("cancel job", "job_id", id, "err", err)
		writeError(w, http.StatusInternalServerError, "could not cancel the job")
		return
	case status != protocol.JobCancelled:
		writeError(w, http.StatusConflict, "the job is already "+string(status))
		return
	}
	j, err := h.lookup(r.Context(), id)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "could not read the job")
		return
	}
	writeJSON(w, http.StatusOK, h.info(j, h.baseURL(r)))
}

// Workers lists the registered workers, connected ones first, then by name.
func (h *Hub) Workers() []protocol.WorkerInfo {
	h.mu.Lock()
	out := make([]protocol.WorkerInfo, 0, len(h.workers))
	for _, w := range h.workers {
		out = append(out, w.info())
	}
	h.mu.Unlock()
	slices.SortFunc(out, func(a, b protocol.WorkerInfo) int {
		if a.Connected != b.Connected {
			if a.Connected {
				return -1
			}
			return 1
		}
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.WorkerID, b.WorkerID)
	})
	return out
}

func (h *Hub) handleWorkers(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, protocol.List[protocol.WorkerInfo](h.Workers()))
}

func (h *Hub) handleLogs(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	id := r.PathValue("id")
	h.mu.Lock()
	known := h.workers[id] != nil
	h.mu.Unlock()
	if !known {
		writeError(w, http.StatusNotFound, "no such worker")
		return
	}
	rows, err := h.db.db.QueryContext(r.Context(), `SELECT ts, level, source, message, job_id FROM worker_logs
		WHERE worker_id=? ORDER BY id DESC LIMIT ?`, id, limit)
	if err != nil {
		h.log.Error("read logs", "err", err)
		writeError(w, http.StatusInternalServerError, "could not read the logs")
		return
	}
	defer rows.Close()
	out := protocol.List[protocol.LogEntry]{}
	for rows.Next() {
		var e protocol.LogEntry
		var ts, level string
		if err := rows.Scan(&ts, &level, &e.Source, &e.Message, &e.JobID); err != nil {
			writeError(w, http.StatusInternalServerError, "could not read the logs")
			return
		}
		e.TS, e.Level = parseTime(ts), protocol.LogLevel(level)
		out = append(out, e)
	}
	slices.Reverse(out)
	writeJSON(w, http.StatusOK, out)
}
