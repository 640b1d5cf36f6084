// state_writer_test.go: the State has one writer — a Pause racing job events ends paused, and config saves end with the newest.

package app

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"studioworker/gpu"
	"studioworker/protocol"
	"studioworker/session"
)

// TestPauseRacingEventsEndsPaused: session events publish State from their own goroutines while
// the creator presses Pause. However they interleave, the last State says paused — an event
// that derived the mode before the Pause must not publish it after.
func TestPauseRacingEventsEndsPaused(t *testing.T) {
	cfg := DefaultConfig()
	w, err := NewWorker(Options{Config: cfg, Sampler: gpu.NewSimulated("race GPU", 24), AgentVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const rounds, senders = 300, 4
	for round := range rounds {
		if err := w.Resume(ctx); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := range 20 {
					id := fmt.Sprintf("r%d-g%d-%d", round, g, i)
					w.Event(session.OfferEvent{Claim: protocol.Claim{JobID: id, Kind: protocol.KindLLM, ExpiresAt: time.Now().Add(time.Minute)}})
					w.Event(session.OfferResolvedEvent{JobID: id, Reason: protocol.DeclineBusy})
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := w.Pause(ctx); err != nil {
				t.Error(err)
			}
		}()
		close(start)
		wg.Wait()
		st, sub := w.Subscribe()
		sub.Close()
		if st.Mode != protocol.StatePaused || !st.Paused {
			t.Fatalf("round %d: after Pause and the events, State says mode %q, paused %v", round, st.Mode, st.Paused)
		}
	}
}

// TestConfigSavesEndWithTheNewest: changes made together are saved in turn, and the file ends as
// the config ends, whichever save finishes last.
func TestConfigSavesEndWithTheNewest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	cfg := DefaultConfig()
	if err := SaveConfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	w, err := NewWorker(Options{ConfigPath: path, Config: cfg, Sampler: gpu.NewSimulated("GPU", 24), AgentVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for round := range 30 {
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				switch i % 3 {
				case 0:
					err = w.SetAutoAccept(ctx, round%2 == 0)
				case 1:
					err = w.Pause(ctx)
				default:
					err = w.Resume(ctx)
				}
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		saved, err := LoadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		now := w.Config()
		if saved.Paused != now.Paused || saved.AutoAccept != now.AutoAccept {
			t.Fatalf("round %d: the file says paused %v, auto-accept %v; the worker %v, %v",
				round, saved.Paused, saved.AutoAccept, now.Paused, now.AutoAccept)
		}
	}
}
