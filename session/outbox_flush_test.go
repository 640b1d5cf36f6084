// outbox_flush_test.go: a JSON result's or a fail's frame goes to the hub before its outbox entry
// is flushed to disk; the entry is flushed only when no ack comes soon, and ends on disk, or not
// at all once acknowledged. It must not know how the hub stores what it receives.

package session

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"studioworker/protocol"
)

// TestAResultIsSentBeforeItsEntryIsFlushed: a JSON result's or a fail's frame reaches the
// scripted hub while its entry is not yet flushed (the old order, flush then send, never sent it
// while the flush was held); an entry acknowledged soon is never flushed and leaves nothing on
// disk; one not acknowledged is flushed after flushAfter, or at once when the connection drops,
// and reloads; an ack during the flush leaves nothing either.
func TestAResultIsSentBeforeItsEntryIsFlushed(t *testing.T) {
	const (
		ackAtOnce      = "ack at once"
		noAck          = "no ack"
		ackDuringFlush = "ack during the flush"
		dropConnection = "drop the connection"
	)
	for _, tc := range []struct {
		hub        string
		fail       bool          // the run fails: a fail frame, not complete_json
		flushAfter time.Duration // how long the entry waits for its ack
		wantFlush  bool
		wantEntry  bool
	}{
		{hub: ackAtOnce, flushAfter: time.Minute},
		{hub: ackAtOnce, fail: true, flushAfter: time.Minute},
		{hub: noAck, flushAfter: 20 * time.Millisecond, wantFlush: true, wantEntry: true},
		{hub: noAck, fail: true, flushAfter: 20 * time.Millisecond, wantFlush: true, wantEntry: true},
		{hub: ackDuringFlush, flushAfter: time.Millisecond, wantFlush: true},
		{hub: ackDuringFlush, fail: true, flushAfter: time.Millisecond, wantFlush: true},
		{hub: dropConnection, flushAfter: time.Minute, wantFlush: true, wantEntry: true},
	} {
		name := tc.hub + map[bool]string{false: ", a result", true: ", a fail"}[tc.fail]
		t.Run(name, func(t *testing.T) {
			hub := newScriptHub(t)
			h := newTestHandler()
			if tc.fail {
				h.setRun(func(context.Context, Job, func(float64, string)) (Result, error) {
					return Result{}, retryErr{retryable: true}
				})
			}
			cfg := testConfig(t, hub.srv.URL)
			s := newSession(t, cfg, h)
			flushing, release := make(chan struct{}), make(chan struct{})
			var flushes atomic.Int32
			s.out.flushAfter = tc.flushAfter
			s.out.syncFile = func(f *os.File) error {
				if flushes.Add(1) == 1 {
					close(flushing)
				}
				<-release
				return f.Sync()
			}
			r := startRun(t, s)
			c := hub.next(t)

			c.send(protocol.Offer{Claim: claim("job-1", protocol.KindLLM)})
			c.expect(t, protocol.TypeAccept)
			frame := map[bool]protocol.Type{false: protocol.TypeCompleteJSON, true: protocol.TypeFail}[tc.fail]
			f := c.expect(t, frame)
			if cj, ok := f.(protocol.CompleteJSON); ok {
				var res protocol.LLMResult
				if err := json.Unmarshal(cj.Result, &res); err != nil || res.Text != "done job-1" {
					t.Fatalf("complete_json = %+v (%v)", cj, err)
				}
			}
			ack := func() {
				if tc.fail {
					c.send(protocol.FailAck{JobID: "job-1"})
				} else {
					c.send(protocol.CompleteAck{JobID: "job-1", Status: protocol.AckStored})
				}
				h.waitEvent(t, "delivered", func(e Event) bool { d, ok := e.(DeliveredEvent); return ok && d.JobID == "job-1" })
			}
			waitFlush := func() {
				select {
				case <-flushing:
				case <-time.After(10 * time.Second):
					t.Fatal("the entry was not flushed")
				}
			}
			switch tc.hub {
			case ackAtOnce:
				ack()
			case noAck:
				waitFlush()
			case ackDuringFlush:
				waitFlush()
				ack()
			case dropConnection:
				_ = c.ws.CloseNow()
				waitFlush() // long before flushAfter
			}
			close(release)
			if err := r.stop(t); err != nil {
				t.Fatalf("Run: %v", err)
			}

			if got := flushes.Load() > 0; got != tc.wantFlush {
				t.Errorf("flushed: %v, want %v", got, tc.wantFlush)
			}
			entries := outboxEntries(t, cfg.SpoolDir+"/outbox")
			if !tc.wantEntry {
				if len(entries) != 0 {
					t.Fatalf("the outbox holds %v, want nothing", entries)
				}
				return
			}
			if len(entries) != 1 {
				t.Fatalf("the outbox holds %v, want one entry", entries)
			}
			o, err := openOutbox(cfg.SpoolDir+"/outbox", discardLogger())
			if err != nil {
				t.Fatal(err)
			}
			it := o.get("job-1")
			if it == nil {
				t.Fatal("the flushed entry does not reload")
			}
			if want := map[bool]itemType{false: itemJSON, true: itemFail}[tc.fail]; it.meta.Type != want {
				t.Fatalf("reloaded entry is %s, want %s", it.meta.Type, want)
			}
		})
	}
}

// TestAStagedEntryThatIsNeverFlushedIsGoneAfterARestart: a crash between stage and commit leaves
// only the temporary file, which the next start removes, as after a crash inside a durable write.
// TestAStagedEntryOfAKilledWorkerIsDeliveredAfterTheRestart: a worker killed after it sent a
// result and before the flush keeps the result (the file was written whole before the send, and
// the page cache outlives the process), so the restart lists it in hello.outbox and delivers it;
// a temporary file cut short is removed.
func TestAStagedEntryOfAKilledWorkerIsDeliveredAfterTheRestart(t *testing.T) {
	dir := t.TempDir()
	o, err := openOutbox(dir, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	_, st, err := o.stage(outboxMeta{JobID: "job-1", Kind: protocol.KindLLM, Type: itemJSON, Result: protocol.Object(`{"text":"x"}`), CreatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	_ = st.f.Close() // the process dies here: no flush, no rename
	// And a write cut short, as a crash inside a durable write leaves it.
	if err := os.WriteFile(filepath.Join(dir, ".job-2.abc.json.123.tmp"), []byte(`{"version":1,"job_id":"jo`), 0o600); err != nil {
		t.Fatal(err)
	}
	o2, err := openOutbox(dir, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if o2.len() != 1 {
		t.Fatalf("after the restart %d entries, want the staged one", o2.len())
	}
	if ids := o2.ids(); len(ids) != 1 || ids[0] != "job-1" {
		t.Fatalf("outbox after the restart: %v", ids)
	}
	left := outboxEntries(t, dir)
	if len(left) != 1 || strings.HasSuffix(left[0], tmpSuffix) {
		t.Fatalf("files after the restart: %v, want the entry in place and no temporary file", left)
	}
}

// outboxEntries lists the files of an outbox folder.
func outboxEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if !e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}
