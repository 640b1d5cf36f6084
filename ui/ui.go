package ui

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"fyne.io/fyne/v2"
	fyneapp "fyne.io/fyne/v2/app"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/theme"
	"fyne.io/systray"

	"studioworker/app"
	"studioworker/assets"
)

// appID is FyneApp.toml's ID: preferences and notifications are filed under it.
const appID = "studio.worker.app"

// appName is FyneApp.toml's Name: the tray's title, the notifications' sender.
const appName = "Studio Worker"

// actionTimeout bounds one Controller call made from a widget; a call past it shows as an error.
const actionTimeout = 30 * time.Second

// Options says how the window starts and quits.
type Options struct {
	Quit        func() // what "Quit" does after confirming (stops the worker); nil = just quit the Fyne app
	ShowOnStart bool   // open the window at start (true for a double-click; false for `--tray`)
	// Raise delivers a value each time a second launch asks this window to show itself (the
	// single-instance lock in app); nil when there is none.
	Raise <-chan struct{}
	// QuitAfterJobs lets the running jobs finish and deliver, then stops the worker ("Quit after
	// this job"); nil when the worker runs elsewhere, and the item is off.
	QuitAfterJobs func()
	// Stopped is closed when the worker behind the window stopped by itself: the window closes.
	Stopped <-chan struct{}
}

// env is what the window takes from its surroundings; tests replace it.
type env struct {
	do       func(func())     // runs a function on the UI thread (fyne.Do)
	now      func() time.Time // the clock for countdowns and elapsed times
	tick     time.Duration    // how often countdowns move; 0 = never
	trayHost func() bool      // whether a tray (StatusNotifier host) is there to show the icon
	// trayBus says whether the tray can be started at all: on Linux, whether a session bus
	// answers. Without one fyne.io/systray fails to connect and then panics when the app quits
	// (it closes the connection it never made), so the tray is left alone. nil: it can.
	trayBus func() bool
	// hostPoll is how often a missing tray host is looked for again; hostWait how long a start
	// in the tray waits for one before it opens the window, hostWatch how long it is looked for
	// at all (trayhost_watch.go). 0: the defaults.
	hostPoll, hostWait, hostWatch time.Duration
	// onTrayTap sets what a click on the tray icon does (fyne.io/systray's; nil in tests).
	onTrayTap func(func())
	// trayTooltip sets the tray icon's tooltip (fyne.io/systray's; nil in tests).
	trayTooltip func(string)
	// desktop makes the notifier that reaches the desktop (platformNotifier); nil: Fyne's.
	desktop func(a fyne.App, log *slog.Logger, onAction func(jobID, action string)) desktopNotifier
	log     *slog.Logger
}

func defaultEnv() env {
	return env{do: fyne.Do, now: time.Now, tick: time.Second, trayHost: trayHostPresent, trayBus: trayBusReachable,
		onTrayTap: systray.SetOnTapped, trayTooltip: systray.SetTooltip, desktop: platformNotifier, log: slog.Default()}
}

// Run builds the Fyne app, the window and the tray, subscribes to src, and blocks until the user
// quits.
func Run(src app.Source, ctl app.Controller, opts Options) error {
	a := fyneapp.NewWithID(appID)
	if meta := a.Metadata(); meta.Name == "" {
		// A binary built without `fyne package` (go build, the demo, tests) has no metadata: the
		// tray's title and the notifications would say the app id, studio.worker.app.
		meta.ID, meta.Name = appID, appName
		fyneapp.SetMetadata(meta)
	}
	a.SetIcon(fyne.NewStaticResource("studio-worker.png", assets.AppIcon()))
	w := New(a, src, ctl, opts)
	defer w.Close()
	a.Run()
	return nil
}

