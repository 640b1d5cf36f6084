// idle_gui.go: the idle_gui figure — the real studio-worker binary idle and connected to a hub,
// headless, with its window open on a virtual display, and hidden in the tray, one after the other
// in the same run (issue 18's goal for the window). It must not know how the window or the tray
// is built: it sees each as a process, a display and a bus, as a desktop would.

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"studioworker/internal/dbustest"
	"studioworker/internal/procenv"
)

// guiSettle is how long each worker is left after it connects before its window is measured:
// the window's first frames, the first GPU samples, hello and the first log batch are start-up,
// not idling.
const guiSettle = 5 * time.Second

// guiMode is one way the binary runs in the figure.
type guiMode struct {
	key    string // the prefix of its details in the JSON
	label  string
	args   []string // before --config
	gui    bool     // gets the display and the bus
	window bool     // its window must be shown
}

func guiModes() []guiMode {
	return []guiMode{
		{"headless_", "headless `run`", []string{"run"}, false, false},
		{"window_", "window open", nil, true, true},
		{"tray_", "hidden in the tray", []string{"--tray"}, true, false},
	}
}

// runIdleGUI builds the real binary (the bench's own does not link the window), starts an Xvfb,
// a private session bus and a fake StatusNotifierWatcher on it (the desktop's tray host), and
// measures three registered workers of the figure's hub idle for e.size.idle each.
func runIdleGUI(ctx context.Context, e *env) (figureResult, error) {
	var res figureResult
	xvfbBin, err := exec.LookPath("Xvfb")
	if err != nil {
		res.skip("Xvfb is not installed (the xvfb package; ./build.sh deps installs it)")
		return res, nil
	}
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		res.skip("dbus-daemon is not installed (the dbus-daemon package; ./build.sh deps installs it with dbus-x11)")
		return res, nil
	}

	dir, h, err := startFigureHub(ctx, e, "idle_gui")
	if err != nil {
		return res, err
	}
	defer h.stop()
	e.log.Info("building studio-worker with its window", "dir", dir)
	bin, err := buildWorkerGUI(ctx, e.root, dir)
	if err != nil {
		return res, err
	}
	x, err := startXvfb(ctx, xvfbBin)
	if err != nil {
		return res, err
	}
	defer x.stop()
	bus, err := dbustest.StartBus(daemon)
	if err != nil {
		return res, err
	}
	defer bus.Close()
	watcher, err := dbustest.StartFakeStatusNotifierWatcher(bus.Addr)
	if err != nil {
		return res, err
	}
	defer watcher.Close()

	measured := map[string]idleMeasure{}
	for i, m := range guiModes() {
		got, err := measureGUIMode(ctx, e, &res, h, bin, filepath.Join(dir, fmt.Sprintf("worker-%d", i)), m, x.display, bus.Addr, watcher)
		if err != nil {
			return res, fmt.Errorf("%s: %w", m.label, err)
		}
		got.details(&res, m.key)
		measured[m.key] = got
	}
	res.detail("load_avg_at_end", loadAvg())

	base := measured["headless_"]
	label := fmt.Sprintf("studio-worker idle and connected (%.0f s each)", e.size.idle.Seconds())
	mib := func(b float64) float64 { return b / (1 << 20) }
	goals := map[string]float64{"window_": 1, "tray_": 0.5} // % of a core
	for _, m := range guiModes() {
		got := measured[m.key]
		cpu := row{Figure: label + ", " + m.label + ": CPU", Key: m.label + ": CPU", Value: got.cpuPct(), Unit: "% of a core"}
		peak := row{Figure: "↳ " + m.label + ": RSS, highest sample", Value: mib(float64(got.rssPeak)), Unit: "MiB"}
		mean := row{Figure: "↳ " + m.label + ": RSS, mean", Value: mib(got.rssMean), Unit: "MiB"}
		if m.gui {
			cpu = cpu.withBaseline("headless", base.cpuPct()).withGoal(fmt.Sprintf("≤ %g %%", goals[m.key]), got.cpuPct() <= goals[m.key])
			peak = peak.withBaseline("headless", mib(float64(base.rssPeak))).withGoal("≤ 150 MiB", mib(float64(got.rssPeak)) <= 150)
			mean = mean.withBaseline("headless", mib(base.rssMean))
		}
		res.add(cpu)
		res.add(peak)
		res.add(mean)
	}
	return res, nil
}

