package ui

import (
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"studioworker/app"
	"studioworker/protocol"
)

func TestPauseCallsControllerAndLabelFollowsState(t *testing.T) {
	h := newHarness(t, idleState())
	release := h.ctl.hold("Pause")

	h.ui.do(func() {
		if got := h.w.header.pause.Text; got != labelPause {
			t.Fatalf("pause button before: %q", got)
		}
		test.Tap(h.w.header.pause)
	})
	waitFor(t, "Pause to be called", func() bool { return h.ctl.called("Pause") })
	// The call is in flight and no new state has come: the button still says what is true.
	h.ui.do(func() {
		if got := h.w.header.pause.Text; got != labelPause {
			t.Errorf("the label flipped before the state said so: %q", got)
		}
	})
	close(release)
	h.waitUI("the button to say Resume", func() bool { return h.w.header.pause.Text == labelResume })
	h.ui.do(func() {
		if !strings.HasPrefix(h.w.header.mode.Text, "Paused by you") {
			t.Errorf("mode line: %q", h.w.header.mode.Text)
		}
		test.Tap(h.w.header.pause)
	})
	waitFor(t, "Resume to be called", func() bool { return h.ctl.called("Resume") })
	h.waitUI("the button to say Pause again", func() bool { return h.w.header.pause.Text == labelPause })
}

func TestStateFromElsewhereFlipsTheLabel(t *testing.T) {
	// The CLI or the tray may pause the worker: the window follows the state, whoever changed it.
	h := newHarness(t, idleState())
	h.publish(func(s *app.State) { s.Paused, s.Mode = true, protocol.StatePaused })
	h.ui.do(func() {
		if got := h.w.header.pause.Text; got != labelResume {
			t.Errorf("button: %q, want %q", got, labelResume)
		}
	})
	if calls := h.ctl.Calls(); len(calls) != 1 || calls[0] != "Settings" {
		t.Errorf("a published state made Controller calls: %v", calls)
	}
}

func TestActionErrorShowsInHeader(t *testing.T) {
	h := newHarness(t, idleState())
	h.ctl.failWith("Pause", app.ErrNotRunning)
	h.ui.do(func() { test.Tap(h.w.header.pause) })
	h.waitUI("the error banner", func() bool { return h.w.header.bannerBox.Visible() })
	h.ui.do(func() {
		if got := h.w.header.banner.Text; !strings.Contains(got, "Pause failed") || !strings.Contains(got, app.ErrNotRunning.Error()) {
			t.Errorf("banner: %q", got)
		}
		if h.w.header.pause.Text != labelPause {
			t.Errorf("a failed pause flipped the label to %q", h.w.header.pause.Text)
		}
	})
}

func TestAutoAcceptSwitch(t *testing.T) {
	h := newHarness(t, idleState())
	h.ui.do(func() { test.Tap(h.w.header.auto) })
	waitFor(t, "SetAutoAccept false", func() bool { return h.ctl.called("SetAutoAccept false") })
	h.waitUI("the offers heading to say auto-accept is off", func() bool {
		return strings.Contains(h.w.dash.offersHeading.Text, "auto-accept is off")
	})
	// A state published from elsewhere moves the switch without calling the Controller back.
	h.publish(func(s *app.State) { s.AutoAccept = true })
	h.ui.do(func() {
		if !h.w.header.auto.Checked {
			t.Error("the switch did not follow the state")
		}
	})
	if n := len(h.ctl.Calls()); n != 2 {
		t.Errorf("calls: %v (the state change must not echo back as a call)", h.ctl.Calls())
	}
}

func TestOfferAcceptAndDecline(t *testing.T) {
	h := newHarness(t, busyState())
	h.ui.do(func() {
		row := h.w.dash.offers.get("job-42")
		if row == nil {
			t.Fatal("no row for offer job-42")
		}
		if !row.accept.Visible() || !row.decline.Visible() {
			t.Fatal("an offer waiting for the user shows no Accept/Decline")
		}
		if got := row.countdown.Text; got != "expires in 7 s" {
			t.Errorf("countdown: %q", got)
		}
		test.Tap(row.accept)
	})
	waitFor(t, "AcceptOffer job-42", func() bool { return h.ctl.called("AcceptOffer job-42") })
	h.waitUI("the accepted offer to run", func() bool {
		return h.w.dash.offers.get("job-42") == nil && h.w.dash.running.get("job-42") != nil
	})
	h.ui.do(func() { test.Tap(h.w.dash.offers.get("job-43").decline) })
	waitFor(t, "DeclineOffer job-43", func() bool { return h.ctl.called("DeclineOffer job-43") })
	h.waitUI("the offers list to empty", func() bool { return h.w.dash.offersEmpty.Visible() })
	for _, c := range h.ctl.Calls() {
		if strings.HasPrefix(c, "AcceptOffer") && c != "AcceptOffer job-42" {
			t.Errorf("unexpected call %q", c)
		}
	}
}

