// register_code_test.go checks what may spend a pairing code: a code past --pairing-ttl is refused
// like a wrong one, and a registration whose client left spends nothing; over real HTTP against
// the real hub with a clock the test moves. The second test holds the store's writer, the one
// place it reaches inside the hub, since no client can time its departure that precisely.

package hub

import (
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
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
			e.clk.Add(tc.age)
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

// TestRegistrationOfAGoneClientSpendsNothing: a registration whose client went away while its
// write waited in the store's queue, or while that write was being committed, must not spend the
// code, since nobody receives the token. When the hub notices a closed connection is up to the
// HTTP server, so this cannot be timed over the wire: the test holds the store's writer with a
// write of its own and cancels the request's context from a server wrapped around the hub's
// handler — before the registration's write runs, or from a write queued right behind it, which
// runs in the same batch after its check and before its commit.
func TestRegistrationOfAGoneClientSpendsNothing(t *testing.T) {
	for _, tc := range []struct {
		name         string
		duringCommit bool
	}{
		{"left while queued", false},
		{"left during the commit", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startRegHub(t, nil)
			code := e.code()
			handler := e.hub.Handler()
			gone := make(chan context.CancelFunc, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ctx, cancel := context.WithCancel(r.Context())
				defer cancel()
				gone <- cancel
				handler.ServeHTTP(w, r.WithContext(ctx))
			}))
			defer srv.Close()

			started, release := make(chan struct{}), make(chan struct{})
			e.hub.db.enqueue(func(*sql.Tx) error { close(started); <-release; return nil }, nil)
			<-started
			answered := make(chan regAnswer, 1)
			go func() { answered <- e.postAt(srv.URL, "192.0.2.1", code) }()
			leave := <-gone
			waitQueued(t, e.hub.db, 1)
			if tc.duringCommit {
				e.hub.db.enqueue(func(*sql.Tx) error { leave(); return nil }, nil)
			} else {
				leave()
			}
			close(release)
			if a := <-answered; a.status != http.StatusServiceUnavailable {
				t.Fatalf("a registration whose client had left: %d %q, want 503", a.status, a.err)
			}
			again := e.post("192.0.2.1", code)
			if again.status != http.StatusCreated {
				t.Fatalf("the code after its client left: %d %q, want 201 (nobody received the token it was spent for)", again.status, again.err)
			}
			ws, err := e.client.Workers(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(ws) != 1 || ws[0].WorkerID != again.creds.WorkerID {
				t.Fatalf("workers %+v, want only %s: the one nobody received is not kept", ws, again.creds.WorkerID)
			}
		})
	}
}

// waitQueued polls until n writes wait in s's queue.
func waitQueued(t *testing.T, s *store, n int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		s.mu.Lock()
		got := len(s.pending)
		s.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for an event
	}
}