// measureGUIMode registers a worker, runs the binary in mode m against the hub, lets it settle,
// checks that its window is shown or not as m wants, and measures it idle; the worker is stopped
// before it returns.
func measureGUIMode(ctx context.Context, e *env, res *figureResult, h *hubProc, bin, dir string, m guiMode, display, busAddr string, watcher *dbustest.FakeStatusNotifierWatcher) (idleMeasure, error) {
	var none idleMeasure
	cfg, err := writeWorkerConfig(ctx, dir, h.client(), h.URL(), "bench-gui-"+strings.TrimSuffix(m.key, "_"))
	if err != nil {
		return none, err
	}
	cmd := exec.Command(bin, append(m.args, "--config", cfg)...)
	// Everything it writes (log, caches, Fyne's preferences) goes to its own folder; a GUI gets
	// the figure's display and bus, and none of the desktop's (no Wayland, no activation bus).
	set := map[string]string{
		"XDG_CONFIG_HOME": filepath.Join(dir, "config"),
		"XDG_CACHE_HOME":  filepath.Join(dir, "cache"),
	}
	drop := []string{"WAYLAND_DISPLAY", "DBUS_STARTER_ADDRESS", "DBUS_STARTER_BUS_TYPE", "DISPLAY", "DBUS_SESSION_BUS_ADDRESS"}
	if m.gui {
		set["DISPLAY"], set["DBUS_SESSION_BUS_ADDRESS"] = display, busAddr
	}
	cmd.Env = procenv.With(os.Environ(), set, drop...)
	drainRegistered(watcher)
	wp, err := runWorkerProc(ctx, cmd)
	if err != nil {
		return none, err
	}
	defer func() {
		wp.stop()
		// A window that crashes on SIGTERM would still have been measured idle; say so.
		if st := wp.cmd.ProcessState; st != nil && !st.Success() {
			e.log.Warn("the worker did not exit cleanly on SIGTERM", "figure", "idle_gui", "mode", m.label, "state", st.String(), "last_lines", wp.lastLines())
		}
	}()
	if err := sleepCtx(ctx, guiSettle); err != nil {
		return none, err
	}
	// A GUI that found no tray host would open its window even with --tray, and the figure would
	// measure the wrong thing: its item must have registered with the watcher by now.
	if m.gui {
		select {
		case <-watcher.Registered():
		default:
			return none, fmt.Errorf("its tray item did not register with the fake StatusNotifierWatcher within %v of connecting; its last lines:\n%s", guiSettle, wp.lastLines())
		}
		n, err := visibleWindows(ctx, display, wp.pid())
		switch {
		case err != nil:
			e.log.Warn("cannot tell whether the window is shown", "err", err)
			n = -1
		case (n > 0) != m.window:
			return none, fmt.Errorf("%d visible windows on %s, want %s", n, display, map[bool]string{true: "1 or more", false: "none"}[m.window])
		}
		res.detail(m.key+"visible_windows", n)
	}
	e.log.Info("measuring", "figure", "idle_gui", "mode", m.label, "pid", wp.pid(), "window", e.size.idle)
	got, err := measureIdle(ctx, wp.pid(), e.size.idle)
	if err != nil {
		return none, fmt.Errorf("%w; its last lines:\n%s", err, wp.lastLines())
	}
	return got, nil
}

// visibleWindows counts the viewable windows of process pid on display, with xdotool (they carry
// _NET_WM_PID); an error when xdotool is missing or fails.
func visibleWindows(ctx context.Context, display string, pid int) (int, error) {
	bin, err := exec.LookPath("xdotool")
	if err != nil {
		return 0, errors.New("xdotool is not installed")
	}
	cmd := exec.CommandContext(ctx, bin, "search", "--onlyvisible", "--pid", strconv.Itoa(pid))
	cmd.Env = procenv.With(os.Environ(), map[string]string{"DISPLAY": display})
	out, err := cmd.Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 1 && len(strings.TrimSpace(string(out))) == 0 {
		return 0, nil // xdotool's "nothing found"
	}
	if err != nil {
		return 0, fmt.Errorf("xdotool search: %w", err)
	}
	return len(strings.Fields(string(out))), nil
}

// drainRegistered drops the registrations the watcher holds, so the next one read is the next
// worker's.
func drainRegistered(w *dbustest.FakeStatusNotifierWatcher) {
	for {
		select {
		case <-w.Registered():
		default:
			return
		}
	}
}

// buildWorkerGUI builds the real studio-worker, window and tray included, into dir.
func buildWorkerGUI(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "studio-worker")
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "migrated_fynedo", "-o", bin, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build -tags migrated_fynedo .: %w\n%s", err, out)
	}
	return bin, nil
}
