// conn_test.go: one connection — credentials refused at the upgrade, proxy pages, error frames and close codes, malformed and unknown frames, shutdown.

package session

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"studioworker/protocol"
)

func TestCredentialsRejectedAtTheUpgradeEndRunWithoutRetry(t *testing.T) {
	for _, code := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			hub := newScriptHub(t)
			hub.set(func(h *scriptHub) { h.upgradeCode = code })
			h := newTestHandler()
			s := newSession(t, testConfig(t, hub.srv.URL), h)
			err := startRun(t, s).wait(t)
			if !errors.Is(err, ErrAuthFailed) {
				t.Fatalf("Run = %v, want ErrAuthFailed", err)
			}
			if n := hub.upgrades.Load(); n != 1 {
				t.Fatalf("%d upgrade attempts, want 1 (no retry storm)", n)
			}
			h.waitEvent(t, "auth_failed state", connState(ConnAuthFailed))
		})
	}
}

func TestAProxyErrorPageIsRetriedUntilTheAttemptsRunOut(t *testing.T) {
	hub := newScriptHub(t)
	hub.set(func(h *scriptHub) { h.upgradeCode = http.StatusBadGateway })
	h := newTestHandler()
	cfg := testConfig(t, hub.srv.URL)
	cfg.ReconnectAttempts = 3
	cfg.Backoff.Rand = func() float64 { return 1 }
	s := newSession(t, cfg, h)
	err := startRun(t, s).wait(t)
	if !errors.Is(err, ErrGaveUp) || errors.Is(err, ErrAuthFailed) {
		t.Fatalf("Run = %v, want ErrGaveUp", err)
	}
	if !strings.Contains(err.Error(), "502") {
		t.Errorf("the error does not say what went wrong: %v", err)
	}
	if n := hub.upgrades.Load(); n != 4 {
		t.Fatalf("%d upgrade attempts, want 4 (the first + 3 reconnects)", n)
	}
	// The schedule is the contract's: attempts 1, 2, 3 with ceilings 1, 2, 4 ms (Rand fixed at 1).
	var attempts []int
	for _, e := range h.eventsOf(connState(ConnReconnecting)) {
		ce := e.(ConnEvent)
		attempts = append(attempts, ce.Attempt)
		if ce.NextRetry.IsZero() || ce.Err == nil {
			t.Errorf("reconnecting event without next retry or error: %+v", ce)
		}
	}
	if !slices.Equal(attempts, []int{1, 2, 3}) {
		t.Fatalf("reconnect attempts = %v", attempts)
	}
	h.waitEvent(t, "gave up", connState(ConnGaveUp))
}

func TestErrorFramesAndCloseCodes(t *testing.T) {
	tests := []struct {
		name      string
		script    func(c *hubConn)
		want      error // nil: reconnects
		wantState ConnState
	}{
		{"auth_failed frame", func(c *hubConn) {
			c.send(protocol.Error{Code: protocol.ErrCodeAuthFailed, Message: "token revoked"})
			c.ws.Close(protocol.CloseAuthFailed, "auth failed")
		}, ErrAuthFailed, ConnAuthFailed},
		{"close 4001 without the frame", func(c *hubConn) { c.ws.Close(protocol.CloseAuthFailed, "") }, ErrAuthFailed, ConnAuthFailed},
		{"superseded frame", func(c *hubConn) {
			c.send(protocol.Error{Code: protocol.ErrCodeSuperseded, Message: "elsewhere"})
			c.ws.Close(protocol.CloseSuperseded, "superseded")
		}, ErrSuperseded, ConnSuperseded},
		{"close 4002 without the frame", func(c *hubConn) { c.ws.Close(protocol.CloseSuperseded, "") }, ErrSuperseded, ConnSuperseded},
		{"shutting_down", func(c *hubConn) {
			c.send(protocol.Error{Code: protocol.ErrCodeShuttingDown, Message: "bye"})
			c.ws.Close(protocol.CloseServiceRestart, "restart")
		}, nil, ""},
		{"internal", func(c *hubConn) { c.send(protocol.Error{Code: protocol.ErrCodeInternal, Message: "oops"}) }, nil, ""},
		{"protocol_error", func(c *hubConn) {
			c.send(protocol.Error{Code: protocol.ErrCodeProtocolError, Message: "?"})
			c.ws.Close(protocol.CloseProtocolError, "")
		}, nil, ""},
		{"plain drop", func(c *hubConn) { c.ws.CloseNow() }, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := newScriptHub(t)
			h := newTestHandler()
			s := newSession(t, testConfig(t, hub.srv.URL), h)
			r := startRun(t, s)
			c := hub.next(t)
			h.waitEvent(t, "connected", connState(ConnConnected))
			tt.script(c)
			if tt.want != nil {
				if err := r.wait(t); !errors.Is(err, tt.want) {
					t.Fatalf("Run = %v, want %v", err, tt.want)
				}
				h.waitEvent(t, "final state", connState(tt.wantState))
				if n := hub.upgrades.Load(); n != 1 {
					t.Fatalf("%d connections, want no reconnect", n)
				}
				return
			}
			c2 := hub.next(t) // reconnected
			h.waitEvent(t, "reconnecting", connState(ConnReconnecting))
			c2.expect(t, protocol.TypeHeartbeat)
			if err := r.stop(t); err != nil {
				t.Fatalf("Run after stop = %v, want nil", err)
			}
		})
	}
}

