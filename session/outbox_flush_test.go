// outbox_flush_test.go: a JSON result's or a fail's frame goes to the hub before its outbox entry
// is flushed to disk, and the entry still ends on disk, or not at all once acknowledged. It must
// not know how the hub stores what it receives.

package session

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"studioworker/protocol"
)

// TestAResultIsSentBeforeItsEntryIsFlushed: the flush of the entry is held until the scripted
// hub has the job's frame (the old order, flush then send, never sends it while held); an ack
// that comes during the flush leaves no entry behind, and without one the entry is on disk and
// reloads.
func TestAResultIsSentBeforeItsEntryIsFlushed(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fail      bool          // the run fails: a fail frame, not complete_json
		ackDuring bool          // the hub acks while the flush is held
		frame     protocol.Type // what the hub must see while the flush is held
		ack       func(id string) protocol.Frame
	}{
		{name: "a result, acknowledged during the flush", ackDuring: true, frame: protocol.TypeCompleteJSON,
			ack: func(id string) protocol.Frame { return protocol.CompleteAck{JobID: id, Status: protocol.AckStored} }},
		{name: "a result, not acknowledged", frame: protocol.TypeCompleteJSON},
		{name: "a fail, acknowledged during the flush", fail: true, ackDuring: true, frame: protocol.TypeFail,
			ack: func(id string) protocol.Frame { return protocol.FailAck{JobID: id} }},
		{name: "a fail, not acknowledged", fail: true, frame: protocol.TypeFail},
	} {
		t.Run(tc.name, func(t *testing.T) {
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
			s.out.syncFile = func(f *os.File) error {
				close(flushing)
				<-release
				return f.Sync()
			}
			r := startRun(t, s)
			c := hub.next(t)

			c.send(protocol.Offer{Claim: claim("job-1", protocol.KindLLM)})
			c.expect(t, protocol.TypeAccept)
			select {
			case <-flushing:
			case <-time.After(10 * time.Second):
				t.Fatal("the entry was not flushed after the job ended")
			}
			f := c.expect(t, tc.frame)
			if cj, ok := f.(protocol.CompleteJSON); ok {
				var res protocol.LLMResult
				if err := json.Unmarshal(cj.Result, &res); err != nil || res.Text != "done job-1" {
					t.Fatalf("complete_json = %+v (%v)", cj, err)
				}
			}
			if tc.ackDuring {
				c.send(tc.ack("job-1"))
				h.waitEvent(t, "delivered", func(e Event) bool { d, ok := e.(DeliveredEvent); return ok && d.JobID == "job-1" })
			}
			close(release)
			if err := r.stop(t); err != nil {
				t.Fatalf("Run: %v", err)
			}

			entries := outboxEntries(t, cfg.SpoolDir+"/outbox")
			if tc.ackDuring {
				if len(entries) != 0 {
					t.Fatalf("after an ack during the flush the outbox holds %v, want nothing", entries)
				}
				return
			}
			if len(entries) != 1 {
				t.Fatalf("outbox holds %v, want one entry", entries)
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
func TestAStagedEntryThatIsNeverFlushedIsGoneAfterARestart(t *testing.T) {
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
	o2, err := openOutbox(dir, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if o2.len() != 0 {
		t.Fatalf("a staged entry reloaded: %d entries", o2.len())
	}
	if left := outboxEntries(t, dir); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
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
