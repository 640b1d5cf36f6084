// api_test.go: the HTTP API: result uploads and input downloads, job validation, single-use
// pairing codes, and the admin token created on first start.

package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"studioworker/protocol"
)

type uploadParts struct {
	ext, sha string
	file     []byte
	noFile   bool
}

// upload posts a result the way a worker does and returns the status and body.
func (e *env) upload(creds protocol.RegisterResponse, jobID string, p uploadParts) (int, string) {
	e.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if p.ext != "" {
		mw.WriteField("ext", p.ext)
	}
	if p.sha != "" {
		mw.WriteField("sha256", p.sha)
	}
	if !p.noFile {
		fw, _ := mw.CreateFormFile("file", "result."+p.ext)
		fw.Write(p.file)
	}
	mw.Close()
	req, _ := http.NewRequest("POST", e.srv.URL+protocol.ResultPath(jobID), &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+creds.AuthToken)
	req.Header.Set(protocol.HeaderWorkerID, creds.WorkerID)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("upload: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// leaseImageJob submits an image job and has w accept it.
func (e *env) leaseImageJob(w *testWorker) string {
	e.t.Helper()
	id := e.submit(imageJob("sd"))
	e.lease(w, id)
	return id
}

func (e *env) dataFiles() []string {
	e.t.Helper()
	dir := e.dataDir()
	var all []string
	for _, sub := range []string{"tmp", "results", "inputs"} {
		for _, n := range listDir(e.t, filepath.Join(dir, sub)) {
			if sub == "tmp" && e.hub.cluster != nil && n == e.hub.cluster.id {
				// A replica stages in a folder of its own: what is left is what is in it.
				for _, m := range listDir(e.t, filepath.Join(dir, sub, n)) {
					all = append(all, sub+"/"+n+"/"+m)
				}
				continue
			}
			all = append(all, sub+"/"+n)
		}
	}
	return all
}

func TestUploadStoredThenDuplicate(t *testing.T) {
	e := startHub(t, nil)
	creds := e.register("a")
	a := e.connect(creds, hello(llmCaps, nil, nil))
	id := e.leaseImageJob(a)
	png := bytes.Repeat([]byte("png-bytes"), 1000)
	if code, body := e.upload(creds, id, uploadParts{ext: "png", sha: sha(png), file: png}); code != 200 || !strings.Contains(body, `"stored"`) {
		t.Fatalf("upload: %d %s", code, body)
	}
	info := e.waitJob(id, "completed", statusIs(protocol.JobCompleted))
	if info.ResultURL != e.srv.URL+"/v1/jobs/"+id+"/result" {
		t.Fatalf("result_url %q", info.ResultURL)
	}
	var got bytes.Buffer
	ct, err := e.client.Result(context.Background(), id, &got)
	if err != nil || ct != "image/png" || !bytes.Equal(got.Bytes(), png) {
		t.Fatalf("Result: %q %d bytes %v", ct, got.Len(), err)
	}
	if code, body := e.upload(creds, id, uploadParts{ext: "png", sha: sha(png), file: png}); code != 200 || !strings.Contains(body, `"duplicate"`) {
		t.Fatalf("again: %d %s", code, body)
	}
	if files := e.dataFiles(); len(files) != 1 || !strings.HasPrefix(files[0], "results/"+id+".") {
		t.Fatalf("files %v", files)
	}
	e.waitMetric("studio_hub_upload_bytes_total 9000")
}

func TestBadUploadsLeaveNothingBehind(t *testing.T) {
	e := startHub(t, func(c *Config) { c.MaxUpload = 4096 })
	creds := e.register("a")
	a := e.connect(creds, hello(caps(8, 24, map[protocol.Kind][]string{protocol.KindImage: {"sd"}}), nil, nil))
	other := e.register("b")
	id := e.leaseImageJob(a)
	small := []byte("small image")
	for _, tc := range []struct {
		name  string
		creds protocol.RegisterResponse
		job   string
		parts uploadParts
		code  int
	}{
		{"extension outside the list", creds, id, uploadParts{ext: "exe", sha: sha(small), file: small}, 400},
		{"extension of another kind", creds, id, uploadParts{ext: "wav", sha: sha(small), file: small}, 400},
		{"sha256 mismatch", creds, id, uploadParts{ext: "png", sha: sha([]byte("other")), file: small}, 400},
		{"no sha256", creds, id, uploadParts{ext: "png", file: small}, 400},
		{"no file", creds, id, uploadParts{ext: "png", sha: sha(small), noFile: true}, 400},
		{"over the limit", creds, id, uploadParts{ext: "png", sha: sha(make([]byte, 5000)), file: make([]byte, 5000)}, 413},
		{"worker does not hold the job", other, id, uploadParts{ext: "png", sha: sha(small), file: small}, 409},
		{"unknown job", creds, "j-nothing", uploadParts{ext: "png", sha: sha(small), file: small}, 409},
		{"wrong token", protocol.RegisterResponse{WorkerID: creds.WorkerID, AuthToken: "nope"}, id, uploadParts{ext: "png", sha: sha(small), file: small}, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := e.upload(tc.creds, tc.job, tc.parts)
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
			var he protocol.HTTPError
			if err := json.Unmarshal([]byte(body), &he); err != nil || he.Error == "" {
				t.Fatalf("body %q is not a JSON error", body)
			}
			if files := e.dataFiles(); len(files) != 0 {
				t.Fatalf("left behind: %v", files)
			}
		})
	}
	if info := e.waitJob(id, "still running", statusIs(protocol.JobRunning)); info.Status != protocol.JobRunning {
		t.Fatal("a bad upload changed the job")
	}
}

func TestInputFileOnlyForTheHolder(t *testing.T) {
	e := startHub(t, nil)
	credsA := e.register("a")
	sttCaps := caps(1, 24, map[protocol.Kind][]string{protocol.KindSTT: {"whisper"}})
	a := e.connect(credsA, hello(sttCaps, nil, nil))
	audio := bytes.Repeat([]byte("RIFF...."), 500)
	id, err := e.client.SubmitWithFile(context.Background(),
		protocol.JobRequest{Kind: protocol.KindSTT, Model: "whisper", Input: protocol.Object(`{"language":"en"}`)}, "talk.wav", bytes.NewReader(audio))
	if err != nil {
		t.Fatal(err)
	}
	claim := a.offerFor(id)
	if claim.InputURL != e.srv.URL+protocol.InputPath(id) {
		t.Fatalf("input_url %q", claim.InputURL)
	}
	get := func(creds protocol.RegisterResponse) (int, []byte) {
		req, _ := http.NewRequest("GET", claim.InputURL, nil)
		req.Header.Set("Authorization", "Bearer "+creds.AuthToken)
		req.Header.Set(protocol.HeaderWorkerID, creds.WorkerID)
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, _ := get(credsA); code != 403 {
		t.Fatalf("before accept: %d, want 403", code)
	}
	a.send(protocol.Accept{JobID: id})
	e.waitJob(id, "running", statusIs(protocol.JobRunning))
	if code, b := get(credsA); code != 200 || !bytes.Equal(b, audio) {
		t.Fatalf("holder: %d, %d bytes", code, len(b))
	}
	if code, _ := get(e.register("b")); code != 403 {
		t.Fatalf("other worker: %d, want 403", code)
	}
	a.complete(id, `{"text":"hi","language":"en","segments":[]}`)
	e.waitJob(id, "completed", statusIs(protocol.JobCompleted))
	// The input file goes once the job is finished.
	deadline := 0
	for len(e.dataFiles()) != 0 {
		if deadline++; deadline > 1000 {
			t.Fatalf("input file kept: %v", e.dataFiles())
		}
		waitTick()
	}
}

func TestJobAPIValidation(t *testing.T) {
	e := startHub(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		req  protocol.JobRequest
	}{
		{"unknown kind", protocol.JobRequest{Kind: "music", Model: "m", Input: protocol.Object(`{}`)}},
		{"no model", protocol.JobRequest{Kind: protocol.KindLLM, Input: protocol.Object(`{"prompt":"x"}`)}},
		{"llm without prompt", protocol.JobRequest{Kind: protocol.KindLLM, Model: "m", Input: protocol.Object(`{}`)}},
		{"image without width", protocol.JobRequest{Kind: protocol.KindImage, Model: "m", Input: protocol.Object(`{"prompt":"x","height":1}`)}},
		{"stt without a file", protocol.JobRequest{Kind: protocol.KindSTT, Model: "m", Input: protocol.Object(`{}`)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.client.Submit(ctx, tc.req); apiStatus(t, err) != 400 {
				t.Fatalf("err %v", err)
			}
		})
	}
	wrong := &Client{BaseURL: e.srv.URL, AdminToken: "not-the-admin-token"}
	if _, err := wrong.Submit(ctx, llmJob("m1")); apiStatus(t, err) != 401 {
		t.Fatalf("wrong admin token: %v", err)
	}
	if _, err := wrong.Jobs(ctx); apiStatus(t, err) != 401 {
		t.Fatalf("wrong admin token: %v", err)
	}
	if _, err := e.client.Job(ctx, "j-nothing"); apiStatus(t, err) != 404 {
		t.Fatalf("unknown job: %v", err)
	}
	if strings.Contains(e.logs.String(), "not-the-admin-token") || strings.Contains(e.logs.String(), "admin-secret-token") {
		t.Fatal("a token appears in the log")
	}
	for _, path := range []string{protocol.PathHealthz, protocol.PathMetrics} {
		resp, err := http.Get(e.srv.URL + path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", path, err, resp)
		}
		resp.Body.Close()
	}
}

func TestPairingCodesAreSingleUse(t *testing.T) {
	e := startHub(t, func(c *Config) { c.OpenRegistration = false })
	ctx := context.Background()
	code, err := e.client.PairingCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Register(ctx, "a", "WRONG-CODE1"); apiStatus(t, err) != 403 {
		t.Fatalf("wrong code: %v", err)
	}
	creds, err := e.client.Register(ctx, "a", strings.ToLower(code))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Register(ctx, "b", code); apiStatus(t, err) != 403 {
		t.Fatalf("used code: %v", err)
	}
	e.connect(creds, hello(llmCaps, nil, nil))
	if strings.Contains(e.logs.String(), creds.AuthToken) {
		t.Fatal("the worker token appears in the log")
	}
}

func TestAdminTokenCreatedOnFirstStart(t *testing.T) {
	dir := t.TempDir()
	var cfg Config
	useTestDB(t, &cfg, dir)
	h, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	token := h.AdminToken()
	want := AdminTokenFilePath(cfg.DBPath)
	if cfg.PostgresURL != "" {
		want = PostgresAdminTokenFilePath(cfg.DataDir)
	}
	if token == "" || h.AdminTokenFile() != want {
		t.Fatalf("token %q file %q", token, h.AdminTokenFile())
	}
	st, err := os.Stat(h.AdminTokenFile())
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", st, err)
	}
	b, _ := os.ReadFile(h.AdminTokenFile())
	if strings.TrimSpace(string(b)) != token {
		t.Fatal("the file does not hold the token")
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Second start: only the hash is known, and the same token still works.
	e := startHubWith(t, cfg, &lockedBuffer{})
	if e.hub.AdminToken() != "" {
		t.Fatal("AdminToken should be empty when only the hash is stored")
	}
	c := &Client{BaseURL: e.srv.URL, AdminToken: token}
	if _, err := c.Jobs(context.Background()); err != nil {
		t.Fatalf("the first token no longer works: %v", err)
	}
}

// TestIdempotencyKeyMakesASubmitSafeToRetry: a client that lost the answer to POST /v1/jobs and
// sends it again with the same Idempotency-Key gets the same job_id, and the job exists once.
func TestIdempotencyKeyMakesASubmitSafeToRetry(t *testing.T) {
	e := startHub(t, nil)
	post := func(key string) string {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, e.srv.URL+protocol.PathJobs, strings.NewReader(`{"kind":"llm","model":"m1","input":{"prompt":"once"}}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+e.hub.AdminToken())
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out protocol.JobCreated
		if resp.StatusCode != http.StatusCreated || json.NewDecoder(resp.Body).Decode(&out) != nil {
			t.Fatalf("POST with key %q: %s", key, resp.Status)
		}
		return out.JobID
	}
	first, again, other := post("order-17"), post("order-17"), post("order-18")
	if first != again || first == other || post("") == post("") {
		t.Fatalf("job ids: %s, %s (same key), %s (another key)", first, again, other)
	}
	jobs, err := e.client.Jobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, j := range jobs {
		if j.JobID == first {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the keyed job is listed %d times, want once", n)
	}
}