func TestOfferBeingDecidedHasNoButtons(t *testing.T) {
	s := busyState()
	s.Offers[0].WaitingForUser = false
	h := newHarness(t, s)
	h.ui.do(func() {
		row := h.w.dash.offers.get("job-42")
		if row.accept.Visible() || !row.deciding.Visible() {
			t.Error("an offer the worker is deciding shows Accept")
		}
	})
}

func TestCancelRunningJob(t *testing.T) {
	h := newHarness(t, busyState())
	id := busyState().Running[0].JobID
	h.ui.do(func() {
		r := h.w.dash.running.get(id)
		if got := r.elapsed.Text; got != "00:12 elapsed" {
			t.Errorf("elapsed: %q", got)
		}
		if r.bar.Value != 0.64 {
			t.Errorf("progress %v", r.bar.Value)
		}
		test.Tap(r.cancel)
	})
	// It asks first, saying what happens to the job (finding 3: it cancelled at once, and the
	// job came back to this worker); "Keep running" keeps it.
	h.ui.do(func() {
		top := h.w.win.Canvas().Overlays().Top()
		if top == nil {
			t.Fatal("Cancel did not ask first")
		}
		if texts := strings.Join(shownTexts(top), " "); !strings.Contains(texts, "another worker") || !strings.Contains(texts, "image · sdxl-turbo") {
			t.Errorf("the question says %q", texts)
		}
		test.Tap(findButton(top, "Keep running"))
	})
	h.sync()
	if h.ctl.called("CancelJob " + id) {
		t.Fatal("Keep running cancelled the job")
	}
	h.ui.do(func() {
		test.Tap(h.w.dash.running.get(id).cancel)
		test.Tap(findButton(h.w.win.Canvas().Overlays().Top(), "Cancel job"))
	})
	waitFor(t, "CancelJob", func() bool { return h.ctl.called("CancelJob " + id) })
	h.waitUI("the job to leave the list", func() bool { return h.w.dash.running.get(id) == nil && h.w.dash.runningEmpty.Visible() })
}

// TestQuitAfterThisJob: the one "stop soon" besides Pause (finding 8: "Pause" and "Finish current
// job, then pause" did the same for a creator; finding 9: no "quit after this job").
func TestQuitAfterThisJob(t *testing.T) {
	var mu sync.Mutex
	asked := 0
	stopped := make(chan struct{})
	h := newHarness(t, idleState(), withOptions(Options{Stopped: stopped, QuitAfterJobs: func() {
		mu.Lock()
		asked++
		mu.Unlock()
	}}))
	b := h.w.header.drain
	h.ui.do(func() {
		if !b.Visible() || !b.Disabled() || b.Text != labelQuitAfter {
			t.Errorf("with nothing running: %q visible %v disabled %v", b.Text, b.Visible(), b.Disabled())
		}
	})
	h.publish(replaceWith(busyState()))
	h.ui.do(func() {
		if b.Disabled() {
			t.Fatal("Quit after this job is off while a job runs")
		}
		test.Tap(b)
		if b.Text != labelQuitting || !b.Disabled() || !strings.Contains(h.w.header.note.Text, "quits once the running job is done") {
			t.Errorf("after the click: %q disabled %v, note %q", b.Text, b.Disabled(), h.w.header.note.Text)
		}
	})
	mu.Lock()
	n := asked
	mu.Unlock()
	if n != 1 || h.quitCount() != 0 {
		t.Fatalf("asked the worker %d times, quit %d times; want 1 and 0 (it quits when the worker has stopped)", n, h.quitCount())
	}
	close(stopped) // the worker finished and stopped
	waitFor(t, "the window to quit after its worker stopped", func() bool { return h.quitCount() == 1 })
}

