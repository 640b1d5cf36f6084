// config_test.go: the session's backoff, its server URL rules and the configs it refuses.

package session

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestBackoffDelayIsFullJitterOverACappedDoubling(t *testing.T) {
	tests := []struct {
		name string
		b    Backoff
		want []time.Duration // for attempts 1, 2, ...
	}{
		{"contract defaults at the ceiling", Backoff{Rand: func() float64 { return 1 }},
			[]time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}},
		{"half jitter", Backoff{Rand: func() float64 { return 0.5 }},
			[]time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 15 * time.Second}},
		{"zero jitter", Backoff{Rand: func() float64 { return 0 }}, []time.Duration{0, 0, 0}},
		{"custom base and max", Backoff{Base: 100 * time.Millisecond, Max: time.Second, Rand: func() float64 { return 1 }},
			[]time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, want := range tt.want {
				if got := tt.b.Delay(i + 1); got != want {
					t.Errorf("Delay(%d) = %v, want %v", i+1, got, want)
				}
			}
		})
	}
	// A very large attempt number must not overflow into a negative or huge wait.
	if got := (Backoff{Rand: func() float64 { return 1 }}).Delay(1000); got != 30*time.Second {
		t.Errorf("Delay(1000) = %v, want 30s", got)
	}
	if got := (Backoff{}).Delay(3); got < 0 || got > 4*time.Second {
		t.Errorf("default Rand: Delay(3) = %v, want within [0, 4s]", got)
	}
}

func TestCheckServerURL(t *testing.T) {
	tests := []struct {
		url      string
		insecure bool
		wantErr  error // nil: accepted; errAny: some other error
	}{
		{"https://studio.example.com", false, nil},
		{"http://127.0.0.1:7860", false, nil},
		{"http://127.1.2.3", false, nil},
		{"http://localhost:8080/base/", false, nil},
		{"http://[::1]:80", false, nil},
		{"http://studio.example.com", false, ErrInsecureURL},
		{"http://10.0.0.5:7860", false, ErrInsecureURL},
		{"http://studio.example.com", true, nil},
		{"ftp://studio.example.com", false, errAny},
		{"studio.example.com", false, errAny},
		{"", false, errAny},
		{"https://studio.example.com/?x=1", false, errAny},
	}
	for _, tt := range tests {
		err := CheckServerURL(tt.url, tt.insecure)
		switch {
		case tt.wantErr == nil && err != nil:
			t.Errorf("CheckServerURL(%q, %v) = %v, want nil", tt.url, tt.insecure, err)
		case tt.wantErr == errAny && err == nil:
			t.Errorf("CheckServerURL(%q, %v) = nil, want an error", tt.url, tt.insecure)
		case tt.wantErr == ErrInsecureURL && !errors.Is(err, ErrInsecureURL):
			t.Errorf("CheckServerURL(%q, %v) = %v, want ErrInsecureURL", tt.url, tt.insecure, err)
		}
	}
	// The refusal names the host, so the user knows what to change.
	if err := CheckServerURL("http://studio.example.com", false); err == nil || !strings.Contains(err.Error(), "studio.example.com") {
		t.Errorf("the insecure refusal does not name the host: %v", err)
	}
}

var errAny = errors.New("any error")

func TestNewRefusesWhatCannotWork(t *testing.T) {
	h := newTestHandler()
	base := Config{ServerURL: "https://studio.example.com", WorkerID: "w1", AuthToken: "tok", SpoolDir: t.TempDir()}
	tests := []struct {
		name string
		mod  func(c *Config)
		want error
	}{
		{"no worker id", func(c *Config) { c.WorkerID = "" }, ErrRegisterFirst},
		{"no token", func(c *Config) { c.AuthToken = "" }, ErrRegisterFirst},
		{"plain http to a remote host", func(c *Config) { c.ServerURL = "http://studio.example.com" }, ErrInsecureURL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.mod(&cfg)
			if _, err := New(cfg, h); !errors.Is(err, tt.want) {
				t.Fatalf("New = %v, want %v", err, tt.want)
			}
		})
	}
	if !strings.Contains(ErrRegisterFirst.Error(), "register first") {
		t.Errorf("ErrRegisterFirst does not say register first: %q", ErrRegisterFirst)
	}
	cfg := base
	cfg.ServerURL, cfg.AllowInsecure = "http://studio.example.com", true
	if _, err := New(cfg, h); err != nil {
		t.Fatalf("allow_insecure: %v", err)
	}
}
