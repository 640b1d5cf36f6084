package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"studioworker/app"
	"studioworker/internal/handclock"
	"studioworker/protocol"
)

// t0 is the tests' "now": a fixed instant in UTC, so goldens and countdowns do not depend on when
// or where the tests run.
var t0 = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

// recordingController is the UI's boundary in tests: it records every call and, like the real
// worker, publishes the state that follows into the Observers.
type recordingController struct {
	obs *app.Observers

	mu       sync.Mutex
	calls    []string
	fail     map[string]error    // method name -> error to return
	gate     map[string]chan int // method name -> closed (or sent to) before the call returns
	settings app.Settings
	saved    []app.Settings
	tested   []app.BackendForm
	models   []string
	regs     []app.RegisterRequest
	// autoStart is the test's stand-in for the OS's own record of "start with this computer".
	autoStart bool
}

func newRecordingController(obs *app.Observers) *recordingController {
	return &recordingController{obs: obs, fail: map[string]error{}, gate: map[string]chan int{}, settings: testSettings()}
}

func (c *recordingController) record(method, arg string) error {
	c.mu.Lock()
	call := method
	if arg != "" {
		call += " " + arg
	}
	c.calls = append(c.calls, call)
	err, gate := c.fail[method], c.gate[method]
	c.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return err
}

// hold makes the next calls of method wait until the returned channel is closed.
func (c *recordingController) hold(method string) chan int {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan int)
	c.gate[method] = ch
	return ch
}

func (c *recordingController) failWith(method string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail[method] = err
}

func (c *recordingController) Calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

func (c *recordingController) called(call string) bool { return slices.Contains(c.Calls(), call) }

func modeOf(s *app.State) protocol.WorkerState {
	switch {
	case s.Draining && len(s.Running) > 0:
		return protocol.StateDraining
	case s.Paused:
		return protocol.StatePaused
	case len(s.Running) > 0:
		return protocol.StateBusy
	}
	return protocol.StateIdle
}

func (c *recordingController) Pause(ctx context.Context) error {
	if err := c.record("Pause", ""); err != nil {
		return err
	}
	c.obs.Update(func(s *app.State) { s.Paused = true; s.Mode = modeOf(s) })
	return nil
}

func (c *recordingController) Resume(ctx context.Context) error {
	if err := c.record("Resume", ""); err != nil {
		return err
	}
	c.obs.Update(func(s *app.State) { s.Paused, s.Draining = false, false; s.Mode = modeOf(s) })
	return nil
}

func (c *recordingController) Drain(ctx context.Context) error {
	if err := c.record("Drain", ""); err != nil {
		return err
	}
	c.obs.Update(func(s *app.State) { s.Draining = true; s.Mode = modeOf(s) })
	return nil
}

func (c *recordingController) SetAutoAccept(ctx context.Context, on bool) error {
	if err := c.record("SetAutoAccept", fmt.Sprint(on)); err != nil {
		return err
	}
	c.obs.Update(func(s *app.State) { s.AutoAccept = on })
	return nil
}

func (c *recordingController) AcceptOffer(ctx context.Context, jobID string) error {
	if err := c.record("AcceptOffer", jobID); err != nil {
		return err
	}
	c.obs.Update(func(s *app.State) {
		i := slices.IndexFunc(s.Offers, func(o app.PendingOffer) bool { return o.JobID == jobID })
		if i < 0 {
			return
		}
		o := s.Offers[i]
		s.Offers = slices.Delete(s.Offers, i, i+1)
		s.Running = append(s.Running, app.RunningJob{JobID: o.JobID, Kind: o.Kind, Model: o.Model, Started: t0})
		s.Mode = modeOf(s)
	})
	return nil
}

func (c *recordingController) DeclineOffer(ctx context.Context, jobID string) error {
	if err := c.record("DeclineOffer", jobID); err != nil {
		return err
	}
	c.obs.Update(func(s *app.State) {
		s.Offers = slices.DeleteFunc(s.Offers, func(o app.PendingOffer) bool { return o.JobID == jobID })
	})
	return nil
}

func (c *recordingController) CancelJob(ctx context.Context, jobID string) error {
	if err := c.record("CancelJob", jobID); err != nil {
		return err
	}
	c.obs.Update(func(s *app.State) {
		s.Running = slices.DeleteFunc(s.Running, func(j app.RunningJob) bool { return j.JobID == jobID })
		s.Mode = modeOf(s)
	})
	return nil
}

