// files.go: the files that travel over HTTP: a worker's result upload, a worker's download of a
// job's input, and the multipart job submission that brings one. A file is streamed into tmp/ and
// renamed into place only once whole and synced, so a crash leaves nothing half-written under
// results/ or inputs/ (recovery.go removes what it leaves in tmp/). It must not know about
// sessions: an upload gets the verdict a complete frame would get (verdict, complete).

package hub

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"studioworker/internal/durable"
	"studioworker/protocol"
)

// stagedFile is a file streamed into the tmp folder, not yet in place. discard removes it;
// placeAs fsyncs it and renames it into a folder, after which discard does nothing.
type stagedFile struct {
	path        string
	size        int64
	sha256      string
	ext         string
	contentType string
}

var errTooLarge = errors.New("file over the upload limit")

// stageBuffer is the size of the reads from the socket while a file is streamed in. The multipart
// reader hands out at most 4 KiB per Read (its own buffer's size): without this buffer (and the
// large writes of pipeCopy) a 1 GiB upload cost half a million read and write syscalls, about an
// eighth of the hub's CPU time for it (profiled with bench/, see docs/performance.md).
const stageBuffer = 256 << 10

// bufferedBody gives a multipart reader large reads from the request body.
type bufferedBody struct {
	*bufio.Reader
	io.Closer
}

func newBufferedBody(body io.ReadCloser) io.ReadCloser {
	return bufferedBody{bufio.NewReaderSize(body, stageBuffer), body}
}

// stage streams r into a new file under dir, hashing it, and stops reading at limit+1 bytes; the
// file is synced before stage returns.
func stage(dir string, r io.Reader, limit int64) (*stagedFile, error) {
	f, err := os.CreateTemp(dir, "upload-*.part")
	if err != nil {
		return nil, fmt.Errorf("create temp file: %w", err)
	}
	s := &stagedFile{path: f.Name()}
	hash := sha256.New()
	n, err := pipeCopy(f, hash, r, limit) // hashes and writes in parallel (files_stage.go)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > limit {
		err = errTooLarge
	}
	if err != nil {
		s.discard()
		return nil, err
	}
	s.size, s.sha256 = n, hex.EncodeToString(hash.Sum(nil))
	return s, nil
}

func (s *stagedFile) discard() {
	if s.path != "" {
		_ = os.Remove(s.path)
		s.path = ""
	}
}

// placeAs renames the file to "<id>.<random>.<ext>" under dir and makes the rename durable. The
// random part keeps two uploads of the same job from ever writing the same name.
func (s *stagedFile) placeAs(dir, id, ext string) (string, error) {
	name := id + "." + newID("")[:8]
	if ext != "" {
		name += "." + ext
	}
	if err := durable.Rename(s.path, filepath.Join(dir, name)); err != nil {
		return "", fmt.Errorf("place file: %w", err)
	}
	s.path = ""
	return name, nil
}

// readSmallPart reads a form field of at most limit bytes.
func readSmallPart(p namedPart, limit int64) (string, error) {
	b, err := io.ReadAll(io.LimitReader(p, limit+1))
	if err != nil {
		return "", err
	}
	if int64(len(b)) > limit {
		return "", fmt.Errorf("field %q is over %d bytes", p.FormName(), limit)
	}
	return string(b), nil
}

// cleanExt lower-cases an extension and drops a leading dot; "" when it is not short letters
// and digits.
func cleanExt(ext string) string {
	ext = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(ext), "."))
	if ext == "" || len(ext) > 8 {
		return ""
	}
	for _, c := range ext {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return ""
		}
	}
	return ext
}

// authWorker checks the worker headers of a plain HTTP request.
func (h *Hub) authWorker(r *http.Request) *worker {
	id, token := r.Header.Get(protocol.HeaderWorkerID), bearer(r)
	h.loadWorker(r.Context(), id) // registered on another replica: read it from the database
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.workers[id]
	if w == nil || token == "" || !tokenMatches(token, w.tokenHash) {
		return nil
	}
	return w
}

type uploadAnswer struct {
	Status protocol.AckStatus `json:"status"`
}