// TestQuitAfterThisJobIsNotOfferedForAWorkerElsewhere: a window attached to a service cannot stop it.
func TestQuitAfterThisJobIsNotOfferedForAWorkerElsewhere(t *testing.T) {
	h := newHarness(t, busyState())
	h.ui.do(func() {
		if h.w.header.drain.Visible() {
			t.Errorf("%q shows for a worker the window does not own", h.w.header.drain.Text)
		}
		if it := quitAfterItem(h.w.state, h.w.quitAfterState()); !it.Disabled {
			t.Errorf("tray item %+v is on", it)
		}
	})
}

func TestTickerMovesCountdownsWithoutNewState(t *testing.T) {
	h := newHarness(t, busyState(), withTick(time.Millisecond))
	id := busyState().Running[0].JobID
	h.clock.Add(5 * time.Second)
	h.waitUI("the elapsed time to move", func() bool { return h.w.dash.running.get(id).elapsed.Text == "00:17 elapsed" })
	h.waitUI("the countdown to move", func() bool { return h.w.dash.offers.get("job-42").countdown.Text == "expires in 2 s" })
	h.clock.Add(5 * time.Second)
	h.waitUI("the offer to show it is expiring", func() bool { return h.w.dash.offers.get("job-42").countdown.Text == "expiring…" })
}

func TestReconnectCountdownAndButton(t *testing.T) {
	s := idleState()
	s.Conn = app.ConnInfo{State: connReconnecting, Server: "studio.example.com", Attempt: 3, NextRetry: t0.Add(4 * time.Second),
		LastError: "dial tcp: connection refused"}
	h := newHarness(t, s, withTick(time.Millisecond))
	h.ui.do(func() {
		if got := h.w.header.title.Text; got != "Reconnecting in 4 s (attempt 3)" {
			t.Errorf("title: %q", got)
		}
		if got := subtleText(h.w.header.detail); got != "Last error: dial tcp: connection refused" {
			t.Errorf("detail: %q", got)
		}
	})
	h.clock.Add(3 * time.Second)
	h.waitUI("the countdown", func() bool { return h.w.header.title.Text == "Reconnecting in 1 s (attempt 3)" })
	h.ui.do(func() { test.Tap(h.w.header.fix) })
	waitFor(t, "Reconnect", func() bool { return h.ctl.called("Reconnect") })
}

func TestAuthFailedOffersRegisterAgain(t *testing.T) {
	h := newHarness(t, authFailedState())
	h.ui.do(func() {
		if got := h.w.header.fix.Text; got != "Register again" || !h.w.header.fixBox.Visible() {
			t.Fatalf("fix button %q visible=%v", got, h.w.header.fixBox.Visible())
		}
		test.Tap(h.w.header.fix)
		if h.w.tabs.SelectedIndex() != 2 {
			t.Errorf("Register again opened tab %d, not Settings", h.w.tabs.SelectedIndex())
		}
		if h.w.win.Canvas().Focused() != h.w.settings.pairing {
			t.Error("the pairing code field is not focused")
		}
	})
}

func TestQuitAsksFirstWhenAJobRuns(t *testing.T) {
	h := newHarness(t, busyState())
	h.ui.do(func() { h.w.trayAction(TrayItem{Action: TrayQuit}) })
	h.ui.do(func() {
		top := h.w.win.Canvas().Overlays().Top()
		if top == nil {
			t.Fatal("Quit with a running job asked nothing")
		}
		if b := findButton(top, "Keep running"); b == nil {
			t.Fatal("no Keep running button")
		} else {
			test.Tap(b)
		}
	})
	h.ui.do(func() {
		if h.w.win.Canvas().Overlays().Top() != nil {
			t.Error("the dialog stayed after Keep running")
		}
	})
	if n := h.quitCount(); n != 0 {
		t.Fatalf("Keep running quit anyway (%d)", n)
	}
	h.ui.do(func() {
		h.w.trayAction(TrayItem{Action: TrayQuit})
		test.Tap(findButton(h.w.win.Canvas().Overlays().Top(), "Quit"))
	})
	waitFor(t, "Quit to run", func() bool { return h.quitCount() == 1 })
}

func TestQuitWithoutJobsQuitsAtOnce(t *testing.T) {
	h := newHarness(t, idleState())
	h.ui.do(func() {
		h.w.trayAction(TrayItem{Action: TrayQuit})
		if h.w.win.Canvas().Overlays().Top() != nil {
			t.Error("Quit asked with nothing running")
		}
	})
	waitFor(t, "Quit to run", func() bool { return h.quitCount() == 1 })
	// The window stops following before the app quits: Fyne's queue closes on the way out.
	waitFor(t, "the subscription to close", func() bool { return h.obs.Subscribers() == 0 })
}