// Window is the Studio Worker window and, on a desktop app, its tray icon and menu.
type Window struct {
	app  fyne.App
	win  fyne.Window
	ctl  app.Controller
	opts Options
	env  env

	sub      *app.Subscription
	ctx      context.Context
	cancel   context.CancelFunc
	mu       sync.Mutex // guards closed and wg.Add against Close
	closed   bool
	wg       sync.WaitGroup // the goroutines spawn started
	quitting sync.WaitGroup // a quit in progress (it stops the others itself)

	// From the subscription goroutines to the UI thread, at most one hop queued each.
	latest  atomic.Pointer[app.State]
	stateQ  coalescer
	tickQ   coalescer
	notices noticeInbox

	// The clock (visibility.go): ticking is whether it should run, tickWake tells the ticker
	// goroutine it changed, tickParked whether that goroutine sleeps with its ticker stopped.
	ticking    atomic.Bool
	tickWake   chan struct{}
	tickParked atomic.Bool

	// UI thread only.
	state     app.State
	visible   bool // the window is shown (Show, hide): only then is its content kept up to date
	hasTray   bool
	tray      desktop.App
	trayItems []TrayItem
	trayIcon  string
	trayTip   string
	icons     map[string]fyne.Resource
	header    *header
	dash      *dashboard
	logs      *logView
	settings  *settingsView
	tabs      *container.AppTabs
	notifier  *notifier
	desk      desktopNotifier // closed by stop
	first     *firstRun       // the first-run page (firstrun.go)
	demoBar   *demoBar
	page      string // which content the window shows: pageFirstRun, pageMain or pageDemo
	skipped   bool   // the user skipped the first-run page
	// quittingAfter: "Quit after this job" was chosen (quitafter.go).
	quittingAfter bool
}

// New builds the window on an existing Fyne app and subscribes to src. It must be called on the
// UI thread (before a.Run, or from a callback).
func New(a fyne.App, src app.Source, ctl app.Controller, opts Options) *Window {
	return newWindow(a, src, ctl, opts, defaultEnv())
}

func newWindow(a fyne.App, src app.Source, ctl app.Controller, opts Options, e env) *Window {
	w := &Window{app: a, ctl: ctl, opts: opts, env: e, notifier: newNotifier(), icons: map[string]fyne.Resource{},
		tickWake: make(chan struct{}, 1)}
	if w.env.onTrayTap == nil {
		w.env.onTrayTap = func(func()) {}
	}
	w.desk = fyneNotifier{app: a}
	if e.desktop != nil {
		w.desk = e.desktop(a, e.log, func(jobID, action string) { w.onUI(func() { w.notificationAction(jobID, action) }) })
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.win = a.NewWindow("Studio Worker")
	w.win.SetIcon(fyne.NewStaticResource("studio-worker.png", assets.AppIcon()))

	w.header = newHeader(w)
	w.dash = newDashboard(w)
	w.logs = newLogView(e.now().Location(), func(s string) { a.Clipboard().SetContent(s) })
	w.settings = newSettingsView(w)
	w.tabs = container.NewAppTabs(
		container.NewTabItemWithIcon("Dashboard", theme.HomeIcon(), w.dash.content),
		container.NewTabItemWithIcon("Logs", theme.ListIcon(), w.logs.content),
		container.NewTabItemWithIcon("Settings", theme.SettingsIcon(), w.settings.content),
	)
	w.first, w.demoBar = newFirstRun(w), newDemoBar(w)
	w.win.SetContent(w.mainContent(false))
	w.win.Resize(fyne.NewSize(960, 640))

	if desk, ok := a.(desktop.App); ok && (e.trayBus == nil || e.trayBus()) {
		w.tray = desk
		w.hasTray = e.trayHost()
	}

	first, sub := src.Subscribe()
	w.sub = sub
	w.apply(first)

	if w.hasTray {
		w.useTray()
	} else if _, desk := a.(desktop.App); desk {
		// No tray shows the icon (or none can be started): the window is the only way to
		// control the app.
		w.header.showNote(noTrayNote)
		e.log.Info("no system tray host: the window stays the way to control the app", "tray_started", w.tray != nil)
	}
	w.win.SetCloseIntercept(w.closeRequested) // after SetSystemTrayWindow, which sets its own

	w.spawn(w.followStates)
	w.spawn(w.followNotices)
	if e.tick > 0 {
		w.spawn(w.runTicker)
	}
	if opts.Raise != nil {
		w.spawn(w.followRaises)
	}
	if opts.Stopped != nil {
		w.spawn(w.followStopped)
	}
	w.settings.load()
	waitForHost := !w.hasTray && w.tray != nil && w.env.trayHost != nil
	switch {
	case w.hasTray && !opts.ShowOnStart:
		w.spawn(w.releaseAfterStart)
	case waitForHost && !opts.ShowOnStart:
		// Started in the tray (at login) before the desktop's tray host is up: wait for it
		// rather than open the window the creator did not ask for (trayhost_watch.go).
	default:
		w.Show()
	}
	if waitForHost {
		w.spawn(w.watchForTrayHost)
	}
	return w
}

// Close unsubscribes and stops the window's goroutines, waiting for them. Controller calls in
// flight are cancelled. The Fyne window itself is left to the app.
func (w *Window) Close() {
	w.stop()
	w.quitting.Wait()
}

// stop is Close without waiting for a quit in progress, which calls it.
func (w *Window) stop() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	w.mu.Unlock()
	w.cancel()
	w.sub.Close()
	w.wg.Wait()
	w.desk.close()
}

