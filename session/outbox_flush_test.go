// outbox_flush_test.go: a JSON result's or a fail's frame goes to the hub before its outbox entry
// is flushed to disk; the entry is flushed only when no ack comes soon, and ends on disk, or not
// at all once acknowledged. It must not know how the hub stores what it receives.

package session

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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

// TestAStagedEntryOfAKilledWorkerIsDeliveredAfterTheRestart: a worker killed after it sent a
// result and before the flush keeps the result (its stage log line was written whole before the
// send, and the page cache outlives the process), so the restart lists it in hello.outbox and
// delivers it; an entry acknowledged before the kill stays gone, one committed before its line
// was settled loads once, and a line cut short is no entry, nor is a temporary file cut short.
func TestAStagedEntryOfAKilledWorkerIsDeliveredAfterTheRestart(t *testing.T) {
	dir := t.TempDir()
	o, err := openOutbox(dir, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	stage := func(id string) (*outboxItem, *staged) {
		t.Helper()
		it, st, err := o.stage(outboxMeta{JobID: id, Kind: protocol.KindLLM, Type: itemJSON, Result: protocol.Object(`{"text":"x\ny"}`), CreatedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return it, st
	}
	_, st := stage("job-1") // sent, then the process dies: no ack, no flush
	itA, stA := stage("job-acked")
	o.remove("job-acked") // the ack came, and settle dropped it
	o.drop(itA, stA)
	_, stC := stage("job-committed")
	if err := o.writeEntry(filepath.Join(dir, stC.name), stC.data); err != nil { // killed before the line is settled
		t.Fatal(err)
	}
	// The process dies in the middle of the next line.
	if _, err := st.log.f.Write([]byte(`s job-3.abc.json 00000000 {"version":1,"job_id":"jo`)); err != nil {
		t.Fatal(err)
	}
	_ = st.log.f.Close()
	// And a write cut short, as a crash inside a durable write leaves it.
	if err := os.WriteFile(filepath.Join(dir, ".job-2.abc.json.123.tmp"), []byte(`{"version":1,"job_id":"jo`), 0o600); err != nil {
		t.Fatal(err)
	}
	o2, err := openOutbox(dir, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	ids := o2.ids()
	if len(ids) != 2 || !slices.Contains(ids, "job-1") || !slices.Contains(ids, "job-committed") {
		t.Fatalf("outbox after the restart: %v, want job-1 and job-committed", ids)
	}
	if got := o2.get("job-1"); string(got.meta.Result) != `{"text":"x\ny"}` {
		t.Fatalf("job-1 reloaded as %s", got.meta.Result)
	}
	left := outboxEntries(t, dir)
	if len(left) != 2 {
		t.Fatalf("files after the restart: %v, want the two entries in place", left)
	}
	for _, name := range left {
		if strings.HasSuffix(name, tmpSuffix) || isStageLog(name) {
			t.Fatalf("files after the restart: %v, want no temporary file and no stage log", left)
		}
	}
}

// TestAnOldTemporaryEntryIsTakenBack: a staged entry of the earlier layout (a temporary file of
// its own) that reads whole is kept after an upgrade, as before.
func TestAnOldTemporaryEntryIsTakenBack(t *testing.T) {
	dir := t.TempDir()
	b, _ := json.Marshal(outboxMeta{Version: outboxVersion, JobID: "job-1", Kind: protocol.KindLLM, Type: itemJSON, Result: protocol.Object(`{}`), CreatedAt: time.Now()})
	if err := os.WriteFile(filepath.Join(dir, ".job-1.abc.json.123.tmp"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := openOutbox(dir, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if ids := o.ids(); len(ids) != 1 || ids[0] != "job-1" {
		t.Fatalf("outbox: %v", ids)
	}
	if left := outboxEntries(t, dir); len(left) != 1 || left[0] != "job-1.abc.json" {
		t.Fatalf("files: %v", left)
	}
}

// TestStageLogsStaySmallAndGo: a full stage log is removed once its entries are settled, and
// the last goes when the Run ends (closeStage), so the folder keeps none after quiet work.
func TestStageLogsStaySmallAndGo(t *testing.T) {
	dir := t.TempDir()
	o, err := openOutbox(dir, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	big := protocol.Object(`{"text":"` + strings.Repeat("x", 64<<10) + `"}`)
	var held []*staged
	for i := range 40 { // 40 × 64 KiB: the log fills past stageLogMax twice
		id := fmt.Sprintf("job-%d", i)
		it, st, err := o.stage(outboxMeta{JobID: id, Kind: protocol.KindLLM, Type: itemJSON, Result: big})
		if err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			held = append(held, st) // one stays live: its log stays too
			continue
		}
		o.remove(id)
		o.drop(it, st)
	}
	logs := func() (n int) {
		for _, name := range outboxEntries(t, dir) {
			if isStageLog(name) {
				n++
			}
		}
		return n
	}
	if n := logs(); n != 2 {
		t.Fatalf("%d stage logs, want the one holding the live entry and the current one", n)
	}
	o.closeStage() // the current log has no live entry
	if n := logs(); n != 1 {
		t.Fatalf("%d stage logs after closeStage, want the one still holding a live entry", n)
	}
	it3 := o.get("job-3")
	o.remove("job-3")
	o.drop(it3, held[0])
	if left := outboxEntries(t, dir); len(left) != 0 {
		t.Fatalf("files: %v, want none", left)
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