// handleUpload stores a binary result: streamed to tmp/, sha256 checked, renamed into results/,
// committed, and only then answered 200. Anything refused leaves no file behind.
func (h *Hub) handleUpload(w http.ResponseWriter, r *http.Request) {
	wk := h.authWorker(r)
	if wk == nil {
		h.met.authFailures.Add(1)
		h.log.Warn("upload refused: unknown worker or wrong token", "worker_id", r.Header.Get(protocol.HeaderWorkerID))
		writeError(w, http.StatusUnauthorized, "unknown worker or wrong token")
		return
	}
	id := r.PathValue("id")
	log := h.log.With("worker_id", wk.id, "job_id", id)
	v, kind := h.uploadVerdict(r.Context(), wk, id)
	switch {
	case v == protocol.AckRejected:
		log.Info("upload refused: the worker does not hold the job")
		writeError(w, http.StatusConflict, "this worker does not hold job "+id)
		return
	case v == protocol.AckDuplicate:
		// Already stored: read what is sent (bounded) so the worker sees the answer, not a reset.
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, h.cfg.MaxUpload+1<<20))
		writeJSON(w, http.StatusOK, uploadAnswer{Status: protocol.AckDuplicate})
		return
	case !kind.BinaryResult():
		writeError(w, http.StatusBadRequest, "a "+string(kind)+" job's result is sent with complete_json, not uploaded")
		return
	}
	if r.ContentLength > h.cfg.MaxUpload+1<<20 {
		log.Warn("upload refused: over the limit", "content_length", r.ContentLength, "limit", h.cfg.MaxUpload)
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the file is over the upload limit of %d bytes", h.cfg.MaxUpload))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.cfg.MaxUpload+1<<20)
	mr, err := uploadForm(r) // multipart.go: mime/multipart's reading without its rescans
	if err != nil {
		writeError(w, http.StatusBadRequest, "the upload must be multipart/form-data: "+err.Error())
		return
	}
	var ext, sum, prompt string
	var file *stagedFile
	defer func() {
		if file != nil {
			file.discard()
		}
	}()
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			h.uploadError(w, log, err)
			return
		}
		switch p.FormName() {
		case "ext":
			if ext, err = readSmallPart(p, 64); err == nil && !kind.AllowedExt(cleanExt(ext)) {
				err = fmt.Errorf("ext %q is not allowed for a %s result (allowed: %s)", ext, kind, strings.Join(kind.ResultExts(), ", "))
			}
		case "sha256":
			sum, err = readSmallPart(p, 128)
		case "prompt":
			prompt, err = readSmallPart(p, 64<<10)
		case "file":
			if file != nil {
				err = errors.New("more than one file part")
				break
			}
			file, err = stage(h.dirs.tmp, p, h.cfg.MaxUpload)
		default:
			_, err = io.Copy(io.Discard, io.LimitReader(p, 64<<10))
		}
		p.Close()
		if err != nil {
			h.uploadError(w, log, err)
			return
		}
	}
	ext = cleanExt(ext)
	sum = strings.ToLower(strings.TrimSpace(sum))
	switch {
	case file == nil:
		writeError(w, http.StatusBadRequest, "the upload has no file part")
		return
	case ext == "":
		writeError(w, http.StatusBadRequest, "the upload has no ext field")
		return
	case sum == "":
		writeError(w, http.StatusBadRequest, "the upload has no sha256 field")
		return
	case sum != file.sha256:
		log.Warn("upload refused: sha256 mismatch", "sent", sum, "computed", file.sha256)
		writeError(w, http.StatusBadRequest, "sha256 mismatch: the file's is "+file.sha256)
		return
	}
	name, err := file.placeAs(h.dirs.results, id, ext)
	if err != nil {
		log.Error("store result file", "err", err)
		writeError(w, http.StatusInternalServerError, "could not store the file")
		return
	}
	size := file.size
	file = nil
	removePlaced := func() { _ = os.Remove(filepath.Join(h.dirs.results, name)) }

	done := make(chan error, 1)
	h.adopt(r.Context(), wk.id, []string{id}, false) // driven by another replica: take it over to store it
	h.mu.Lock()
	j := h.jobs[id]
	v = verdict(wk, j)
	if j == nil && h.cluster != nil {
		v, _ = h.verdictElsewhere(r.Context(), wk, id)
		if v == protocol.AckStored {
			v = protocol.AckRejected // it could not be taken over: someone else holds it now
		}
	}
	if v == protocol.AckStored {
		h.complete(j, wk, nil, name, ext, sum, size, prompt, func(err error) { done <- err })
	}
	h.mu.Unlock()
	switch v {
	case protocol.AckRejected:
		removePlaced()
		writeError(w, http.StatusConflict, "this worker does not hold job "+id)
		return
	case protocol.AckDuplicate:
		removePlaced()
		writeJSON(w, http.StatusOK, uploadAnswer{Status: protocol.AckDuplicate})
		return
	}
	// The answer waits for the commit even if the worker hung up: the result is the job's now.
	if err := <-done; errors.Is(err, errNotOwner) {
		// Another replica took the job over while it was stored here: its answer stands.
		removePlaced()
		if v, _ := h.verdictElsewhere(r.Context(), wk, id); v == protocol.AckDuplicate {
			writeJSON(w, http.StatusOK, uploadAnswer{Status: protocol.AckDuplicate})
			return
		}
		writeError(w, http.StatusConflict, "this worker does not hold job "+id)
		return
	} else if err != nil {
		log.Error("store result", "err", err)
		writeError(w, http.StatusInternalServerError, "could not store the result")
		return
	}
	h.met.uploadBytes.Add(size)
	log.Info("result file stored", "bytes", size, "ext", ext)
	writeJSON(w, http.StatusOK, uploadAnswer{Status: protocol.AckStored})
}