func TestMalformedFramesAreAnsweredWith1002AndAReconnect(t *testing.T) {
	big := `{"type":"unknown_big","pad":"` + strings.Repeat("x", protocol.MaxFrameBytes) + `"}`
	tests := []struct {
		name     string
		typ      websocket.MessageType
		data     string
		wantCode websocket.StatusCode
	}{
		{"not JSON", websocket.MessageText, `{"type":"offer",`, protocol.CloseProtocolError},
		{"not an object", websocket.MessageText, `[1,2]`, protocol.CloseProtocolError},
		{"no type", websocket.MessageText, `{"job_id":"x"}`, protocol.CloseProtocolError},
		{"missing field", websocket.MessageText, `{"type":"cancel","reason":"expired"}`, protocol.CloseProtocolError},
		{"null list item", websocket.MessageText, `{"type":"offer","claim":{"job_id":"j","kind":"llm","model":"m","vram_gb_estimate":0,"input":{},"expires_at":"nope"}}`, protocol.CloseProtocolError},
		{"binary frame", websocket.MessageBinary, `{"type":"heartbeat_ack"}`, protocol.CloseProtocolError},
		{"oversized frame", websocket.MessageText, big, websocket.StatusMessageTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := newScriptHub(t)
			h := newTestHandler()
			s := newSession(t, testConfig(t, hub.srv.URL), h)
			r := startRun(t, s)
			c := hub.next(t)
			h.waitEvent(t, "connected", connState(ConnConnected))
			_ = c.sendRaw(tt.typ, []byte(tt.data))
			if code := c.expectClose(t); code != tt.wantCode {
				t.Fatalf("the worker closed with %v (%v), want %v", code, c.err(), tt.wantCode)
			}
			c2 := hub.next(t)
			c2.expect(t, protocol.TypeHeartbeat)
			if err := r.stop(t); err != nil {
				t.Fatalf("Run = %v", err)
			}
		})
	}
}

func TestUnknownFramesAreIgnored(t *testing.T) {
	hub := newScriptHub(t)
	h := newTestHandler()
	s := newSession(t, testConfig(t, hub.srv.URL), h)
	startRun(t, s)
	c := hub.next(t)
	c.sendRaw(websocket.MessageText, []byte(`{"type":"quota_update","quota":3}`))
	c.send(protocol.Offer{Claim: claim("after-unknown", protocol.KindLLM)})
	if a := c.expect(t, protocol.TypeAccept); a != (protocol.Accept{JobID: "after-unknown"}) {
		t.Fatalf("answer = %#v", a)
	}
	if n := hub.upgrades.Load(); n != 1 {
		t.Fatalf("%d connections: an unknown frame dropped the connection", n)
	}
}

func TestShutdownClosesWith1000AndSpoolsTheInterruptedJob(t *testing.T) {
	hub := newScriptHub(t)
	h := newTestHandler()
	started := make(chan struct{})
	h.setRun(func(ctx context.Context, j Job, _ func(float64, string)) (Result, error) {
		close(started)
		<-ctx.Done()
		return Result{}, ctx.Err()
	})
	cfg := testConfig(t, hub.srv.URL)
	s := newSession(t, cfg, h)
	r := startRun(t, s)
	c := hub.next(t)
	c.send(protocol.Offer{Claim: claim("long", protocol.KindLLM)})
	c.expect(t, protocol.TypeAccept)
	<-started
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil on cancel", err)
	}
	if code := c.expectClose(t); code != websocket.StatusNormalClosure {
		t.Fatalf("closed with %v, want 1000", code)
	}
	h.waitEvent(t, "stopped", connState(ConnStopped))
	if s.OutboxLen() != 1 || len(s.Running()) != 0 {
		t.Fatalf("after stop: outbox %d, running %v; want the interrupted job spooled as a fail", s.OutboxLen(), s.Running())
	}
	// The next process delivers it first thing: hello lists it, and the fail is sent.
	s2 := newSession(t, cfg, newTestHandler())
	startRun(t, s2)
	c2 := hub.next(t)
	if !slices.Equal(c2.hello.Outbox, []string{"long"}) {
		t.Fatalf("hello.outbox = %v", c2.hello.Outbox)
	}
	f := c2.expect(t, protocol.TypeFail).(protocol.Fail)
	if f.JobID != "long" || !f.Retryable {
		t.Fatalf("fail = %+v", f)
	}
}

