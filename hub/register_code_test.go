// register_code_test.go checks what may spend a pairing code: a code past --pairing-ttl is refused
// like a wrong one, over real HTTP against the real hub with a clock the test moves.

package hub

import (
	"net/http"
	"testing"
	"time"
)

func TestExpiredPairingCodeIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		ttl  time.Duration // 0: the default
		age  time.Duration // of the code when it is used
		want int
	}{
		{"new", 0, 0, http.StatusCreated},
		{"a day old to the nanosecond", 0, DefaultPairingTTL, http.StatusCreated},
		{"a day and a nanosecond", 0, DefaultPairingTTL + time.Nanosecond, http.StatusForbidden},
		// created_at "…:00Z" sorts after "…:00.5Z" as text: this one is caught only by
		// comparing times.
		{"a day and half a second", 0, DefaultPairingTTL + 500*time.Millisecond, http.StatusForbidden},
		{"an hour's TTL, 59 minutes", time.Hour, 59 * time.Minute, http.StatusCreated},
		{"an hour's TTL, 61 minutes", time.Hour, 61 * time.Minute, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startRegHub(t, func(c *Config) { c.PairingTTL = tc.ttl })
			code := e.code()
			e.clk.advance(tc.age)
			a := e.post("192.0.2.1", code)
			if a.status != tc.want {
				t.Fatalf("a code %v old: %d %q, want %d", tc.age, a.status, a.err, tc.want)
			}
			if tc.want != http.StatusForbidden {
				return
			}
			if a.err != "wrong, used or expired pairing code" {
				t.Errorf("403 body %q", a.err)
			}
			lines := e.logLines("registration refused")
			if len(lines) != 1 || lines[0]["reason"] != "expired" {
				t.Errorf("log lines %v, want one with reason=expired", lines)
			}
		})
	}
}