func (h *Hub) uploadError(w http.ResponseWriter, log interface {
	Warn(string, ...any)
}, err error) {
	var mbe *http.MaxBytesError
	if errors.Is(err, errTooLarge) || errors.As(err, &mbe) {
		log.Warn("upload refused: over the limit", "limit", h.cfg.MaxUpload)
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the file is over the upload limit of %d bytes", h.cfg.MaxUpload))
		return
	}
	log.Warn("upload refused", "err", err)
	writeError(w, http.StatusBadRequest, "bad upload: "+err.Error())
}

// uploadVerdict is the verdict before reading the body, and the job's kind.
func (h *Hub) uploadVerdict(ctx context.Context, wk *worker, id string) (protocol.AckStatus, protocol.Kind) {
	h.mu.Lock()
	j := h.jobs[id]
	if j != nil {
		v, kind := verdict(wk, j), j.kind
		h.mu.Unlock()
		return v, kind
	}
	h.mu.Unlock()
	if h.cluster != nil {
		return h.verdictElsewhereSoon(ctx, wk, id)
	}
	return h.finishedVerdict(ctx, id), ""
}

// handleInput streams a job's input file to the worker that holds the job.
func (h *Hub) handleInput(w http.ResponseWriter, r *http.Request) {
	wk := h.authWorker(r)
	if wk == nil {
		h.met.authFailures.Add(1)
		writeError(w, http.StatusUnauthorized, "unknown worker or wrong token")
		return
	}
	id := r.PathValue("id")
	h.mu.Lock()
	j := h.jobs[id]
	holds := j != nil && j.status == protocol.JobRunning && j.holder == wk.id
	var name, ct string
	if holds {
		name, ct = j.inputFile, j.inputType
	}
	h.mu.Unlock()
	if j == nil && h.cluster != nil {
		// The worker's session is on another replica, which drives the job.
		name, ct, holds = h.inputHeldBy(r.Context(), id, wk.id)
	}
	if !holds {
		writeError(w, http.StatusForbidden, "this worker does not hold job "+id)
		return
	}
	if name == "" {
		writeError(w, http.StatusNotFound, "job "+id+" has no input file")
		return
	}
	f, err := os.Open(filepath.Join(h.dirs.inputs, name))
	if err != nil {
		h.log.Error("open input file", "job_id", id, "err", err)
		writeError(w, http.StatusInternalServerError, "the input file is missing")
		return
	}
	defer f.Close()
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	http.ServeContent(w, r, "", time.Time{}, f)
}

// readJobMultipart reads POST /v1/jobs as multipart/form-data: a "job" field with the JSON and an
// "input_file" part, streamed to tmp/.
func (h *Hub) readJobMultipart(w http.ResponseWriter, r *http.Request, req *protocol.JobRequest) (*stagedFile, int, error) {
	r.Body = newBufferedBody(http.MaxBytesReader(w, r.Body, h.cfg.MaxUpload+2<<20))
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("bad job: %w", err)
	}
	var file *stagedFile
	fail := func(status int, err error) (*stagedFile, int, error) {
		if file != nil {
			file.discard()
		}
		return nil, status, err
	}
	sawJob := false
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fail(http.StatusBadRequest, fmt.Errorf("bad job: %w", err))
		}
		switch p.FormName() {
		case "job":
			var raw string
			if raw, err = readSmallPart(p, protocol.MaxFrameBytes); err == nil {
				err = protocol.DecodeInto([]byte(raw), req)
			}
			sawJob = true
		case "input_file":
			if file != nil {
				err = errors.New("more than one input_file part")
				break
			}
			file, err = stage(h.dirs.tmp, p, h.cfg.MaxUpload)
			if err == nil {
				file.ext = cleanExt(filepath.Ext(p.FileName()))
				file.contentType = p.Header.Get("Content-Type")
			}
		default:
			_, err = io.Copy(io.Discard, io.LimitReader(p, 64<<10))
		}
		p.Close()
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.Is(err, errTooLarge) || errors.As(err, &mbe) {
				return fail(http.StatusRequestEntityTooLarge, fmt.Errorf("the input file is over the upload limit of %d bytes", h.cfg.MaxUpload))
			}
			return fail(http.StatusBadRequest, fmt.Errorf("bad job: %w", err))
		}
	}
	if !sawJob {
		return fail(http.StatusBadRequest, errors.New("bad job: no job field"))
	}
	return file, 0, nil
}
