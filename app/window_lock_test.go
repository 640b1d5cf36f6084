// window_lock_test.go: one window per config folder — a second launch raises the first window and
// exits 0, a lock a crashed window left is taken over, and --tray starts hidden. The checks are
// shared with window_lock_windows_test.go, which runs them under Wine.

package app

import (
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWindowLock(t *testing.T) { checkWindowLock(t, t.TempDir()) }

func TestWindowLockLeftByACrashIsTakenOver(t *testing.T) { checkStaleWindowLock(t, t.TempDir()) }

// checkWindowLock: the first claim holds, a second is refused with ErrWindowOpen and raises the
// first, and after Close the next claim holds again. dir is the test's folder (Wine needs
// wintest.TempDir's).
func checkWindowLock(t *testing.T, dir string) {
	path := filepath.Join(dir, "config.json")
	first, err := ClaimWindow(path)
	if err != nil {
		t.Fatalf("first claim: %v", err)
	}
	for i := range 2 {
		if _, err := ClaimWindow(path); !errors.Is(err, ErrWindowOpen) {
			t.Fatalf("second claim %d: %v, want ErrWindowOpen", i, err)
		}
		select {
		case <-first.Raise():
		case <-time.After(10 * time.Second):
			t.Fatalf("the open window was not asked to show itself (launch %d)", i)
		}
	}
	if err := first.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	again, err := ClaimWindow(path)
	if err != nil {
		t.Fatalf("claim after the first window closed: %v", err)
	}
	again.Close()
}

// checkStaleWindowLock: what a window that crashed left behind does not keep the next one out.
func checkStaleWindowLock(t *testing.T, dir string) {
	path := filepath.Join(dir, "config.json")
	leaveStaleWindowLock(t, path)
	l, err := ClaimWindow(path)
	if err != nil {
		t.Fatalf("claim over a crashed window's lock: %v", err)
	}
	l.Close()
}

// TestSecondLaunchRaisesTheFirstWindow runs the window command twice on one config folder: the
// second exits 0 at once, says so, and the first window is asked to show itself; no second
// window opens. `--tray` reaches the window as StartHidden.
func TestSecondLaunchRaisesTheFirstWindow(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	t.Setenv("DISPLAY", ":fake-window-test") // the GUI below is the test's: nothing is drawn
	path := filepath.Join(dir, "w", "config.json")

	var mu sync.Mutex
	opened := []GUIOptions{}
	started, raised := make(chan struct{}), make(chan struct{})
	gui := func(_ Source, _ Controller, opt GUIOptions) error {
		mu.Lock()
		opened = append(opened, opt)
		n := len(opened)
		mu.Unlock()
		if n > 1 {
			t.Error("a second window was opened")
			return nil
		}
		close(started)
		select {
		case <-opt.Raise:
			close(raised)
		case <-time.After(30 * time.Second):
			t.Error("the first window was never asked to show itself")
		}
		return nil
	}
	var out1, err1 strings.Builder
	first := &CLI{Stdout: &out1, Stderr: &err1, GUI: gui}
	done := make(chan int, 1)
	go func() { done <- first.Run([]string{"--tray", "--config", path}) }()
	select {
	case <-started:
	case code := <-done:
		t.Fatalf("the first window command ended at once: exit %d, %s", code, err1.String())
	case <-time.After(30 * time.Second):
		t.Fatal("the first window did not open")
	}

	var out2, err2 strings.Builder
	second := &CLI{Stdout: &out2, Stderr: &err2, GUI: gui}
	if code := second.Run([]string{"--config", path}); code != ExitOK {
		t.Fatalf("second launch: exit %d, want 0; stderr %q", code, err2.String())
	}
	if !strings.Contains(out2.String(), "already open") {
		t.Errorf("second launch said %q, want that the window is already open", out2.String())
	}
	select {
	case <-raised:
	case <-time.After(30 * time.Second):
		t.Fatal("the first window was not raised")
	}
	select {
	case code := <-done:
		if code != ExitOK {
			t.Fatalf("first window command: exit %d, %s", code, err1.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the first window command did not end after its window closed")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(opened) != 1 || !opened[0].StartHidden || opened[0].Quit == nil {
		t.Fatalf("windows opened: %+v, want one, hidden (--tray), with Quit", opened)
	}
}

// TestAWindowThatDoesNotAnswerIsSaid: a window lock held by something that never answers the
// raise keeps a second window out, and the second launch says the window did not show itself
// instead of claiming it did.
func TestAWindowThatDoesNotAnswerIsSaid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	ln, _, release, err := listenWindow(path) // a holder that hangs up on every raise
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-served
		if release != nil {
			release()
		}
	})
	_, err = ClaimWindow(path)
	if !errors.Is(err, ErrWindowOpen) || err == ErrWindowOpen || !strings.Contains(err.Error(), "did not show itself") {
		t.Fatalf("second claim: %v, want ErrWindowOpen saying the window did not show itself", err)
	}
}
