// register_limit_test.go checks the registration throttle: the limiter's buckets and its bounded
// table directly, then the real hub over real HTTP (429, Retry-After, the error body, a throttled
// attempt spending nothing, the refusal log lines rate-limited). Every test request comes from
// 127.0.0.1, so the HTTP tests key the limit by a test header through Config.clientAddr; time
// moves only when a test moves its clock, never by sleeping.

package hub

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"studioworker/internal/handclock"
	"studioworker/protocol"
)

func TestLimiter(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	type step struct {
		at       time.Duration // since t0
		key      string
		wantWait time.Duration // 0: allowed
		wantWhy  limitReason
	}
	// burst 2 per key, one more per key every 2 s, 3 a second in total, at most 2 keys held.
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"a key's burst, then a wait for one token", []step{
			{0, "a", 0, ""}, {0, "a", 0, ""}, {0, "a", 2 * time.Second, limitKey},
			{time.Second, "a", time.Second, limitKey}, {2 * time.Second, "a", 0, ""},
		}},
		{"refused attempts cost nothing", []step{
			{0, "a", 0, ""}, {0, "a", 0, ""},
			{0, "a", 2 * time.Second, limitKey}, {0, "a", 2 * time.Second, limitKey}, {0, "a", 2 * time.Second, limitKey},
			{2 * time.Second, "a", 0, ""},
		}},
		{"another key has its own burst", []step{
			{0, "a", 0, ""}, {0, "a", 0, ""}, {0, "a", 2 * time.Second, limitKey}, {0, "b", 0, ""},
		}},
		{"the total limit holds across keys", []step{
			{0, "a", 0, ""}, {0, "b", 0, ""}, {0, "b", 0, ""}, {0, "a", time.Second / 3, limitTotal},
			{time.Second / 3, "a", 0, ""},
		}},
		{"a full table refuses a new key until a held one fills up again", []step{
			{0, "a", 0, ""}, {time.Second, "b", 0, ""}, {time.Second, "b", 0, ""},
			// a has 1 of 2 tokens at 0 s: full again at 2 s; b (both taken at 1 s) at 5 s.
			{time.Second, "c", time.Second, limitFull},
			{time.Second, "a", 0, ""}, // a held key still gets its tokens
			// a, at 1.5 tokens, took one at 1 s: full again at 4 s; b still at 5 s.
			{2 * time.Second, "c", 2 * time.Second, limitFull},
			{4 * time.Second, "c", 0, ""},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(2, 2*time.Second, 3, 2, t0)
			for i, s := range tc.steps {
				wait, why := l.allow(s.key, t0.Add(s.at))
				if wait != s.wantWait || why != s.wantWhy {
					t.Fatalf("step %d (%s at %v): got %v %q, want %v %q", i, s.key, s.at, wait, why, s.wantWait, s.wantWhy)
				}
			}
		})
	}
}

// TestLimiterTableStaysBounded: a key is dropped once its bucket is full again, and no more than
// maxKeys are ever held however many keys come.
func TestLimiterTableStaysBounded(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	l := newLimiter(5, 2*time.Second, 1e6, 100, t0)
	now := t0
	for i := range 10000 {
		now = now.Add(time.Millisecond)
		l.allow(fmt.Sprintf("10.0.%d.%d", i/256, i%256), now)
		if n := l.size(); n > 100 {
			t.Fatalf("after %d keys the table holds %d, more than its cap of 100", i+1, n)
		}
	}
	// 5 tokens at one per 2 s: 10 s after its attempt a key is full again, and a sweep drops it.
	l.allow("late", now.Add(10*time.Second+time.Millisecond))
	if n := l.size(); n != 1 {
		t.Fatalf("10 s after the flood the table holds %d keys, want only the newest", n)
	}
}

// regEnv is a hub whose registration limit is keyed by the X-Test-Addr header and whose clock is
// clk, logging JSON so the tests can read the lines' fields.
type regEnv struct {
	*env
	clk  *handclock.Clock
	logs *lockedBuffer
}