func (w *Window) isClosed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

// spawn runs fn on a goroutine the window owns: Close cancels ctx and waits for it.
func (w *Window) spawn(fn func(ctx context.Context)) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		fn(w.ctx)
	}()
	return true
}

// onUI runs fn on the UI thread unless the window has closed meanwhile.
func (w *Window) onUI(fn func()) {
	w.env.do(func() {
		if !w.isClosed() {
			fn()
		}
	})
}

// followStates applies each new State on the UI thread. States() keeps only the newest, and the
// coalescer keeps at most one apply queued, so a busy UI thread skips states instead of piling them.
func (w *Window) followStates(context.Context) {
	for s := range w.sub.States() {
		w.latest.Store(&s)
		w.stateQ.trigger(w.onUI, func() {
			if p := w.latest.Load(); p != nil {
				w.apply(*p)
			}
		})
	}
}

// followNotices hands notices to the UI thread in batches.
func (w *Window) followNotices(context.Context) {
	for n := range w.sub.Notices() {
		w.notices.put(n, w.sub.Lost())
		w.notices.q.trigger(w.onUI, w.drainNotices)
	}
}

// apply shows a State everywhere: header, dashboard, settings, tray. While the window is hidden
// only the tray and the settings' config revision follow it; Show applies the latest State.
func (w *Window) apply(s app.State) {
	// No check on Seq: states arrive in order on one channel, and a worker that restarted behind
	// the control socket starts counting again.
	w.state = s
	w.settings.followRev(s.ConfigRev)
	w.updateTray(s)
	w.wantTicks()
	if !w.visible {
		return
	}
	w.showPage(s)
	now := w.env.now()
	w.header.update(s, now)
	w.dash.update(s, now)
	w.settings.updateFromState(s)
	w.logs.setLogFile(s.LogFile)
}

func (w *Window) drainNotices() {
	ns, lost := w.notices.take()
	w.logs.add(ns, lost)
	now := w.env.now()
	for _, n := range ns {
		switch {
		case n.Kind == app.NoticeOffer && n.Offer != nil && n.Offer.WaitingForUser:
			if !w.visible { // in the window it is in front of the creator already
				w.desk.offer(*n.Offer, now)
			}
		case n.Kind == app.NoticeOfferResolved:
			w.desk.retract(n.JobID)
		}
		if note := w.notifier.notificationFor(n, now); note != nil {
			w.desk.send(note)
		}
	}
}

