// store_test.go: the outbox and the log shipper: durable across reopen, bounded, crash leftovers cleaned.

package session

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"studioworker/protocol"
)

func TestLogShipperIsBoundedAndReportsOverflow(t *testing.T) {
	l := newLogShipper(10)
	for i := range 25 {
		l.add(protocol.LogEntry{Message: "m", Source: "t", TS: time.Unix(int64(i), 0)})
	}
	buffered, pending, dropped := l.stats()
	if buffered != 10 || pending != 0 || dropped != 15 {
		t.Fatalf("stats = %d buffered, %d pending, %d dropped; want 10, 0, 15", buffered, pending, dropped)
	}
	batches := l.due(1)
	if len(batches) != 1 {
		t.Fatalf("%d batches, want 1", len(batches))
	}
	b := batches[0]
	if b.seq != 1 || len(b.entries) != 11 {
		t.Fatalf("batch seq %d with %d entries, want seq 1 with 10 entries + 1 overflow warning", b.seq, len(b.entries))
	}
	last := b.entries[10]
	if last.Level != protocol.LevelWarn || !strings.Contains(last.Message, "15 log entries dropped") {
		t.Fatalf("overflow entry = %+v", last)
	}
	for _, e := range b.entries {
		if e.TS.Location() != time.UTC {
			t.Fatalf("entry time not in UTC: %v", e.TS)
		}
	}
	// Unacked batches hold their entries against the bound: nothing grows while the hub is silent.
	for range 20 {
		l.add(protocol.LogEntry{Message: "more"})
	}
	if buffered, pending, dropped := l.stats(); buffered+pending > 11 || dropped == 0 {
		t.Fatalf("after 20 more while unacked: %d buffered, %d pending, %d dropped", buffered, pending, dropped)
	}
	// The same connection does not get the pending batch twice; a new one gets it again, same seq.
	for _, b := range l.due(1) {
		if b.seq == 1 {
			t.Fatal("due on the same connection resent batch 1")
		}
	}
	if again := l.due(2); len(again) == 0 || again[0].seq != 1 {
		t.Fatalf("due on a new connection = %v, want batch 1 first", again)
	}
	if !l.ack(1) {
		t.Fatal("ack(1) found no batch")
	}
	if l.ack(1) {
		t.Fatal("ack(1) twice found a batch")
	}
	if _, pending, _ := l.stats(); pending != 0 {
		// Batch 1 is acked; anything pending now belongs to later batches sent on connection 2.
		for _, b := range l.pending {
			if b.seq <= 1 {
				t.Fatalf("batch %d still pending", b.seq)
			}
		}
	}
}

func TestLogShipperCutsLongMessagesAndBigBatches(t *testing.T) {
	l := newLogShipper(10_000)
	long := strings.Repeat("é", maxMessageBytes) // two bytes per rune
	for range 100 {
		l.add(protocol.LogEntry{Message: long})
	}
	total := 0
	for _, b := range l.due(1) {
		enc, err := protocol.Encode(protocol.LogBatch{Seq: b.seq, Entries: b.entries})
		if err != nil {
			t.Fatal(err)
		}
		if len(enc) > protocol.MaxFrameBytes {
			t.Fatalf("batch %d encodes to %d bytes, over the frame cap", b.seq, len(enc))
		}
		for _, e := range b.entries {
			if len(e.Message) > maxMessageBytes+len("…") || !json.Valid([]byte(`"`+e.Message+`"`)) {
				t.Fatalf("message of %d bytes not cut cleanly", len(e.Message))
			}
		}
		total += len(b.entries)
	}
	if total == 0 {
		t.Fatal("no entries batched")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestOutboxSurvivesReopenAndCleansCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	o, err := openOutbox(dir, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.put(outboxMeta{JobID: "j-json", Kind: protocol.KindLLM, Type: itemJSON, Result: json.RawMessage(`{"text":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "r.png")
	if err := os.WriteFile(src, []byte("png bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	it, err := o.putFile("j/../file", protocol.KindImage, src, "png", "a prompt", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Fatalf("the result file was copied, not moved: %v", err)
	}
	if want := sha256hex("png bytes"); it.meta.SHA256 != want {
		t.Fatalf("sha256 = %q", it.meta.SHA256)
	}
	if strings.Contains(it.meta.File, "/") || strings.Contains(it.meta.File, "..") {
		t.Fatalf("unsafe file name %q from a hostile job id", it.meta.File)
	}
	if _, err := o.put(failMeta("j-fail", protocol.KindLLM, "boom", false)); err != nil {
		t.Fatal(err)
	}
	// Leftovers of a crash: a temp file, and a result file whose metadata never got written.
	os.WriteFile(filepath.Join(dir, "x.json.tmp"), []byte("{"), 0o600)
	os.WriteFile(filepath.Join(dir, "orphan.abc.png"), []byte("?"), 0o600)

	o2, err := openOutbox(dir, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := o2.ids(), []string{"j-json", "j/../file", "j-fail"}; !slices.Equal(got, want) {
		t.Fatalf("reloaded ids = %v, want %v (in order)", got, want)
	}
	f := o2.get("j/../file")
	if f.meta.SHA256 != it.meta.SHA256 || f.meta.Prompt != "a prompt" || f.meta.Size != 9 {
		t.Fatalf("reloaded file entry = %+v", f.meta)
	}
	if fl := o2.get("j-fail"); fl.meta.Type != itemFail || fl.meta.Retryable || fl.meta.Error != "boom" {
		t.Fatalf("reloaded fail = %+v", fl.meta)
	}
	for _, name := range []string{"x.json.tmp", "orphan.abc.png"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s left behind", name)
		}
	}
	// Removing deletes the files; a reopen finds nothing more.
	for _, id := range o2.ids() {
		if !o2.remove(id) {
			t.Fatalf("remove(%q) = false", id)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("files left after removing everything: %v", entries)
	}
}

func TestOutboxReportsALostResultFileAsAFail(t *testing.T) {
	dir := t.TempDir()
	o, _ := openOutbox(dir, discardLogger())
	src := filepath.Join(t.TempDir(), "r.wav")
	os.WriteFile(src, []byte("wav"), 0o600)
	it, err := o.putFile("j1", protocol.KindTTS, src, "wav", "", "")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, it.meta.File))
	o2, err := openOutbox(dir, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	got := o2.get("j1")
	if got == nil || got.meta.Type != itemFail || !got.meta.Retryable {
		t.Fatalf("lost file entry reloaded as %+v, want a retryable fail", got)
	}
}

func TestOutboxReplacingAnEntryKeepsOnlyTheNewOne(t *testing.T) {
	dir := t.TempDir()
	o, _ := openOutbox(dir, discardLogger())
	o.put(failMeta("j1", protocol.KindImage, "first try failed", true))
	src := filepath.Join(t.TempDir(), "r.png")
	os.WriteFile(src, []byte("png"), 0o600)
	if _, err := o.putFile("j1", protocol.KindImage, src, "png", "", ""); err != nil {
		t.Fatal(err)
	}
	o2, _ := openOutbox(dir, discardLogger())
	if got := o2.get("j1"); got == nil || got.meta.Type != itemFile {
		t.Fatalf("reloaded %+v, want the file entry", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("files = %v, want one metadata file and one result", names(entries))
	}
}

func names(es []os.DirEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func sha256hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