func TestReconnectAfterDropResendsOutboxAndLogsFirst(t *testing.T) {
	hub := newScriptHub(t)
	hub.set(func(h *scriptHub) { h.noLogAck = true })
	proxy := newTCPProxy(t, strings.TrimPrefix(hub.srv.URL, "http://"))
	h := newTestHandler()
	release := make(chan struct{})
	h.setRun(func(ctx context.Context, j Job, _ func(float64, string)) (Result, error) {
		<-release
		return defaultRun(ctx, j, nil)
	})
	s := newSession(t, testConfig(t, proxy.url()), h)
	startRun(t, s)
	c := hub.next(t)
	s.Log(protocol.LogEntry{Level: protocol.LevelInfo, Source: "app", Message: "before the drop"})
	first := c.expect(t, protocol.TypeLogBatch).(protocol.LogBatch)
	c.send(protocol.Offer{Claim: claim("survivor", protocol.KindLLM)})
	c.expect(t, protocol.TypeAccept)

	// The connection drops while the job runs; the job goes on and finishes offline.
	proxy.setRefuse(true)
	proxy.cutAll()
	h.waitEvent(t, "reconnecting", connState(ConnReconnecting))
	close(release)
	h.waitEvent(t, "job ended", func(e Event) bool { _, ok := e.(JobEndedEvent); return ok })
	proxy.setRefuse(false)

	c2 := hub.next(t)
	if !slices.Equal(c2.hello.Outbox, []string{"survivor"}) || len(c2.hello.InFlight) != 0 {
		t.Fatalf("hello after reconnect: in_flight %v outbox %v", c2.hello.InFlight, c2.hello.Outbox)
	}
	// The result is the first thing after hello; the unacked log batch comes again, same seq.
	if f := c2.expect(t, protocol.TypeCompleteJSON, protocol.TypeOffer, protocol.TypeHeartbeat, protocol.TypeLogBatch); f.FrameType() != protocol.TypeCompleteJSON {
		t.Fatalf("first frame after hello = %s, want complete_json", f.FrameType())
	}
	again := c2.expect(t, protocol.TypeLogBatch).(protocol.LogBatch)
	if again.Seq != first.Seq || len(again.Entries) == 0 || again.Entries[0].Message != "before the drop" {
		t.Fatalf("resent batch = %+v, want seq %d again", again, first.Seq)
	}
	c2.send(protocol.LogAck{Seq: again.Seq})
	c2.send(protocol.CompleteAck{JobID: "survivor", Status: protocol.AckStored})
	waitFor(t, "outbox empty", func() bool { return s.OutboxLen() == 0 })
	waitFor(t, "batch acked", func() bool { _, p, _ := s.logs.stats(); return p == 0 || !pendingHas(s, first.Seq) })
	// A later batch gets a higher seq.
	s.Log(protocol.LogEntry{Message: "after"})
	for {
		b := c2.expect(t, protocol.TypeLogBatch).(protocol.LogBatch)
		if b.Seq > first.Seq && slices.ContainsFunc(b.Entries, func(e protocol.LogEntry) bool { return e.Message == "after" }) {
			break
		}
	}
}

func pendingHas(s *Session, seq uint64) bool {
	s.logs.mu.Lock()
	defer s.logs.mu.Unlock()
	for _, b := range s.logs.pending {
		if b.seq == seq {
			return true
		}
	}
	return false
}

