// transfer.go moves bytes over HTTP: a job's input downloaded into its folder (with retries),
// binary results uploaded from the outbox with their checksum, and registration.

package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"studioworker/protocol"
)

// downloadError is a failed input download, classified by the contract.
type downloadError struct {
	retryable bool
	err       error
}

// errInputTooLarge marks an input past the worker's limit: not retryable, wherever it is tried.
var errInputTooLarge = errors.New("the input is larger than this worker's input limit")

// inputLimitError says how large and what the limit is, in the words a creator can act on.
func inputLimitError(what string, limit int64) error {
	return fmt.Errorf("%w: %s, the limit is %s (input_limit_mb in the worker's config)", errInputTooLarge, what, mib(limit))
}

func mib(n int64) string { return fmt.Sprintf("%d MiB", n>>20) }

// notHeldRetries is how often a 403/409 ("this worker does not hold the job") is asked again, at
// 20 ms × 2^n: the hub reads the accept frame on the WebSocket while the download comes on
// another connection, so right after the accept it may not know yet that the job is ours.
const notHeldRetries = 5

func (e *downloadError) Error() string   { return "input download: " + e.err.Error() }
func (e *downloadError) Unwrap() error   { return e.err }
func (e *downloadError) Retryable() bool { return e.retryable }

// download fetches the job's input_url into the job folder, streamed. The worker's credentials go
// only to the hub's own origin; an input on another host (a presigned URL) is fetched without them.
func (s *Session) download(ctx context.Context, j *job) (string, error) {
	raw := j.claim.InputURL
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return "", &downloadError{err: fmt.Errorf("input_url %q is not an absolute URL", raw)}
	}
	if err := schemeAllowed(u, s.cfg.AllowInsecure); err != nil {
		return "", &downloadError{err: fmt.Errorf("input_url: %w", err)}
	}
	limit := s.cfg.MaxInputBytes
	if n := j.claim.InputBytes; n > limit {
		return "", &downloadError{err: inputLimitError(fmt.Sprintf("the Studio says it is %s", mib(n)), limit)}
	}
	sameOrigin := sameOrigin(u, s.base)
	for try := 0; ; try++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
		if err != nil {
			return "", &downloadError{err: err}
		}
		if sameOrigin {
			s.authHeaders(req.Header)
		}
		resp, err := s.client.Do(req)
		if err != nil {
			return "", &downloadError{retryable: true, err: err}
		}
		sc := resp.StatusCode
		if sc == http.StatusOK {
			defer resp.Body.Close()
			if resp.ContentLength > limit {
				return "", &downloadError{err: inputLimitError(fmt.Sprintf("the server sends %s", mib(resp.ContentLength)), limit)}
			}
			return s.saveInput(j, resp, limit)
		}
		detail := fmt.Errorf("%s%s", resp.Status, bodySnippet(resp.Body))
		resp.Body.Close()
		switch {
		case sc == http.StatusForbidden || sc == http.StatusConflict:
			if try < notHeldRetries && sleepCtx(ctx, 20*time.Millisecond<<try) {
				continue
			}
			// Still not ours: a retryable fail is harmless if the hub really does not give the
			// job to this worker (it changes nothing then), and frees the job at once if the hub
			// does think this worker holds it.
			return "", &downloadError{retryable: true, err: fmt.Errorf("this worker does not hold the job: %w", detail)}
		case sc >= 500 || sc == http.StatusRequestTimeout || sc == http.StatusTooManyRequests:
			return "", &downloadError{retryable: true, err: detail}
		default: // 404, 410, 413 and other answers about the job itself: running it again will not help
			return "", &downloadError{err: detail}
		}
	}
}

// saveInput streams the body to the job folder, never writing more than limit bytes: a server
// that sends more (or says less than it sends) is cut off at the limit, and the partial file goes.
func (s *Session) saveInput(j *job, resp *http.Response, limit int64) (string, error) {
	path := filepath.Join(j.dir, "input"+inputExt(resp))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", &downloadError{retryable: true, err: err}
	}
	n, err := io.Copy(f, io.LimitReader(resp.Body, limit+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > limit {
		_ = os.Remove(path)
		return "", &downloadError{err: inputLimitError("the server sent more", limit)}
	}
	if err != nil {
		_ = os.Remove(path)
		return "", &downloadError{retryable: true, err: err}
	}
	return path, nil
}

// sleepCtx waits d unless ctx ends first; it reports whether the wait completed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// inputExt guesses the input file's extension (engines such as whisper look at it) from the
// Content-Disposition file name, else from the Content-Type.
func inputExt(resp *http.Response) string {
	if _, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition")); err == nil {
		if ext := safeExt(filepath.Ext(params["filename"])); ext != "" {
			return ext
		}
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err == nil {
		if exts, _ := mime.ExtensionsByType(mt); len(exts) > 0 {
			return safeExt(exts[0])
		}
	}
	return ""
}

func safeExt(ext string) string {
	if len(ext) < 2 || len(ext) > 10 || ext[0] != '.' {
		return ""
	}
	for _, r := range ext[1:] {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return ""
		}
	}
	return strings.ToLower(ext)
}

