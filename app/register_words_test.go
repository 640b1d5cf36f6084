// register_words_test.go: every way a registration fails reads as a sentence with the next step,
// next to the field it is about, through the real Worker.Register against real sockets (issue 18
// finding 5: "register: Post …: dial tcp …: connection refused", "set allow_insecure", and "the
// pairing code was rejected (wrong or already used): wrong or used pairing code").

package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"studioworker/hub"
)

func TestRegisterErrorsAreSentences(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	h, err := hub.Open(ctx, hub.Config{DBPath: filepath.Join(dir, "hub.db"), AdminToken: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	studio := httptest.NewServer(h.Handler())
	t.Cleanup(func() {
		studio.Close()
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Close(cctx)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there now
	notAStudio := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notAStudio.Close)
	selfSigned := httptest.NewTLSServer(h.Handler())
	t.Cleanup(selfSigned.Close)
	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)

	tests := []struct {
		name, url, code string
		field           string
		says            string // a piece of the sentence
	}{
		{"nothing listens", "http://" + closed, "ANY", "server_url", "Nothing answers at " + closed + ". Check the address"},
		{"wrong pairing code", studio.URL, "WRONG-CODE", "pairing_code", "did not accept this pairing code: it is wrong, already used or expired. Ask your Studio for a new code"},
		{"plain http to another computer", "http://studio.example.com", "ANY", "server_url", `tick "Allow http://" in Settings`},
		{"not a Studio", notAStudio.URL, "ANY", "server_url", "This address is not a Studio"},
		{"a certificate nobody vouches for", selfSigned.URL, "ANY", "server_url", "certificate could not be verified"},
		{"https to a server without it", "https://" + strings.TrimPrefix(plain.URL, "http://"), "ANY", "server_url", "does not answer https://"},
		{"no scheme it speaks", "ftp://studio.example.com", "ANY", "server_url", "must start with https://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := NewWorker(Options{ConfigPath: filepath.Join(t.TempDir(), "config.json"), Config: DefaultConfig(),
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			err = w.Register(ctx, RegisterRequest{ServerURL: tt.url, PairingCode: tt.code, Name: "pc"})
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Register = %v, want a ValidationError", err)
			}
			msg := ve.Fields[tt.field]
			if !strings.Contains(msg, tt.says) {
				t.Errorf("%s: %q, want it to say %q (all: %v)", tt.field, msg, tt.says, ve.Fields)
			}
			for _, engineer := range []string{"dial tcp", `Post "`, "allow_insecure", "x509:", "tls:", "wrong or used pairing code"} {
				if strings.Contains(msg, engineer) {
					t.Errorf("%s: %q has an engineer's words (%q)", tt.field, msg, engineer)
				}
			}
			if !strings.HasSuffix(msg, ".") || msg[0] < 'A' || msg[0] > 'Z' {
				t.Errorf("%q is not a sentence", msg)
			}
		})
	}
}

// TestRegisterProblemTable covers what the sockets here cannot provoke: a name nobody knows, a
// timeout, the hub's throttle.
func TestRegisterProblemTable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		says string
	}{
		{"unknown host", fmt.Errorf("register: %w", &net.DNSError{Err: "no such host", Name: "studio.exmaple.com", IsNotFound: true}),
			"No computer named studio.exmaple.com could be found"},
		{"timeout", fmt.Errorf("register: %w", context.DeadlineExceeded), "The address studio.example.com did not answer in time"},
		{"empty", errors.New("server URL is empty"), "Enter your Studio's address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := "https://studio.example.com"
			if tt.name == "empty" {
				url = ""
			}
			if _, got := registerProblem(tt.err, url); !strings.Contains(got, tt.says) {
				t.Errorf("registerProblem = %q, want %q", got, tt.says)
			}
		})
	}
}

// TestBackendTestSaysWhatToDo: Settings' Test against a backend that is not running says so in a
// sentence, next to that backend (not "Test failed: backend not reachable: openai models: Get …").
func TestBackendTestSaysWhatToDo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	w, err := NewWorker(Options{ConfigPath: filepath.Join(t.TempDir(), "config.json"), Config: DefaultConfig(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.TestBackend(context.Background(), "llm", BackendForm{Backend: "openai", URL: "http://" + closed + "/v1"})
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("TestBackend = %v, want a ValidationError", err)
	}
	got := ve.Fields["engines.llm"]
	if want := "Nothing answers at " + closed + ". Start the backend, or check its address and port."; got != want {
		t.Errorf("engines.llm: %q, want %q", got, want)
	}
}
