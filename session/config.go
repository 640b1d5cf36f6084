// config.go is the session's settings and their defaults, the reconnect backoff, and the rule for
// which server URLs are allowed (https, or plain http only to loopback or with allow_insecure).

package session

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Config is what a Session needs to reach its hub. Zero durations and sizes take the contract's
// defaults (see withDefaults).
type Config struct {
	ServerURL, WorkerID, AuthToken string
	AllowInsecure                  bool
	// SpoolDir holds the outbox and the jobs' working files; created 0700 if missing.
	SpoolDir          string
	AgentVersion      string
	ReconnectAttempts int // 0 = forever
	Logger            *slog.Logger
	// HTTPClient is used for the upgrade, uploads, downloads and registration. The default has
	// connect, TLS and response-header timeouts but no overall timeout, so a long upload is not cut.
	HTTPClient                *http.Client
	Backoff                   Backoff       // zero value = contract defaults
	PingInterval, PingTimeout time.Duration // defaults 15s, 10s
	LogFlushInterval          time.Duration // default 1s
	LogBufferSize             int           // default 10,000
	ProgressInterval          time.Duration // default 250ms (max 4 progress frames/s per job)
	// MaxInputBytes is the most a job's input download may write to disk, whatever the server
	// says or sends (spec §6); past it the job fails, not retryable. 0 = DefaultMaxInputBytes.
	MaxInputBytes int64
}

// Defaults of the contract.
const (
	DefaultPingInterval     = 15 * time.Second
	DefaultPingTimeout      = 10 * time.Second
	DefaultLogFlushInterval = time.Second
	DefaultLogBufferSize    = 10_000
	DefaultProgressInterval = 250 * time.Millisecond
	DefaultMaxInputBytes    = 2 << 30 // 2 GiB
)

func (c Config) withDefaults() Config {
	if c.PingInterval <= 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = DefaultPingTimeout
	}
	if c.LogFlushInterval <= 0 {
		c.LogFlushInterval = DefaultLogFlushInterval
	}
	if c.LogBufferSize <= 0 {
		c.LogBufferSize = DefaultLogBufferSize
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	if c.MaxInputBytes <= 0 {
		c.MaxInputBytes = DefaultMaxInputBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = DefaultHTTPClient()
	}
	if c.SpoolDir == "" {
		if dir, err := os.UserCacheDir(); err == nil {
			c.SpoolDir = filepath.Join(dir, "studio-worker", "spool")
		}
	}
	c.Backoff = c.Backoff.withDefaults()
	return c
}

// DefaultHTTPClient returns the client a Session uses when Config.HTTPClient is nil: bounded
// connect, TLS handshake and response-header waits, and no overall timeout (an upload of a large
// video may legitimately take many minutes).
func DefaultHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
	}}
}

// Backoff is the reconnect policy of the contract: before attempt n the worker waits
// Rand() × min(Max, Base × 2^(n-1)) (full jitter), and counts from 1 again once a session has
// stayed up for HealthyAfter. The zero value means the contract's defaults.
type Backoff struct {
	Base, Max, HealthyAfter time.Duration // defaults 1s, 30s, 60s
	// Rand returns a number in [0, 1); default math/rand/v2.Float64. Tests fix it to get an exact
	// schedule.
	Rand func() float64
}

func (b Backoff) withDefaults() Backoff {
	if b.Base <= 0 {
		b.Base = time.Second
	}
	if b.Max <= 0 {
		b.Max = 30 * time.Second
	}
	if b.HealthyAfter <= 0 {
		b.HealthyAfter = 60 * time.Second
	}
	if b.Rand == nil {
		b.Rand = rand.Float64
	}
	return b
}

// Ceiling returns min(Max, Base × 2^(attempt-1)), the upper bound of the wait before attempt
// (0 for attempt < 1).
func (b Backoff) Ceiling(attempt int) time.Duration {
	b = b.withDefaults()
	if attempt < 1 {
		return 0
	}
	d := b.Base
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// Delay returns the wait before reconnect attempt n (n ≥ 1): Rand() × Ceiling(n).
func (b Backoff) Delay(attempt int) time.Duration {
	b = b.withDefaults()
	r := b.Rand()
	if r < 0 {
		r = 0
	}
	if r > 1 {
		r = 1
	}
	return time.Duration(r * float64(b.Ceiling(attempt)))
}

// CheckServerURL applies the contract's transport rule alone (for config validation): server_url
// must be an absolute http(s) URL, and plain http:// is refused for a host that is not loopback
// unless allowInsecure is set. The refusal wraps ErrInsecureURL and names the host.
func CheckServerURL(serverURL string, allowInsecure bool) error {
	_, err := parseServerURL(serverURL, allowInsecure)
	return err
}

// schemeAllowed is the one rule for every URL the session talks to — the server URL, an
// input_url, each hop of a redirect: https, or plain http only to loopback unless allow_insecure.
func schemeAllowed(u *url.URL, allowInsecure bool) error {
	switch strings.ToLower(u.Scheme) {
	case "https":
		return nil
	case "http":
		if !allowInsecure && !isLoopback(u.Hostname()) {
			return fmt.Errorf("%w (host %s)", ErrInsecureURL, u.Hostname())
		}
		return nil
	}
	return fmt.Errorf("scheme %q is not http(s)", u.Scheme)
}

func parseServerURL(serverURL string, allowInsecure bool) (*url.URL, error) {
	if strings.TrimSpace(serverURL) == "" {
		return nil, errors.New("server URL is empty")
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("server URL %q: %w", serverURL, err)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("server URL %q has no host", serverURL)
	}
	if err := schemeAllowed(u, allowInsecure); err != nil {
		if errors.Is(err, ErrInsecureURL) {
			return nil, err
		}
		return nil, fmt.Errorf("server URL %q: scheme must be http or https", serverURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("server URL %q: must not carry a query or fragment", serverURL)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
