// api_jobs.go: the admin job API: submit, read, list, fetch a result, cancel. An unfinished job is
// read from memory and a finished one from the database, so an answer never lags behind a
// transition that is not yet committed. It changes a job only through submit (enqueueJob) and
// Cancel (finish): it must not know how jobs are scheduled or leased.

package hub

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"studioworker/protocol"
)

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

// headerIdempotencyKey lets a client retry POST /v1/jobs safely: the same key gets the same
// job_id, and the job is stored once.
const headerIdempotencyKey = "Idempotency-Key"

const maxIdempotencyKey = 255

// idForKey derives a job id from an idempotency key. Only the admin token may submit, so one
// key space is enough; hashing keeps whatever the client chose out of paths and file names.
func idForKey(key string) string {
	sum := sha256.Sum256([]byte("idempotency-key\x00" + key))
	return "j" + hex.EncodeToString(sum[:12])
}

func (h *Hub) handleSubmit(w http.ResponseWriter, r *http.Request) {
	if err := h.dbDown(); err != nil {
		// Before the body is read: a client with a large input learns at once to come back.
		h.writeStoreError(w, err, "store the job")
		return
	}
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
	if key := r.Header.Get(headerIdempotencyKey); key != "" {
		if len(key) > maxIdempotencyKey {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%s is longer than %d bytes", headerIdempotencyKey, maxIdempotencyKey))
			return
		}
		// A retry of a POST whose answer was lost names the same job: the id is the key's.
		id = idForKey(key)
		if _, err := h.lookup(r.Context(), id); err == nil {
			writeJSON(w, http.StatusCreated, protocol.JobCreated{JobID: id})
			return
		}
	}
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
		if r.Header.Get(headerIdempotencyKey) != "" {
			if _, lerr := h.lookup(context.WithoutCancel(r.Context()), id); lerr == nil {
				// The same key, submitted twice at once: the other request stored the job, and
				// the input file under its id is that job's now.
				writeJSON(w, http.StatusCreated, protocol.JobCreated{JobID: id})
				return
			}
		}
		if inputFile != "" {
			_ = os.Remove(filepath.Join(h.dirs.inputs, inputFile))
		}
		h.log.Error("submit job", "err", err)
		h.writeStoreError(w, err, "store the job")
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
	if h.cluster != nil {
		return h.submitCluster(ctx, id, req, vram, inputFile, inputType)
	}
	now := h.now()
	h.mu.Lock()
	h.nextSeq++
	seq := h.nextSeq
	h.mu.Unlock()
	j := &job{id: id, seq: seq, kind: req.Kind, model: req.Model, vram: vram, input: req.Input,
		inputFile: inputFile, inputType: inputType, created: now}
	// The job joins the queue in memory when its row commits, whatever became of the caller:
	// a client that hangs up while the write waits must not leave a row that says queued and a
	// job nobody offers until the hub restarts.
	committed := make(chan error, 1)
	h.db.enqueue(func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO jobs(id, seq, kind, model, vram_gb, input, input_file, input_type, status, created_at, updated_at)
			VALUES($1,$2,$3,$4,$5,$6,$7,$8,'queued',$9,$10)`, id, seq, string(req.Kind), req.Model, vram, string(req.Input),
			inputFile, inputType, fmtTime(now), fmtTime(now))
		return err
	}, func(err error) {
		if err == nil {
			h.mu.Lock()
			h.jobs[id] = j
			h.enqueueJob(j)
			h.mu.Unlock()
			h.log.Debug("job queued", "job_id", id, "kind", req.Kind, "model", req.Model)
		}
		committed <- err
	})
	select {
	case err := <-committed:
		if err != nil {
			return "", fmt.Errorf("hub: store job: %w", err)
		}
		return id, nil
	case <-ctx.Done():
		return "", fmt.Errorf("hub: store job: %w", ctx.Err())
	}
}

func (h *Hub) info(j *job, base string) protocol.JobInfo {
	in := protocol.JobInfo{JobID: j.id, Kind: j.kind, Model: j.model, Status: j.status, WorkerID: j.holder,
		Attempts: j.attempts, Error: j.errText, Result: j.result}
	if j.resultFile != "" {
		in.ResultURL = base + protocol.PathJobs + "/" + j.id + "/result"
	}
	return in
}

// jobColumns and scanJob read a job back as the API shows it, without its input, which no answer
// carries.
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
	return scanJob(h.db.db.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id=$1`, id))
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
		h.writeStoreError(w, err, "read the job")
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
		info.Waiting = h.waitingFor(r.Context(), j.id)
	}
	writeJSON(w, http.StatusOK, info)
}

func (h *Hub) handleListJobs(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	rows, err := h.db.db.QueryContext(r.Context(), `SELECT `+jobColumns+` FROM jobs ORDER BY seq DESC LIMIT $1`, limit)
	if err != nil {
		h.log.Error("list jobs", "err", err)
		h.writeStoreError(w, err, "list jobs")
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

// contentTypes are the media types of the result extensions workers send; any other extension is
// served as application/octet-stream.
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
	if err := h.dbDown(); err != nil {
		return "", err // refused before anything is sent: a cancel is done once it is written
	}
	if h.cluster != nil {
		// Whichever replica drives it: the database first, then every replica hears of it.
		return h.cancelElsewhere(ctx, id)
	}
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
		h.writeStoreError(w, err, "cancel the job")
		return
	case status != protocol.JobCancelled:
		writeError(w, http.StatusConflict, "the job is already "+string(status))
		return
	}
	j, err := h.lookup(r.Context(), id)
	if err != nil {
		h.writeStoreError(w, err, "read the job")
		return
	}
	writeJSON(w, http.StatusOK, h.info(j, h.baseURL(r)))
}