// notHeldUploadRetries is how often a 409/404 upload answer is asked again before the result is
// dropped.
const notHeldUploadRetries = 2

// uploader delivers the outbox's binary results, one at a time per uploader, oldest first; a
// failed upload waits its own backoff without holding back the others, the heartbeats or the read
// loop.
func (s *Session) uploader(ctx context.Context) {
	// Run waits for the uploaders, so the large files they left to the unlinker are gone by
	// the time it returns.
	defer s.out.waitUnlinks()
	for {
		// First: a cancelled upload returns at once with no retry delay, so the same item would
		// come straight back and the loop would spin instead of ending with the session.
		if ctx.Err() != nil {
			return
		}
		wake := s.kicked()
		it, next := s.out.nextUpload(time.Now())
		if it != nil {
			s.uploadOne(ctx, it)
			continue
		}
		var timer <-chan time.Time
		var t *time.Timer
		if !next.IsZero() {
			t = time.NewTimer(time.Until(next))
			timer = t.C
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

func (s *Session) uploadOne(ctx context.Context, it *outboxItem) {
	id := it.meta.JobID
	uctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if !s.out.setCancel(it, cancel) {
		s.out.uploadDone(it, 0)
		return
	}
	status, msg, err := s.upload(uctx, it.meta)
	retry := time.Duration(0)
	defer func() { s.out.uploadDone(it, retry) }()
	if s.out.isRemoved(it) || ctx.Err() != nil {
		return // cancelled by the hub, or the session is stopping: the entry stays for next time
	}
	notOurs := err == nil && (status == http.StatusConflict || status == http.StatusNotFound || status == http.StatusGone)
	rejects := 0
	if notOurs {
		rejects = s.out.rejected(it)
	}
	backoff := func() time.Duration {
		return max(s.bo.Delay(s.out.failures(it)+1), s.bo.Base/4)
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		s.toFail(it, "the result file was lost from the worker's spool", true)
	case err != nil:
		retry = backoff()
		s.log.Warn("upload failed, will retry", "job_id", id, "err", err, "retry_in", retry)
	case status == http.StatusOK:
		// Logged at the hub's answer, before the removal: unlinking a large result takes the
		// kernel a while to free its page cache (about 0.3 s for 1 GiB here), which is the
		// worker's own cleanup, not the upload. The event still follows the removal, so whoever
		// sees it finds the outbox without the entry.
		s.log.Info("result uploaded", "job_id", id, "bytes", it.meta.Size)
		s.out.removeDelivered(id)
		s.emit(DeliveredEvent{JobID: id, Status: protocol.AckStored, Bytes: it.meta.Size})
	case notOurs && rejects <= notHeldUploadRetries:
		// Right after the accept, the hub may not have read it yet (the upload comes on another
		// connection): ask again shortly before believing it.
		retry = 100 * time.Millisecond << (rejects - 1)
		s.log.Info("upload refused as not ours, asking again", "job_id", id, "status", status, "retry_in", retry)
	case notOurs:
		s.out.remove(id)
		s.note(slog.LevelWarn, id, "the hub refused the result: it does not hold this job for this worker", "status", status, "message", msg)
		s.emit(DeliveredEvent{JobID: id, Status: protocol.AckRejected})
	case status == http.StatusRequestEntityTooLarge:
		s.toFail(it, fmt.Sprintf("the result (%d bytes) is too large for the hub", it.meta.Size), false)
	case status == http.StatusBadRequest:
		// Bad ext or sha256 mismatch. The file may have changed on disk since it was hashed:
		// hash it again once and retry; a second 400 fails the job for good.
		if s.out.markRecheck(it) {
			sum, size, herr := hashFile(filepath.Join(s.out.dir, it.meta.File))
			if herr == nil && sum != it.meta.SHA256 {
				if uerr := s.out.updateSHA(it, sum, size); uerr == nil {
					s.log.Warn("result checksum changed on disk, uploading again", "job_id", id)
					return
				}
			}
		}
		s.toFail(it, "the hub refused the result upload: "+msg, false)
	case status >= 500 || status == http.StatusUnauthorized || status == http.StatusForbidden ||
		status == http.StatusRequestTimeout || status == http.StatusTooManyRequests:
		retry = backoff()
		s.log.Warn("upload refused for now, will retry", "job_id", id, "status", status, "message", msg, "retry_in", retry)
	default:
		s.toFail(it, fmt.Sprintf("the hub refused the result upload (%d): %s", status, msg), false)
	}
}

// toFail replaces a result the hub will never take by a fail and sends it.
func (s *Session) toFail(it *outboxItem, msg string, retryable bool) {
	s.note(slog.LevelError, it.meta.JobID, msg)
	if _, ok := s.out.convertToFail(it, msg, retryable); ok {
		s.sendFrames(s.currentConn(), it.meta.JobID)
	}
}

// upload posts one binary result as multipart/form-data (ext, sha256, prompt?, file), streaming
// the file from disk: the body is a fixed header, the file, and the closing boundary, with an
// exact Content-Length, so no part of the file is held in memory.
func (s *Session) upload(ctx context.Context, m outboxMeta) (status int, msg string, err error) {
	f, err := os.Open(filepath.Join(s.out.dir, m.File))
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, "", err
	}
	var head bytes.Buffer
	mw := multipart.NewWriter(&head)
	_ = mw.WriteField("ext", m.Ext)
	_ = mw.WriteField("sha256", m.SHA256)
	if m.Prompt != "" {
		_ = mw.WriteField("prompt", m.Prompt)
	}
	ph := textproto.MIMEHeader{}
	ph.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="result.%s"`, m.Ext))
	ct := mime.TypeByExtension("." + m.Ext)
	if ct == "" {
		ct = "application/octet-stream"
	}
	ph.Set("Content-Type", ct)
	if _, err := mw.CreatePart(ph); err != nil {
		return 0, "", err
	}
	tail := "\r\n--" + mw.Boundary() + "--\r\n"
	size := st.Size()
	body := io.MultiReader(bytes.NewReader(head.Bytes()), io.LimitReader(f, size), strings.NewReader(tail))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url(protocol.ResultPath(url.PathEscape(m.JobID))), body)
	if err != nil {
		return 0, "", err
	}
	req.ContentLength = int64(head.Len()) + size + int64(len(tail))
	req.Header.Set("Content-Type", mw.FormDataContentType())
	s.authHeaders(req.Header)
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	msg = strings.TrimPrefix(bodySnippet(resp.Body), ": ")
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	return resp.StatusCode, msg, nil
}

// Register pairs this machine with a hub: POST {server_url}/v1/worker/register with the pairing
// code. A 403 is ErrPairingRejected, a 429 a *ThrottledError that says when to try again; the
// insecure-URL rule is the same as for Run.
func Register(ctx context.Context, client *http.Client, serverURL string, allowInsecure bool, name, pairingCode string) (protocol.RegisterResponse, error) {
	var out protocol.RegisterResponse
	base, err := parseServerURL(serverURL, allowInsecure)
	if err != nil {
		return out, err
	}
	if client == nil {
		client = DefaultHTTPClient()
	}
	body, err := json.Marshal(protocol.RegisterRequest{Name: name, PairingCode: pairingCode})
	if err != nil {
		return out, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base.String()+protocol.PathRegister, bytes.NewReader(body))
	if err != nil {
		return out, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return out, fmt.Errorf("register: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusCreated, http.StatusOK:
	case http.StatusForbidden:
		return out, fmt.Errorf("%w%s", ErrPairingRejected, bodySnippet(resp.Body))
	case http.StatusTooManyRequests:
		return out, throttled("register", resp, time.Now())
	default:
		return out, fmt.Errorf("register: the hub answered %s%s", resp.Status, bodySnippet(resp.Body))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return out, fmt.Errorf("register: %w", err)
	}
	if err := protocol.DecodeInto(b, &out); err != nil {
		return out, fmt.Errorf("register: %w", err)
	}
	if out.WorkerID == "" || out.AuthToken == "" {
		return out, errors.New("register: the hub answered without a worker id or token")
	}
	return out, nil
}