func startRegHub(t *testing.T, mutate func(*Config)) *regEnv {
	t.Helper()
	clk := handclock.New(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	logs := &lockedBuffer{}
	e := startHub(t, func(c *Config) {
		c.OpenRegistration = false
		c.Now = clk.Now
		c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		c.clientAddr = func(r *http.Request) string { return r.Header.Get("X-Test-Addr") }
		if mutate != nil {
			mutate(c)
		}
	})
	return &regEnv{env: e, clk: clk, logs: logs}
}

type regAnswer struct {
	status     int
	retryAfter string
	err        string // the error body's text
	creds      protocol.RegisterResponse
}

// post registers from addr with a pairing code over real HTTP.
func (e *regEnv) post(addr, code string) regAnswer {
	e.t.Helper()
	return e.postAt(e.srv.URL, addr, code)
}

// postAt is post to the server at base. It is safe on another goroutine while the test waits
// (it reports with Errorf, not Fatalf, and returns status 0).
func (e *regEnv) postAt(base, addr, code string) regAnswer {
	body, err := json.Marshal(protocol.RegisterRequest{Name: "pc", PairingCode: code})
	if err != nil {
		e.t.Error(err)
		return regAnswer{}
	}
	req, err := http.NewRequest(http.MethodPost, base+protocol.PathRegister, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Test-Addr", addr)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Error(err)
		return regAnswer{}
	}
	defer resp.Body.Close()
	a := regAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	if resp.StatusCode == http.StatusCreated {
		if err := json.NewDecoder(resp.Body).Decode(&a.creds); err != nil {
			e.t.Errorf("decode the 201: %v", err)
		}
		return a
	}
	var he protocol.HTTPError
	if err := json.NewDecoder(resp.Body).Decode(&he); err != nil {
		e.t.Errorf("a %d without the JSON error body: %v", resp.StatusCode, err)
	}
	a.err = he.Error
	return a
}

func (e *regEnv) code() string {
	e.t.Helper()
	c, err := e.client.PairingCode(e.t.Context())
	if err != nil {
		e.t.Fatalf("PairingCode: %v", err)
	}
	return c
}

// logLines returns the logged records whose message starts with msg.
func (e *regEnv) logLines(msg string) []map[string]any {
	e.t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			e.t.Fatalf("a log line that is not JSON: %q", line)
		}
		if m, _ := rec["msg"].(string); strings.HasPrefix(m, msg) {
			out = append(out, rec)
		}
	}
	return out
}

// TestRegisterThrottledOverHTTP: past the burst of one address the hub answers 429 with
// Retry-After and the contract's error body, another address still registers, and the throttled
// attempt spent nothing: its code registers once the address may try again.
func TestRegisterThrottledOverHTTP(t *testing.T) {
	e := startRegHub(t, nil)
	for i := range DefaultRegisterAddrBurst {
		if a := e.post("198.51.100.7", "WRONG-CODE"); a.status != http.StatusForbidden {
			t.Fatalf("attempt %d within the burst: %d %q, want 403", i+1, a.status, a.err)
		}
	}
	code := e.code()
	a := e.post("198.51.100.7", code)
	if a.status != http.StatusTooManyRequests || a.retryAfter != "2" {
		t.Fatalf("past the burst: %d Retry-After %q, want 429 and 2", a.status, a.retryAfter)
	}
	if want := "too many registration attempts from this address; try again in 2 s"; a.err != want {
		t.Errorf("429 body %q, want %q", a.err, want)
	}
	if b := e.post("203.0.113.9", e.code()); b.status != http.StatusCreated {
		t.Fatalf("another address: %d %q, want 201", b.status, b.err)
	}
	e.clk.Add(2 * time.Second)
	if a := e.post("198.51.100.7", code); a.status != http.StatusCreated {
		t.Fatalf("the throttled attempt's code, 2 s later: %d %q, want 201 (the 429 must not spend it)", a.status, a.err)
	}
	e.waitMetric("studio_hub_registrations_throttled_total 1")
	e.waitMetric(fmt.Sprintf("studio_hub_registrations_refused_total %d", DefaultRegisterAddrBurst))
}