func (c *recordingController) Reconnect(ctx context.Context) error { return c.record("Reconnect", "") }

func (c *recordingController) Register(ctx context.Context, req app.RegisterRequest) error {
	if err := c.record("Register", req.ServerURL); err != nil {
		return err
	}
	c.mu.Lock()
	c.regs = append(c.regs, req)
	c.mu.Unlock()
	return nil
}

func (c *recordingController) Settings(ctx context.Context) (app.Settings, error) {
	if err := c.record("Settings", ""); err != nil {
		return app.Settings{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.settings, nil
}

func (c *recordingController) SaveSettings(ctx context.Context, s app.Settings) error {
	if err := c.record("SaveSettings", ""); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.saved = append(c.saved, s)
	c.settings = s
	return nil
}

func (c *recordingController) TestBackend(ctx context.Context, kind protocol.Kind, b app.BackendForm) ([]string, error) {
	if err := c.record("TestBackend", string(kind)); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tested = append(c.tested, b)
	return c.models, nil
}

// SetService, like the worker, publishes what "the OS" holds after every attempt, failed or not,
// before it answers. The OS here is a logon entry in words, as Windows' autostarter says them.
func (c *recordingController) SetService(ctx context.Context, on bool) (string, error) {
	err := c.record("SetService", fmt.Sprint(on))
	c.mu.Lock()
	if err == nil {
		c.autoStart = on
	}
	now := c.autoStart
	c.mu.Unlock()
	c.obs.Update(func(s *app.State) { s.AutoStart = logonEntryState(now) })
	switch {
	case err != nil:
		return "", err
	case on:
		return "Starts at logon: " + testLogonEntry, nil
	}
	return `Removed the logon entry HKCU\Software\Microsoft\Windows\CurrentVersion\Run\Studio Worker`, nil
}

const testLogonEntry = `logon entry HKCU\Software\Microsoft\Windows\CurrentVersion\Run\Studio Worker, which runs "C:\Program Files\Studio Worker\studio-worker.exe"`

// logonEntryState is State.AutoStart as Windows' autostarter reports a logon entry, on or off.
func logonEntryState(on bool) app.AutoStart {
	if on {
		return app.AutoStart{On: true, Text: "Starts at logon (Windows logon entry)", Where: testLogonEntry}
	}
	return app.AutoStart{Text: "Off: the worker starts only when you open it"}
}

var _ app.Controller = (*recordingController)(nil)

func testSettings() app.Settings {
	s := app.Settings{
		ServerURL: "https://studio.example.com", Name: "studio-pc", VRAMThresholdGB: 20, MaxConcurrentJobs: 1,
		Yield: app.YieldConfig{Enabled: true, ThresholdMB: 512, ResumeAfterS: 30},
	}
	// The engines as a worker sends them over the control channel; llm's timeout_s is a field
	// the form does not show, and must come back from a save.
	if err := json.Unmarshal([]byte(`{
		"llm":   {"backend": "openai", "url": "http://127.0.0.1:8080/v1", "api_key": "(set)", "timeout_s": 120},
		"image": {"backend": "synthetic", "models": ["sdxl-turbo"]}}`), &s.Engines); err != nil {
		panic(err)
	}
	return s
}

// uiThread stands for the UI thread in tests. Fyne's test driver runs fyne.Do inline on the
// caller's goroutine, so the window's goroutines and the test would touch widgets at once; every
// widget access goes through one lock instead, as it goes through the one UI thread in the app.
type uiThread struct{ mu sync.Mutex }

func (u *uiThread) do(f func()) {
	u.mu.Lock()
	defer u.mu.Unlock()
	f()
}

// notificationRecorder is the test app with its notifications kept, in order.
type notificationRecorder struct {
	fyne.App
	mu     sync.Mutex
	sent   []*fyne.Notification
	opened []string
}

func (a *notificationRecorder) SendNotification(n *fyne.Notification) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sent = append(a.sent, n)
}

// OpenURL records what the window asked the desktop to open (a result to play).
func (a *notificationRecorder) OpenURL(u *url.URL) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.opened = append(a.opened, u.String())
	return nil
}

func (a *notificationRecorder) Opened() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.opened)
}

func (a *notificationRecorder) Sent() []*fyne.Notification {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.sent)
}

// harness is a window on the test app, fed by real Observers, steered through a recordingController.
type harness struct {
	t     *testing.T
	ui    *uiThread
	obs   *app.Observers
	ctl   *recordingController
	clock *handclock.Clock
	app   *notificationRecorder
	w     *Window

	mu    sync.Mutex
	quits int
}

