// quitafter_test.go: the window's "Quit after this job" through the real window command — the
// running job finishes and reaches the hub, then the worker stops and tells the window so.

package app

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"studioworker/protocol"
)

func TestQuitAfterThisJobFinishesItFirst(t *testing.T) {
	env := newTestEnv(t)
	reg, err := env.admin.Register(context.Background(), "window worker", "x")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gui", "config.json")
	cfg := env.cfg
	cfg.WorkerID, cfg.AuthToken = reg.WorkerID, reg.AuthToken
	if err := SaveConfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	if err := env.client.Pause(context.Background()); err != nil { // jobs go to the window's worker
		t.Fatal(err)
	}
	env.waitState("paused", func(s State) bool { return s.Mode == protocol.StatePaused })
	t.Setenv("DISPLAY", ":fake-window-test") // the GUI below is the test's: nothing is drawn

	started := make(chan string, 1)
	stoppedSeen := make(chan struct{})
	gui := func(src Source, _ Controller, opt GUIOptions) error {
		if opt.QuitAfterJobs == nil || opt.Stopped == nil {
			t.Error("a window that owns its worker got no QuitAfterJobs or Stopped")
			return nil
		}
		id := <-started
		// Wait for the job to run here, as the creator sees it in the window, then ask.
		first, sub := src.Subscribe()
		defer sub.Close()
		for s := first; len(s.Running) == 0 || s.Running[0].JobID != id; {
			select {
			case s = <-sub.States():
			case <-time.After(20 * time.Second):
				t.Error("the job never ran in the window's worker")
				return nil
			}
		}
		opt.QuitAfterJobs()
		select {
		case <-opt.Stopped:
			close(stoppedSeen)
		case <-time.After(30 * time.Second):
			t.Error("the worker did not stop after its job")
		}
		return nil
	}
	var out, errb syncBuffer
	cli := &CLI{Stdout: &out, Stderr: &errb, GUI: gui}
	exit := make(chan int, 1)
	go func() { exit <- cli.Run([]string{"--config", path}) }()
	id := env.submit(protocol.KindLLM, `{"prompt":"p","duration_ms":1500}`)
	started <- id
	select {
	case code := <-exit:
		if code != ExitOK {
			t.Fatalf("exit %d; stderr %s", code, errb.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the window command did not end")
	}
	select {
	case <-stoppedSeen:
	default:
		t.Fatal("the window was not told that its worker stopped")
	}
	if info := env.wait(id); info.Status != protocol.JobCompleted {
		t.Fatalf("the running job was not finished before quitting: %+v", info)
	}
}

// TestAutoAcceptFromTheCommandLine: `studio-worker auto-accept off|on` reaches a running worker
// (finding 9: no CLI switch for auto-accept).
func TestAutoAcceptFromTheCommandLine(t *testing.T) {
	env := newTestEnv(t)
	for _, tt := range []struct {
		arg  string
		want bool
	}{{"off", false}, {"on", true}} {
		var out, errb syncBuffer
		cli := &CLI{Stdout: &out, Stderr: &errb}
		if code := cli.Run([]string{"auto-accept", tt.arg, "--config", env.path}); code != ExitOK {
			t.Fatalf("auto-accept %s: exit %d, %s", tt.arg, code, errb.String())
		}
		env.waitState("auto-accept "+tt.arg, func(s State) bool { return s.AutoAccept == tt.want })
		if cfg, err := LoadConfig(env.path); err != nil || cfg.AutoAccept != tt.want {
			t.Fatalf("saved auto_accept after %s: %v, %v", tt.arg, cfg.AutoAccept, err)
		}
	}
}