func TestCutInTheMiddleOfAFrameLosesNothing(t *testing.T) {
	hub := newScriptHub(t)
	proxy := newTCPProxy(t, strings.TrimPrefix(hub.srv.URL, "http://"))
	h := newTestHandler()
	text := strings.Repeat("long answer ", 40_000) // ~480 KB: many TCP segments
	ready := make(chan struct{})
	h.setRun(func(ctx context.Context, j Job, _ func(float64, string)) (Result, error) {
		<-ready
		b, _ := json.Marshal(protocol.LLMResult{Text: text, FinishReason: "stop"})
		return Result{JSON: b}, nil
	})
	s := newSession(t, testConfig(t, proxy.url()), h)
	startRun(t, s)
	c := hub.next(t)
	c.send(protocol.Offer{Claim: claim("cut", protocol.KindLLM)})
	c.expect(t, protocol.TypeAccept)
	proxy.cutAfterBytes(100_000) // the complete_json frame is cut a fifth of the way in
	close(ready)

	c2 := hub.next(t)
	if !slices.Equal(c2.hello.Outbox, []string{"cut"}) {
		t.Fatalf("hello.outbox = %v", c2.hello.Outbox)
	}
	cj := c2.expect(t, protocol.TypeCompleteJSON).(protocol.CompleteJSON)
	var res protocol.LLMResult
	if err := json.Unmarshal(cj.Result, &res); err != nil || res.Text != text {
		t.Fatalf("result after the cut: %d bytes, %v", len(res.Text), err)
	}
	c2.send(protocol.CompleteAck{JobID: "cut", Status: protocol.AckStored})
	waitFor(t, "outbox empty", func() bool { return s.OutboxLen() == 0 })
}

func TestReconnectMethodRedialsAtOnce(t *testing.T) {
	hub := newScriptHub(t)
	h := newTestHandler()
	cfg := testConfig(t, hub.srv.URL)
	cfg.Backoff = Backoff{Base: time.Hour, Max: time.Hour} // a backoff wait would hang the test
	s := newSession(t, cfg, h)
	startRun(t, s)
	c := hub.next(t)
	h.waitEvent(t, "connected", connState(ConnConnected))
	s.Reconnect()
	if code := c.expectClose(t); code != websocket.StatusNormalClosure {
		t.Fatalf("closed with %v, want 1000", code)
	}
	hub.next(t)
	if n := len(h.eventsOf(connState(ConnReconnecting))); n != 0 {
		t.Fatalf("%d backoff waits, want none", n)
	}
}

func TestHealthySessionResetsTheAttemptCount(t *testing.T) {
	hub := newScriptHub(t)
	h := newTestHandler()
	cfg := testConfig(t, hub.srv.URL)
	cfg.Backoff = Backoff{Base: time.Millisecond, Max: 5 * time.Millisecond, HealthyAfter: 50 * time.Millisecond, Rand: func() float64 { return 1 }}
	cfg.ReconnectAttempts = 2
	s := newSession(t, cfg, h)
	r := startRun(t, s)
	// Three drops of healthy sessions in a row: more than ReconnectAttempts, yet no give-up,
	// because each session stayed up past HealthyAfter.
	for i := range 3 {
		c := hub.next(t)
		c.expect(t, protocol.TypeHeartbeat)
		waitFor(t, "healthy session", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.conn != nil && time.Since(s.conn.since) > cfg.Backoff.HealthyAfter
		})
		c.ws.CloseNow()
		e := h.waitEvent(t, "reconnecting", func(e Event) bool {
			ce, ok := e.(ConnEvent)
			return ok && ce.State == ConnReconnecting && len(h.eventsOf(connState(ConnReconnecting))) == i+1
		}).(ConnEvent)
		if e.Attempt != 1 {
			t.Fatalf("drop %d: attempt %d, want 1 after a healthy session", i, e.Attempt)
		}
	}
	hub.next(t)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

func TestZeroAttemptsRetriesForever(t *testing.T) {
	hub := newScriptHub(t)
	hub.set(func(h *scriptHub) { h.upgradeCode = http.StatusServiceUnavailable })
	h := newTestHandler()
	cfg := testConfig(t, hub.srv.URL)
	cfg.ReconnectAttempts = 0
	cfg.Backoff = Backoff{Base: time.Millisecond, Max: time.Millisecond}
	s := newSession(t, cfg, h)
	r := startRun(t, s)
	waitFor(t, "many attempts", func() bool { return hub.upgrades.Load() >= 12 })
	select {
	case <-r.done:
		t.Fatalf("Run gave up: %v", r.err)
	default:
	}
	// The hub comes back: the worker connects, and attempt numbers keep counting up meanwhile.
	hub.set(func(h *scriptHub) { h.upgradeCode = 0 })
	hub.next(t)
	last := h.eventsOf(connState(ConnReconnecting))
	if n := last[len(last)-1].(ConnEvent).Attempt; n < 11 {
		t.Fatalf("last attempt number %d", n)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}