// TestRegisterLimitsOverHTTP: the total limit and the full table of addresses answer 429 too,
// each saying what happened.
func TestRegisterLimitsOverHTTP(t *testing.T) {
	for _, tc := range []struct {
		name      string
		mutate    func(*Config)
		addrs     []string // each registers once, in order; the last is refused
		wantRetry string
		wantErr   string
	}{
		{"total", func(c *Config) { c.RegisterRate = 2 }, []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"},
			"1", "the hub is taking too many registrations right now; try again in 1 s"},
		{"table full", func(c *Config) { c.RegisterMaxAddrs = 2 }, []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"},
			// the first address took 1 of its 5 tokens: full again, and dropped, 2 s later
			"2", "too many addresses are registering at once; try again in 2 s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startRegHub(t, tc.mutate)
			last := len(tc.addrs) - 1
			for _, addr := range tc.addrs[:last] {
				if a := e.post(addr, e.code()); a.status != http.StatusCreated {
					t.Fatalf("%s: %d %q, want 201", addr, a.status, a.err)
				}
			}
			a := e.post(tc.addrs[last], e.code())
			if a.status != http.StatusTooManyRequests || a.retryAfter != tc.wantRetry || a.err != tc.wantErr {
				t.Fatalf("got %d Retry-After %q %q, want 429 %q %q", a.status, a.retryAfter, a.err, tc.wantRetry, tc.wantErr)
			}
		})
	}
}

// TestRegisterRefusalLogIsRateLimited: a flood of wrong codes (from many addresses, so the
// throttle does not stop them) and of throttled attempts each write one WARN line per
// refusalLogEvery, and the next line counts the ones held back.
func TestRegisterRefusalLogIsRateLimited(t *testing.T) {
	e := startRegHub(t, nil)
	for i := range 20 {
		if a := e.post(fmt.Sprintf("192.0.2.%d", i), "WRONG-CODE"); a.status != http.StatusForbidden {
			t.Fatalf("wrong code %d: %d, want 403", i, a.status)
		}
	}
	for i := range 20 + DefaultRegisterAddrBurst {
		a := e.post("198.51.100.7", "WRONG-CODE")
		if want := http.StatusForbidden; i >= DefaultRegisterAddrBurst {
			want = http.StatusTooManyRequests
			if a.status != want {
				t.Fatalf("attempt %d: %d, want %d", i, a.status, want)
			}
		}
	}
	refused, throttled := e.logLines("registration refused"), e.logLines("registration throttled")
	if len(refused) != 1 || len(throttled) != 1 {
		t.Fatalf("%d refused and %d throttled lines for 25 refusals and 20 throttled attempts, want 1 each:\n%s",
			len(refused), len(throttled), e.logs.String())
	}
	if refused[0]["level"] != "WARN" || refused[0]["suppressed"] != 0.0 || throttled[0]["suppressed"] != 0.0 {
		t.Fatalf("first lines: %v / %v, want WARN with suppressed=0", refused[0], throttled[0])
	}
	e.clk.Add(refusalLogEvery)
	e.post("192.0.2.200", "WRONG-CODE")
	for range DefaultRegisterAddrBurst + 1 {
		e.post("198.51.100.8", "WRONG-CODE")
	}
	refused, throttled = e.logLines("registration refused"), e.logLines("registration throttled")
	if len(refused) != 2 || len(throttled) != 2 {
		t.Fatalf("after %v: %d refused and %d throttled lines, want 2 each", refusalLogEvery, len(refused), len(throttled))
	}
	if got := refused[1]["suppressed"]; got != float64(20+DefaultRegisterAddrBurst-1) {
		t.Errorf("the second refused line says suppressed=%v, want %d", got, 20+DefaultRegisterAddrBurst-1)
	}
	if got := throttled[1]["suppressed"]; got != 19.0 {
		t.Errorf("the second throttled line says suppressed=%v, want 19", got)
	}
	if throttled[1]["addr"] != "198.51.100.8" || throttled[1]["limit"] != string(limitKey) {
		t.Errorf("throttled line fields: %v", throttled[1])
	}
}

func TestRemoteIP(t *testing.T) {
	for _, tc := range []struct{ remote, want string }{
		{"192.0.2.1:5000", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:5000", "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:5000", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:6000", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:80", "fe80::/64"},
		{"@", "@"},
	} {
		r := &http.Request{RemoteAddr: tc.remote, Header: http.Header{"X-Forwarded-For": {"203.0.113.1"}}}
		if got := remoteIP(r); got != tc.want {
			t.Errorf("remoteIP(%q) = %q, want %q", tc.remote, got, tc.want)
		}
	}
}
