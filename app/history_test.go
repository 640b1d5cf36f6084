// history_test.go: what the worker did is kept across restarts — the recent jobs and the
// tallies per day — and declined offers are in the recent list (issue 18 finding 9).

package app

import (
	"context"
	"image/png"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"studioworker/protocol"
)

func TestHistoryIsKeptAcrossRestarts(t *testing.T) {
	env := newTestEnv(t)
	for range 2 {
		id := env.submit(protocol.KindLLM, `{"prompt":"hi"}`)
		if info := env.wait(id); info.Status != protocol.JobCompleted {
			t.Fatalf("job: %+v", info)
		}
	}
	st := env.waitState("two jobs counted today", func(s State) bool {
		return len(s.Days) == 1 && s.Days[0].Jobs[protocol.KindLLM] == 2
	})
	if today := time.Now().Format(dayFormat); st.Days[0].Date != today || st.Days[0].Total() != 2 {
		t.Fatalf("days %+v, want today (%s) with 2 jobs", st.Days, today)
	}
	// Stop the worker: its history is written on the way out.
	env.cancel()
	select {
	case err := <-env.done:
		env.done <- err // for the env's own cleanup, which waits for it too
	case <-time.After(10 * time.Second):
		t.Fatal("the worker did not stop")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(env.path), historyFile)); err != nil {
		t.Fatalf("no history file after the worker stopped: %v", err)
	}
	w, err := NewWorker(Options{ConfigPath: env.path, Config: env.cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	again := w.Observers().Snapshot()
	if len(again.Recent) != 2 || again.Recent[0].Status != "done" || len(again.Days) != 1 || again.Days[0].Jobs[protocol.KindLLM] != 2 {
		t.Fatalf("after a restart: recent %+v, days %+v", again.Recent, again.Days)
	}
}

func TestUnreadableHistoryIsSetAsideNotLost(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	garbage := []byte("{not json")
	if err := os.WriteFile(filepath.Join(dir, historyFile), garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := NewWorker(Options{ConfigPath: path, Config: DefaultConfig(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if st := w.Observers().Snapshot(); len(st.Recent) != 0 || len(st.Days) != 0 {
		t.Fatalf("from an unreadable file: %+v %+v", st.Recent, st.Days)
	}
	if kept, err := os.ReadFile(filepath.Join(dir, historyFile+".bad")); err != nil || string(kept) != string(garbage) {
		t.Fatalf("the unreadable file was not set aside: %q, %v", kept, err)
	}
}

func TestDeclinedOfferIsInTheRecentList(t *testing.T) {
	env := newTestEnvWith(t, nil, nil, func(c *Config) { c.AutoAccept = false })
	id := env.submit(protocol.KindLLM, `{"prompt":"hi"}`)
	env.waitState("the offer waiting", func(s State) bool { return len(s.Offers) == 1 && s.Offers[0].WaitingForUser })
	if err := env.client.DeclineOffer(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	st := env.waitState("the decline in the recent list", func(s State) bool { return len(s.Recent) == 1 })
	r := st.Recent[0]
	if r.JobID != id || r.Status != "declined" || r.Error != "declined by you" || r.Kind != protocol.KindLLM {
		t.Fatalf("recent %+v", r)
	}
	if len(st.Days) != 0 {
		t.Errorf("a decline counted as work: %+v", st.Days)
	}
}

// TestResultsAreKeptToOpen: an image result keeps a thumbnail and a larger preview, a speech
// result a copy to be played, after the hub has the result and the spool let go of it.
func TestResultsAreKeptToOpen(t *testing.T) {
	env := newTestEnv(t)
	img := env.submit(protocol.KindImage, `{"prompt":"p","width":800,"height":400}`)
	tts := env.submit(protocol.KindTTS, `{"text":"hello there"}`)
	for _, id := range []string{img, tts} {
		if info := env.wait(id); info.Status != protocol.JobCompleted {
			t.Fatalf("job: %+v", info)
		}
	}
	st := env.waitState("both in the recent list", func(s State) bool { return len(s.Recent) == 2 })
	byID := map[string]RecentJob{}
	for _, r := range st.Recent {
		byID[r.JobID] = r
	}
	ri, rt := byID[img], byID[tts]
	f, err := os.Open(ri.Preview)
	if err != nil {
		t.Fatalf("no preview of the image: %+v, %v", ri, err)
	}
	cfg, err := png.DecodeConfig(f)
	f.Close()
	if err != nil || cfg.Width != previewSize || cfg.Height != previewSize/2 {
		t.Errorf("preview %dx%d (%v), want %dx%d", cfg.Width, cfg.Height, err, previewSize, previewSize/2)
	}
	if _, err := os.Stat(ri.File); err != nil || ri.Bytes <= 0 {
		t.Errorf("thumbnail %q (%v), result size %d", ri.File, err, ri.Bytes)
	}
	if fi, err := os.Stat(rt.Media); err != nil || fi.Size() != rt.Bytes || rt.Bytes == 0 {
		t.Errorf("speech kept as %q (%v), %d bytes recorded", rt.Media, err, rt.Bytes)
	}
}

// TestADayReadWithoutItsMapsIsCountedOn: a history.json whose day has no jobs or gpu_ms (written
// by hand, or by a later version that left them out) does not crash the next count.
func TestADayReadWithoutItsMapsIsCountedOn(t *testing.T) {
	dir := t.TempDir()
	today := time.Now().Format(dayFormat)
	doc := `{"version":1,"days":[{"date":"` + today + `","failed":0}],"recent":[]}`
	if err := os.WriteFile(filepath.Join(dir, historyFile), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	h, _ := loadHistory(filepath.Join(dir, historyFile), slog.New(slog.NewTextHandler(io.Discard, nil)))
	week := h.count(RecentJob{Kind: protocol.KindLLM, Status: "done", Duration: time.Second, Ended: time.Now()})
	if len(week) != 1 || week[0].Jobs[protocol.KindLLM] != 1 || week[0].GPUTime() != time.Second {
		t.Fatalf("week after counting into a day read without maps: %+v", week)
	}
}
