// observers_test.go: state and notice fan-out — snapshot first, slow subscribers never block, copies, bounds.

package app

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"studioworker/protocol"
)

func recvState(t *testing.T, ch <-chan State) State {
	t.Helper()
	select {
	case s, ok := <-ch:
		if !ok {
			t.Fatal("state channel closed")
		}
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no state within 5 s")
	}
	return State{}
}

func TestObserversSnapshotFirstThenUpdates(t *testing.T) {
	o := NewObservers(State{Mode: protocol.StateIdle, AutoAccept: true})
	snap, sub := o.Subscribe()
	defer sub.Close()
	if snap.Mode != protocol.StateIdle || !snap.AutoAccept {
		t.Fatalf("snapshot = %+v", snap)
	}
	o.Update(func(s *State) { s.Mode = protocol.StatePaused; s.Paused = true })
	got := recvState(t, sub.States())
	if got.Mode != protocol.StatePaused || !got.Paused || got.Seq <= snap.Seq {
		t.Fatalf("update = mode %s paused %v seq %d (snapshot seq %d)", got.Mode, got.Paused, got.Seq, snap.Seq)
	}
}

func TestObserversSlowSubscriberGetsLatestAndNeverBlocks(t *testing.T) {
	o := NewObservers(State{})
	_, sub := o.Subscribe()
	defer sub.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= 1000; i++ {
			o.Update(func(s *State) { s.Counters.Done = i })
			o.Notify(Notice{Kind: NoticeLog, Text: fmt.Sprint(i)})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("publisher blocked on a subscriber that does not read")
	}
	got := recvState(t, sub.States())
	if got.Counters.Done != 1000 {
		t.Fatalf("latest state has done=%d, want 1000", got.Counters.Done)
	}
	select {
	case s := <-sub.States():
		t.Fatalf("a second, stale state was queued: done=%d", s.Counters.Done)
	default:
	}
	if lost := sub.Lost(); lost != 1000-noticeBuffer {
		t.Fatalf("lost = %d, want %d", lost, 1000-noticeBuffer)
	}
	first := <-sub.Notices()
	if first.Text != fmt.Sprint(1000-noticeBuffer+1) {
		t.Fatalf("oldest kept notice = %s, want the oldest of the newest %d", first.Text, noticeBuffer)
	}
	if sub.Lost() != 0 {
		t.Fatal("Lost did not reset")
	}
}

func TestObserversUnsubscribe(t *testing.T) {
	o := NewObservers(State{})
	_, a := o.Subscribe()
	_, b := o.Subscribe()
	if o.Subscribers() != 2 {
		t.Fatalf("subscribers = %d", o.Subscribers())
	}
	a.Close()
	a.Close() // idempotent
	if o.Subscribers() != 1 {
		t.Fatalf("after close subscribers = %d", o.Subscribers())
	}
	if _, ok := <-a.States(); ok {
		t.Fatal("closed subscription's channel still open")
	}
	o.Update(func(s *State) { s.Name = "x" })
	if got := recvState(t, b.States()); got.Name != "x" {
		t.Fatalf("remaining subscriber got %+v", got.Name)
	}
	b.Close()
}

func TestObserversSnapshotsAreCopies(t *testing.T) {
	o := NewObservers(State{})
	o.Update(func(s *State) {
		s.Running = append(s.Running, RunningJob{JobID: "a"})
		s.GPU.Cards = []GPUCard{{History: []GPUSample{{UsedMB: 1}}}}
	})
	snap, sub := o.Subscribe()
	defer sub.Close()
	snap.Running[0].JobID = "mutated"
	snap.GPU.Cards[0].History[0].UsedMB = 99
	again := o.Snapshot()
	if again.Running[0].JobID != "a" || again.GPU.Cards[0].History[0].UsedMB != 1 {
		t.Fatal("a subscriber's snapshot shares memory with the owner's state")
	}
}

func TestObserversConcurrent(t *testing.T) {
	o := NewObservers(State{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				o.Update(func(s *State) { s.Counters.Done++ })
				o.Notify(Notice{Kind: NoticeLog})
			}
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				_, sub := o.Subscribe()
				select {
				case <-sub.States():
				default:
				}
				sub.Close()
			}
		}()
	}
	wg.Wait()
	if got := o.Snapshot().Counters.Done; got != 800 {
		t.Fatalf("done = %d, want 800", got)
	}
}

func TestRecentIsBounded(t *testing.T) {
	var s State
	for i := 0; i < 250; i++ {
		s.addRecent(RecentJob{JobID: fmt.Sprint(i)})
	}
	if len(s.Recent) != maxRecent || s.Recent[0].JobID != "249" {
		t.Fatalf("recent len %d first %s", len(s.Recent), s.Recent[0].JobID)
	}
}
