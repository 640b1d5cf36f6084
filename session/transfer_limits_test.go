// transfer_limits_test.go: input size limits and redirect rules on downloads.

package session

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"studioworker/protocol"
)

// zeros is an endless body of zero bytes, as a hostile input host would send.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestInputLimitCutsTheDownload: whatever a server says or sends, the worker writes at most its
// input limit, then fails the job as not retryable and leaves no partial file.
func TestInputLimitCutsTheDownload(t *testing.T) {
	const limit = 1 << 20
	var sent atomic.Int64
	hub := newScriptHub(t)
	hub.set(func(h *scriptHub) {
		h.inputFn = func(w http.ResponseWriter, r *http.Request) {
			switch r.PathValue("id") {
			case "endless": // chunked: no Content-Length to go by
				n, _ := io.Copy(w, io.LimitReader(zeros{}, 64<<20))
				sent.Add(n)
			case "says-large":
				w.Header().Set("Content-Length", "10737418240") // 10 GiB
				w.WriteHeader(http.StatusOK)
			case "fits":
				w.Write(make([]byte, limit))
			}
		}
	})
	h := newTestHandler()
	h.setRun(func(ctx context.Context, j Job, _ func(float64, string)) (Result, error) {
		st, err := os.Stat(j.InputFile)
		if err != nil || st.Size() != limit {
			t.Errorf("input given to the engine: %v, %v", st, err)
		}
		return Result{JSON: []byte(`{"text":"ok","language":"en","segments":[]}`)}, nil
	})
	cfg := testConfig(t, hub.srv.URL)
	cfg.MaxInputBytes = limit
	s := newSession(t, cfg, h)
	startRun(t, s)
	c := hub.next(t)
	for _, tt := range []struct {
		id         string
		inputBytes int64
		want       protocol.Type
	}{
		{"endless", 0, protocol.TypeFail},
		{"says-large", 0, protocol.TypeFail},
		{"claimed-large", 5 << 20, protocol.TypeFail},
		{"fits", limit, protocol.TypeCompleteJSON},
	} {
		cl := claim(tt.id, protocol.KindSTT)
		cl.InputURL, cl.InputBytes = hub.srv.URL+protocol.InputPath(tt.id), tt.inputBytes
		c.send(protocol.Offer{Claim: cl})
		c.expect(t, protocol.TypeAccept)
		f := c.expect(t, protocol.TypeFail, protocol.TypeCompleteJSON)
		if f.FrameType() != tt.want {
			t.Fatalf("%s: %+v, want %s", tt.id, f, tt.want)
		}
		if fail, ok := f.(protocol.Fail); ok {
			if fail.Retryable || !strings.Contains(fail.Error, "input limit") {
				t.Errorf("%s: fail = %+v, want not retryable, naming the input limit", tt.id, fail)
			}
		}
		c.expect(t, protocol.TypeReadyForMore)
	}
	if n := sent.Load(); n >= 64<<20 {
		t.Errorf("the worker read all %d bytes of the endless input; it should stop at the limit", n)
	}
	left, _ := filepath.Glob(filepath.Join(cfg.SpoolDir, "jobs", "*", "input*"))
	if len(left) != 0 {
		t.Errorf("partial inputs left on disk: %v", left)
	}
}

// TestRedirectsKeepTheTokenAtHome: an input URL on the hub's origin that redirects elsewhere —
// another port on the same host, plain http to a host that is not loopback — never takes the
// worker's token along, and a hop the rules refuse is not followed.
func TestRedirectsKeepTheTokenAtHome(t *testing.T) {
	var leaked atomic.Value
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Store(r.Header.Get("Authorization"))
		w.Write([]byte("RIFF elsewhere"))
	}))
	t.Cleanup(other.Close)
	hub := newScriptHub(t)
	hub.set(func(h *scriptHub) {
		h.inputFn = func(w http.ResponseWriter, r *http.Request) {
			switch r.PathValue("id") {
			case "other-port":
				http.Redirect(w, r, other.URL+"/file", http.StatusFound)
			case "plain-http-away":
				http.Redirect(w, r, "http://192.0.2.1/file", http.StatusFound)
			}
		}
	})
	h := newTestHandler()
	h.setRun(func(ctx context.Context, j Job, _ func(float64, string)) (Result, error) {
		return Result{JSON: []byte(`{"text":"ok","language":"en","segments":[]}`)}, nil
	})
	s := newSession(t, testConfig(t, hub.srv.URL), h)
	startRun(t, s)
	c := hub.next(t)
	for _, tt := range []struct {
		id   string
		want protocol.Type
	}{{"other-port", protocol.TypeCompleteJSON}, {"plain-http-away", protocol.TypeFail}} {
		cl := claim(tt.id, protocol.KindSTT)
		cl.InputURL = hub.srv.URL + protocol.InputPath(tt.id)
		c.send(protocol.Offer{Claim: cl})
		c.expect(t, protocol.TypeAccept)
		if f := c.expect(t, protocol.TypeFail, protocol.TypeCompleteJSON); f.FrameType() != tt.want {
			t.Fatalf("%s: %+v, want %s", tt.id, f, tt.want)
		}
		c.expect(t, protocol.TypeReadyForMore)
	}
	if got, _ := leaked.Load().(string); got != "" {
		t.Fatalf("the other port received Authorization %q", got)
	}
}
