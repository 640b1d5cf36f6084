// Tests of a window attached over the control channel to a worker that runs apart from it (a
// service, `studio-worker run`): real control servers and app's real Client over the real socket.
package ui

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"studioworker/app"
	"studioworker/protocol"
)

// serveWorker serves s and a recordingController on the control channel of the config at path,
// as one start of a worker does; stop ends it as the worker's exit does.
func serveWorker(t *testing.T, path string, s app.State) (ctl *recordingController, stop func()) {
	t.Helper()
	obs := app.NewObservers(s)
	ctl = newRecordingController(obs)
	ln, token, err := app.ListenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = app.NewControlServer(ctl, obs, token, nil).Serve(ctx, ln)
	}()
	stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	return ctl, stop
}

func TestWindowReattachesAfterTheWorkerRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "worker", "config.json")
	_, stopFirst := serveWorker(t, path, idleState())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := app.DialControl(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Follow(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, idleState(), withWorker(cl, cl))
	t.Cleanup(cl.Close) // before the window closes: the subscription stays the window's to close
	h.waitUI("the attached worker's state", func() bool { return h.w.header.title.Text == "Connected to studio.example.com" })

	stopFirst()
	h.waitUI("the header to say the worker is out of reach", func() bool { return h.w.header.title.Text == titleReattaching })
	h.ui.do(func() {
		if got := subtleText(h.w.header.detail); !strings.HasPrefix(got, detailReattaching) || !strings.Contains(got, "Last error: ") {
			t.Errorf("detail: %q", got)
		}
		if got := h.w.header.mode.Text; got != modeReattaching {
			t.Errorf("mode line: %q, want %q", got, modeReattaching)
		}
		if !h.w.header.fixBox.Visible() || h.w.header.fix.Text != "Reconnect now" {
			t.Errorf("fix button %q visible=%v", h.w.header.fix.Text, h.w.header.fixBox.Visible())
		}
	})

	restarted := idleState()
	restarted.Name, restarted.Paused, restarted.Mode = "after the restart", true, protocol.StatePaused
	second, _ := serveWorker(t, path, restarted)
	h.waitUI("the restarted worker's state", func() bool {
		return h.w.header.title.Text == "Connected to studio.example.com" && h.w.state.Name == "after the restart"
	})
	h.ui.do(func() {
		if got := h.w.header.pause.Text; got != labelResume {
			t.Fatalf("pause button %q, want %q from the restarted worker's state", got, labelResume)
		}
		test.Tap(h.w.header.pause)
	})
	waitFor(t, "Resume to reach the restarted worker", func() bool { return second.called("Resume") })
}
