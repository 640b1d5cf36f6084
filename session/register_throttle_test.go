// register_throttle_test.go: a registration the hub throttles (429) comes back as an error that
// says when to try again, read from Retry-After, against the real hub's throttle and against a
// hub that answers with an HTTP date. It must not know how the hub counts attempts.

package session

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"studioworker/hub"
)

func TestRegisterThrottledSaysWhenToTryAgain(t *testing.T) {
	cfg := hub.Config{DBPath: filepath.Join(t.TempDir(), "hub.db"), OpenRegistration: true, AdminToken: "a",
		RegisterAddrBurst: 1, RegisterAddrRefill: 30 * time.Second}
	h, err := hub.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(func() { h.Close(context.Background()); srv.Close() })
	if _, err := Register(context.Background(), nil, srv.URL, false, "first", "any"); err != nil {
		t.Fatalf("first registration: %v", err)
	}
	before := time.Now()
	_, err = Register(context.Background(), nil, srv.URL, false, "second", "any")
	var te *ThrottledError
	if !errors.As(err, &te) {
		t.Fatalf("second registration = %v, want a *ThrottledError", err)
	}
	if te.RetryAfter != 30*time.Second || te.At.Before(before.Add(30*time.Second)) || te.At.After(time.Now().Add(30*time.Second)) {
		t.Fatalf("RetryAfter %v At %v, want 30 s from now", te.RetryAfter, te.At)
	}
	msg := err.Error()
	for _, want := range []string{"register", "429", "too many registration attempts from this address", "try again in 30s, at " + te.At.Format("15:04:05")} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
}

func TestRegisterThrottledReadsAnHTTPDate(t *testing.T) {
	at := time.Now().Add(90 * time.Second).UTC().Truncate(time.Second)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", at.Format(http.TimeFormat))
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	t.Cleanup(srv.Close)
	_, err := Register(context.Background(), nil, srv.URL, false, "m", "x")
	var te *ThrottledError
	if !errors.As(err, &te) || te.HubSaid != "" {
		t.Fatalf("Register = %v, want a *ThrottledError without words from the hub", err)
	}
	if d := te.At.Sub(at); d < -time.Second || d > time.Second {
		t.Fatalf("At %v, want %v", te.At, at)
	}
	if !strings.Contains(err.Error(), "try again in ") {
		t.Errorf("error %q does not say when", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"2", 2 * time.Second, true},
		{"0", time.Second, true},
		{"99999999999", 24 * time.Hour, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{"", 0, false},
		{"Tue, 01 Dec 2026 10:01:00 GMT", time.Minute, true},
		{"Tue, 01 Dec 2026 09:00:00 GMT", time.Second, true},
	} {
		if got, ok := parseRetryAfter(tc.in, now); got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v %v, want %v %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