func TestTrayActionsCallTheController(t *testing.T) {
	h := newHarness(t, busyState())
	for _, tc := range []struct {
		action TrayAction
		call   string
	}{
		{TrayAutoAccept, "SetAutoAccept true"},
		{TrayResume, "Resume"},
		{TrayPause, "Pause"},
	} {
		h.ui.do(func() { h.w.trayAction(TrayItem{Action: tc.action}) })
		waitFor(t, tc.call, func() bool { return h.ctl.called(tc.call) })
	}
}

func TestNotificationsFromNotices(t *testing.T) {
	h := newHarness(t, idleState())
	failed := func(id string) app.Notice {
		return app.Notice{Kind: app.NoticeJobFinished, Time: t0, Level: protocol.LevelError, JobID: id,
			Job: &app.RecentJob{JobID: id, Kind: protocol.KindImage, Model: "sdxl", Status: "failed", Error: "out of memory"}}
	}
	h.obs.Notify(app.Notice{Kind: app.NoticeAuthFailed, Text: "This worker was removed from the Studio — register again"})
	h.obs.Notify(app.Notice{Kind: app.NoticeYield, State: protocol.StateYielding, Text: "Paused while game.exe uses the GPU — resumes by itself"})
	h.obs.Notify(app.Notice{Kind: app.NoticeYield, State: protocol.StateIdle, Text: "The GPU is free again: taking jobs"})
	h.obs.Notify(app.Notice{Kind: app.NoticeBackend, Level: protocol.LevelWarn, Text: "The llm backend stopped answering: connection refused"})
	h.obs.Notify(app.Notice{Kind: app.NoticeBackend, Level: protocol.LevelInfo, Text: "The llm backend answers again: llm jobs are taken again"})
	h.obs.Notify(failed("a"))
	h.obs.Notify(failed("b")) // within the minute: held back
	h.obs.Notify(app.Notice{Kind: app.NoticeJobFinished, Job: &app.RecentJob{Status: "done"}})
	h.sync()
	h.clock.Add(time.Minute)
	h.obs.Notify(failed("c"))
	h.sync()

	var got []string
	for _, n := range h.app.Sent() {
		got = append(got, n.Title+" | "+n.Content)
	}
	want := []string{
		"Studio Worker: sign-in needed | This worker was removed from the Studio — register again",
		"Studio Worker stepped aside | Paused while game.exe uses the GPU — resumes by itself",
		"Studio Worker is back | The GPU is free again: taking jobs",
		"A backend stopped answering | The llm backend stopped answering: connection refused",
		"A backend answers again | The llm backend answers again: llm jobs are taken again",
		"A job failed | image · sdxl: out of memory",
		"A job failed | image · sdxl: out of memory (and 1 more failed since the last notice)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("notifications:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLogViewShowsFiltersAndCopies(t *testing.T) {
	h := newHarness(t, idleState())
	for _, n := range []app.Notice{
		{Kind: app.NoticeLog, Time: t0, Level: protocol.LevelDebug, Source: "session", Text: "heartbeat sent"},
		{Kind: app.NoticeLog, Time: t0, Level: protocol.LevelInfo, Source: "worker", Text: "accepted an offer", JobID: "job-1"},
		{Kind: app.NoticeLog, Time: t0, Level: protocol.LevelError, Source: "engine", Text: "backend refused", Attrs: map[string]string{"kind": "llm"}},
		{Kind: app.NoticeOffer, Time: t0, Text: "Offer: image · sdxl"}, // not a log line
	} {
		h.obs.Notify(n)
	}
	h.sync()
	h.ui.do(func() {
		v := h.w.logs
		text := v.buf.text()
		if strings.Contains(text, "heartbeat") {
			t.Error("debug lines show under the default filter")
		}
		if strings.Contains(text, "Offer:") {
			t.Error("a non-log notice shows in the log")
		}
		if !strings.Contains(text, "15:09:26  ERROR  engine: backend refused  kind=llm") {
			t.Errorf("log text:\n%s", text)
		}
		if !strings.Contains(text, "worker: accepted an offer  job_id=job-1") {
			t.Errorf("log text:\n%s", text)
		}
		v.level.SetSelected("Everything")
		if !strings.Contains(v.buf.text(), "heartbeat sent") {
			t.Error("Everything hides debug lines")
		}
		test.Type(v.search, "REFUSED")
		if got := v.buf.text(); strings.Count(got, "\n") != 1 || !strings.Contains(got, "backend refused") {
			t.Errorf("search for refused shows:\n%s", got)
		}
		test.Tap(findButton(v.content, "Copy"))
		if got := h.app.Clipboard().Content(); !strings.Contains(got, "backend refused") || strings.Contains(got, "heartbeat") {
			t.Errorf("copied %q", got)
		}
		if !strings.Contains(subtleText(v.file), "worker.log") {
			t.Errorf("log file line %q", subtleText(v.file))
		}
	})
}

func TestCloseStopsEverything(t *testing.T) {
	h := newHarness(t, idleState(), withTick(time.Millisecond))
	h.w.Close()
	if n := h.obs.Subscribers(); n != 0 {
		t.Errorf("%d subscriptions open after Close", n)
	}
	h.w.Close() // twice is fine
	// Publishing after Close neither blocks nor reaches the window.
	seq := h.w.state.Seq
	h.obs.Update(func(s *app.State) { s.Paused = true })
	h.ui.do(func() {
		if h.w.state.Seq != seq {
			t.Error("a state reached a closed window")
		}
	})
	// A click after Close does not start a goroutine that nobody waits for.
	h.ui.do(func() { test.Tap(h.w.header.pause) })
	if h.ctl.called("Pause") {
		t.Error("a click after Close reached the Controller")
	}
}

func TestSlowWindowLosesNoticesNotStates(t *testing.T) {
	h := newHarness(t, idleState())
	// Hold the UI thread while the worker publishes a burst: the newest state still arrives, and
	// the log view says that lines were skipped rather than hiding the gap.
	h.ui.mu.Lock()
	for i := range 2000 {
		h.obs.Update(func(s *app.State) { s.Counters.Done = i })
		h.obs.Notify(app.Notice{Kind: app.NoticeLog, Text: "line"})
	}
	h.ui.mu.Unlock()
	h.waitUI("the last state", func() bool { return h.w.state.Counters.Done == 1999 })
	h.sync()
	h.ui.do(func() {
		if !strings.Contains(h.w.logs.buf.text(), "skipped because the window fell behind") {
			t.Error("lost notices were not reported in the log view")
		}
		if n := len(h.w.logs.buf.lines); n > maxLogLines {
			t.Errorf("log view holds %d lines", n)
		}
	})
}

// TestLongLogLineCanBeReadWhole: the list cuts a long line with "…"; selecting it shows it whole
// (finding 8).
func TestLongLogLineCanBeReadWhole(t *testing.T) {
	h := newHarness(t, idleState())
	long := "the backend answered: " + strings.Repeat("a long explanation with many words ", 20) + "END"
	h.obs.Notify(app.Notice{Kind: app.NoticeLog, Time: t0, Level: protocol.LevelWarn, Source: "engine", Text: long})
	h.sync()
	h.ui.do(func() {
		v := h.w.logs
		if v.whole.Text != logWholeHint {
			t.Errorf("before a selection the pane says %q", v.whole.Text)
		}
		for i, l := range v.buf.shown {
			if strings.HasSuffix(l.text, "END") {
				v.list.Select(i)
			}
		}
		if !strings.HasSuffix(v.whole.Text, "END") || !strings.Contains(v.whole.Text, "engine: the backend answered") || v.whole.Wrapping != fyne.TextWrapWord {
			t.Errorf("the selected line shows as %q (wrapping %v)", v.whole.Text, v.whole.Wrapping)
		}
	})
}

// TestOfferWithoutAVRAMNeedReadsRight: "VRAM unknown VRAM" (finding 8).
func TestOfferWithoutAVRAMNeedReadsRight(t *testing.T) {
	s := idleState()
	s.Offers = []app.PendingOffer{{JobID: "job-5", Kind: protocol.KindTTS, Model: "kokoro", ExpiresAt: t0.Add(time.Minute), WaitingForUser: true}}
	h := newHarness(t, s)
	h.ui.do(func() {
		got := subtleText(h.w.dash.offers.get("job-5").sub)
		if got != "no VRAM need stated · job job-5" {
			t.Errorf("offer line %q", got)
		}
	})
}