// harnessConfig is what harness options change.
type harnessConfig struct {
	env  env
	wrap func(fyne.App) fyne.App
	src  app.Source     // nil: the harness's own Observers
	ctl  app.Controller // nil: the harness's recordingController
	opts Options        // Quit is the harness's
}

type harnessOption func(*harnessConfig)

// withApp wraps the test app, e.g. to give it a tray.
func withApp(wrap func(fyne.App) fyne.App) harnessOption {
	return func(c *harnessConfig) { c.wrap = wrap }
}

// withOptions starts the window with these Options (but the harness's Quit).
func withOptions(o Options) harnessOption { return func(c *harnessConfig) { c.opts = o } }

func withTick(d time.Duration) harnessOption { return func(c *harnessConfig) { c.env.tick = d } }

// withWorker makes the window watch src and steer ctl (an app.Client attached to a worker over the
// control channel) instead of the harness's own Observers and recordingController.
func withWorker(src app.Source, ctl app.Controller) harnessOption {
	return func(c *harnessConfig) { c.src, c.ctl = src, ctl }
}

func newHarness(t *testing.T, s app.State, opts ...harnessOption) *harness {
	t.Helper()
	h := &harness{t: t, ui: &uiThread{}, clock: handclock.New(t0)}
	h.app = &notificationRecorder{App: test.NewTempApp(t)}
	h.obs = app.NewObservers(s)
	h.ctl = newRecordingController(h.obs)
	cfg := harnessConfig{env: env{do: h.ui.do, now: h.clock.Now, trayHost: func() bool { return false },
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	for _, opt := range opts {
		opt(&cfg)
	}
	o := cfg.opts
	o.Quit = func() {
		h.mu.Lock()
		h.quits++
		h.mu.Unlock()
	}
	var a fyne.App = h.app
	if cfg.wrap != nil {
		a = cfg.wrap(a)
	}
	var src app.Source = h.obs
	var ctl app.Controller = h.ctl
	if cfg.src != nil {
		src, ctl = cfg.src, cfg.ctl
	}
	h.ui.do(func() { h.w = newWindow(a, src, ctl, o, cfg.env) })
	t.Cleanup(func() {
		h.w.Close()
		if n := h.obs.Subscribers(); n != 0 {
			t.Errorf("after Close, %d subscriptions are still open", n)
		}
	})
	// The settings load at start is a Controller call like any other: let it land first.
	h.waitUI("the settings to load", func() bool { return h.w.settings.haveLoaded })
	return h
}

func (h *harness) quitCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.quits
}

// waitUI polls cond on the UI thread until it holds, failing the test after a deadline.
func (h *harness) waitUI(what string, cond func() bool) {
	h.t.Helper()
	waitFor(h.t, what, func() bool {
		var ok bool
		h.ui.do(func() { ok = cond() })
		return ok
	})
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// publish changes the state through the Observers and waits until the window shows it.
func (h *harness) publish(fn func(*app.State)) {
	h.t.Helper()
	h.obs.Update(fn)
	seq := h.obs.Snapshot().Seq
	h.waitUI(fmt.Sprintf("state %d to be applied", seq), func() bool { return h.w.state.Seq == seq })
}

// replaceWith is an update that swaps in a whole state, keeping the sequence counting up.
func replaceWith(next app.State) func(*app.State) {
	return func(s *app.State) {
		seq := s.Seq
		*s = next
		s.Seq = seq
	}
}

// sync waits until every notice published so far has been handled, by sending a marker log line
// and waiting for it to show in the log view.
func (h *harness) sync() {
	h.t.Helper()
	marker := fmt.Sprintf("sync-%d", time.Now().UnixNano())
	h.obs.Notify(app.Notice{Kind: app.NoticeLog, Level: protocol.LevelInfo, Text: marker})
	h.waitUI("the notices to be handled", func() bool {
		return strings.Contains(h.w.logs.buf.text(), marker)
	})
}

// findButton finds a visible button by its text anywhere under o.
func findButton(o fyne.CanvasObject, text string) *widget.Button {
	var found *widget.Button
	walk(o, func(c fyne.CanvasObject) bool {
		if b, ok := c.(*widget.Button); ok && b.Text == text && b.Visible() {
			found = b
			return false
		}
		return true
	})
	return found
}

// walk visits o and what it contains, widgets through their renderers.
func walk(o fyne.CanvasObject, visit func(fyne.CanvasObject) bool) bool {
	if o == nil || !visit(o) {
		return false
	}
	var children []fyne.CanvasObject
	switch c := o.(type) {
	case *fyne.Container:
		children = c.Objects
	case fyne.Widget:
		children = test.WidgetRenderer(c).Objects()
	}
	for _, ch := range children {
		if !walk(ch, visit) {
			return false
		}
	}
	return true
}

// gpuHistory is five minutes of samples ending at end, every 2 s, with a job in the middle.
func gpuHistory(end time.Time) []app.GPUSample {
	var out []app.GPUSample
	for i := range 150 {
		t := end.Add(-time.Duration(149-i) * 2 * time.Second)
		used, util := int64(3100), 3
		if i > 60 && i < 120 {
			used, util = 14500, 80+i%15
		}
		out = append(out, app.GPUSample{Time: t, UsedMB: used, UtilizationPct: util})
	}
	return out
}

func idleState() app.State {
	return app.State{
		Registered: true, ServerURL: "https://studio.example.com", WorkerID: "w-1", Name: "studio-pc",
		Conn: app.ConnInfo{State: connConnected, Server: "studio.example.com", Since: t0.Add(-time.Hour)},
		Mode: protocol.StateIdle, AutoAccept: true, Engine: "synthetic", MaxJobs: 1,
		Models: map[string][]string{"image": {"sdxl-turbo"}, "llm": {"llama3.1:8b"}},
		GPU: app.GPUState{Source: "nvml", CapGB: 20, Cards: []app.GPUCard{{
			Index: 0, Name: "NVIDIA GeForce RTX 4090", UUID: "GPU-1", TotalMB: 24564, UsedMB: 3100, FreeMB: 21464,
			UtilizationPct: 3, HasUtilization: true, TemperatureC: 41, HasTemperature: true, History: gpuHistory(t0),
		}}},
		Counters: app.Counters{Done: 12, Failed: 1, Declined: map[string]int{}},
		LogFile:  "/home/creator/.config/studio-worker/worker.log",
		Started:  t0.Add(-time.Hour),
	}
}

func busyState() app.State {
	s := idleState()
	s.Mode, s.AutoAccept = protocol.StateBusy, false
	s.GPU.Cards[0].UsedMB, s.GPU.Cards[0].UtilizationPct, s.GPU.Cards[0].TemperatureC = 14540, 87, 62
	s.Running = []app.RunningJob{{JobID: "7f3a9c21-5be0-4d7e-9a51-0c6f1e2d3b4a", Kind: protocol.KindImage, Model: "sdxl-turbo",
		Started: t0.Add(-12 * time.Second), Fraction: 0.64, Message: "step 13 of 20"}}
	s.Offers = []app.PendingOffer{
		{JobID: "job-42", Kind: protocol.KindTTS, Model: "kokoro", VRAMGBEstimate: 1.5, ExpiresAt: t0.Add(7 * time.Second), WaitingForUser: true},
		{JobID: "job-43", Kind: protocol.KindLLM, Model: "llama3.1:8b", VRAMGBEstimate: 6, ExpiresAt: t0.Add(3 * time.Second), WaitingForUser: true},
	}
	s.Recent = []app.RecentJob{
		{JobID: "job-40", Kind: protocol.KindImage, Model: "sdxl-turbo", Status: "done", Duration: 4100 * time.Millisecond,
			Ended: t0.Add(-time.Minute), File: "testdata/thumb.png"},
		{JobID: "job-39", Kind: protocol.KindLLM, Model: "llama3.1:8b", Status: "done", Duration: 2300 * time.Millisecond, Ended: t0.Add(-2 * time.Minute)},
		{JobID: "job-38", Kind: protocol.KindVideo, Model: "ltx-video", Status: "failed", Error: "backend timed out", Duration: 95 * time.Second,
			Ended: t0.Add(-5 * time.Minute)},
	}
	return s
}

func authFailedState() app.State {
	s := idleState()
	s.Conn = app.ConnInfo{State: connAuthFailed, Server: "studio.example.com", LastError: "401 Unauthorized", Since: t0.Add(-time.Minute)}
	s.Mode, s.Paused = protocol.StatePaused, true
	s.GPU = app.GPUState{Source: "none", Problem: "No NVIDIA driver found: VRAM checks are off", CapGB: 20}
	s.EngineDown = map[string]string{"llm": "connection refused at http://127.0.0.1:8080/v1"}
	return s
}