// run calls the Controller on a goroutine the window owns; done runs on the UI thread with the
// result. A failure shows in the header's banner, so no click fails silently.
func (w *Window) run(what string, call func(context.Context) error, done func(error)) {
	w.header.clearError()
	started := w.spawn(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, actionTimeout)
		err := call(ctx)
		cancel()
		if err != nil {
			w.env.log.Warn("action failed", "action", what, "err", err)
		}
		w.onUI(func() {
			var ve *app.ValidationError
			// A form puts its ValidationError next to the fields; a banner above would say the
			// same again, in the engineer's words ("invalid settings: server_url: …").
			if err != nil && !(done != nil && errors.As(err, &ve)) {
				w.header.showError(what + " failed: " + err.Error())
			}
			if done != nil {
				done(err)
			}
		})
	})
	if !started && done != nil {
		done(context.Canceled)
	}
}

func (w *Window) controller() app.Controller { return w.ctl }

// The dashboard's buttons.

func (w *Window) acceptOffer(id string) {
	w.run("Accept offer "+shortID(id), func(ctx context.Context) error { return w.ctl.AcceptOffer(ctx, id) }, nil)
}

func (w *Window) declineOffer(id string) {
	w.run("Decline offer "+shortID(id), func(ctx context.Context) error { return w.ctl.DeclineOffer(ctx, id) }, nil)
}

// The header's buttons.
func (w *Window) togglePause() {
	if w.state.Paused || w.state.Draining {
		w.run("Resume", w.ctl.Resume, nil)
		return
	}
	w.run("Pause", w.ctl.Pause, nil)
}

func (w *Window) setAutoAccept(on bool) {
	w.run("Auto-accept", func(ctx context.Context) error { return w.ctl.SetAutoAccept(ctx, on) }, func(err error) {
		if err != nil {
			setChecked(w.header.auto, w.state.AutoAccept) // show what is true, not what was asked
		}
	})
}

func (w *Window) reconnect() { w.run("Reconnect", w.ctl.Reconnect, nil) }

// registerAgain opens the settings at the pairing code.
func (w *Window) registerAgain() {
	w.Show()
	w.tabs.SelectIndex(2)
	w.settings.focusPairing(w.win.Canvas())
}

// closeRequested is the window's close button: with a tray the window only hides (the worker
// goes on, the icon brings it back); without one, closing is quitting.
func (w *Window) closeRequested() {
	if w.hasTray {
		w.hide()
		return
	}
	w.quit()
}

func (w *Window) quitNow() {
	w.hide()
	if w.isClosed() {
		w.app.Quit()
		return
	}
	quit := w.opts.Quit
	w.quitting.Add(1)
	go func() {
		defer w.quitting.Done()
		if quit != nil {
			quit() // stopping the worker may take a moment (it reports the cancelled job): not on the UI thread
		}
		// Stop every goroutine that calls fyne.Do before the app's loop ends: Fyne closes its
		// queue on the way out, and a late fyne.Do would send on a closed channel.
		w.stop()
		w.env.do(w.app.Quit)
	}()
}

// coalescer keeps at most one call to fn queued on the UI thread.
type coalescer struct{ pending atomic.Bool }

// trigger queues fn through do unless a call is already queued. fn clears the flag before it reads
// anything, so whatever was published before trigger returns is seen by a queued call.
func (c *coalescer) trigger(do func(func()), fn func()) {
	if c.pending.CompareAndSwap(false, true) {
		do(func() {
			c.pending.Store(false)
			fn()
		})
	}
}

// noticeInbox holds notices between the subscription goroutine and the UI thread, bounded: if the
// UI thread falls behind, the oldest are dropped and counted like the subscription's own losses.
type noticeInbox struct {
	mu    sync.Mutex
	items []app.Notice
	lost  uint64
	q     coalescer
}

const inboxMax = 512

func (b *noticeInbox) put(n app.Notice, lost uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lost += lost
	b.items = append(b.items, n)
	if over := len(b.items) - inboxMax; over > 0 {
		b.items = append(b.items[:0], b.items[over:]...)
		b.lost += uint64(over)
	}
}

func (b *noticeInbox) take() ([]app.Notice, uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	items, lost := b.items, b.lost
	b.items, b.lost = nil, 0
	return items, lost
}
