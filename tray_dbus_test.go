//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"studioworker/internal/dbustest"
	"studioworker/internal/procenv"
)

// TestTrayOverDBus runs the real binary's demo with its window on the test's display and a
// session bus of the test's own, where a fake StatusNotifierWatcher stands in for the desktop
// shell. It then does what a shell does: takes the item's registration, reads its icon and its
// menu over com.canonical.dbusmenu, and clicks Pause (then Resume) in that menu, which must reach
// the worker and come back as a rebuilt menu.
func TestTrayOverDBus(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary; skipped with -short")
	}
	if os.Getenv("DISPLAY") == "" {
		t.Skip("no DISPLAY: run under xvfb-run (./build.sh test does)")
	}
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Skip("dbus-daemon is not installed (the dbus-daemon package; ./build.sh deps installs it with dbus-x11)")
	}

	busAddr := dbustest.StartPrivateBus(t, daemon)
	watcher, err := dbustest.StartFakeStatusNotifierWatcher(busAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { watcher.Close() })
	host, err := dbus.Connect(busAddr) // the test's side: what the shell's tray host asks with
	if err != nil {
		t.Fatalf("connect to the private bus: %v", err)
	}
	t.Cleanup(func() { host.Close() })

	dir := t.TempDir()
	bin := filepath.Join(dir, "studio-worker")
	if out, err := exec.Command("go", "build", "-tags", "migrated_fynedo", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}

	demo := exec.Command(bin, "demo", "--jobs", "6")
	demo.Env = procenv.With(os.Environ(), map[string]string{
		"DBUS_SESSION_BUS_ADDRESS": busAddr,
		"DISPLAY":                  os.Getenv("DISPLAY"),
		"XDG_CONFIG_HOME":          filepath.Join(dir, "config"),
		"XDG_CACHE_HOME":           filepath.Join(dir, "cache"),
	}, "DBUS_STARTER_ADDRESS", "DBUS_STARTER_BUS_TYPE", "WAYLAND_DISPLAY")
	var output lockedBuffer
	demo.Stdout, demo.Stderr = &output, &output
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = demo.Wait(); close(exited) }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = stopGently(demo.Process, exited, 10*time.Second)
		}
	})
	// failf ends the test with what the demo said, which is where a tray failure is logged.
	failf := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\ndemo output:\n%s", append(args, output.String())...)
	}

	// 1. The item registers with the watcher, as it would with the shell.
	var item dbustest.RegisteredItem
	select {
	case item = <-watcher.Registered():
	case <-exited:
		failf("the demo exited before its tray item registered")
	case <-time.After(2 * time.Minute):
		failf("no StatusNotifierItem registered with the watcher")
	}
	t.Logf("item registered: %s%s", item.Name, item.Path)
	var owner string
	if err := host.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0,
		fmt.Sprintf("org.kde.StatusNotifierItem-%d-1", demo.Process.Pid)).Store(&owner); err != nil {
		failf("the item's well-known name is not owned: %v", err)
	}
	if owner != item.Name {
		t.Errorf("the item registered from %s, but its name is owned by %s", item.Name, owner)
	}

	// 2. Its icon and where its menu is.
	sni := host.Object(item.Name, item.Path)
	var menuPath dbus.ObjectPath
	if v, err := sni.GetProperty("org.kde.StatusNotifierItem.Menu"); err != nil {
		failf("read Menu: %v", err)
	} else if err := v.Store(&menuPath); err != nil || !menuPath.IsValid() || menuPath == "/" {
		failf("Menu is %v (%s): %v", v, v.Signature(), err)
	}
	var iconName string
	if v, err := sni.GetProperty("org.kde.StatusNotifierItem.IconName"); err == nil {
		_ = v.Store(&iconName)
	}
	var pixmaps []struct {
		W, H int32
		Pix  []byte
	}
	if v, err := sni.GetProperty("org.kde.StatusNotifierItem.IconPixmap"); err != nil {
		failf("read IconPixmap: %v", err)
	} else if err := v.Store(&pixmaps); err != nil {
		failf("IconPixmap is %s, not a(iiay): %v", v.Signature(), err)
	}
	drawn := false
	for _, p := range pixmaps {
		if p.W > 0 && p.H > 0 && len(p.Pix) == int(p.W*p.H*4) {
			drawn = true
			t.Logf("icon: %dx%d ARGB pixmap", p.W, p.H)
		}
	}
	if !drawn && iconName == "" {
		t.Errorf("the item has neither an icon name nor a usable pixmap (%d pixmaps)", len(pixmaps))
	}

	// Its title and tooltip say the app's name, not its id (issue 18 finding 8: the title was
	// studio.worker.app and the tooltip empty); the tooltip says the state too.
	if v, err := sni.GetProperty("org.kde.StatusNotifierItem.Title"); err != nil {
		failf("read Title: %v", err)
	} else if title, _ := v.Value().(string); title != "Studio Worker" {
		t.Errorf("Title %q, want \"Studio Worker\"", title)
	}
	readTip := func() string {
		var tip struct {
			Icon   string
			Pixmap []struct {
				W, H int32
				Pix  []byte
			}
			Title, Text string
		}
		v, err := sni.GetProperty("org.kde.StatusNotifierItem.ToolTip")
		if err != nil {
			failf("read ToolTip: %v", err)
		}
		if err := v.Store(&tip); err != nil {
			failf("ToolTip is %s, not (sa(iiay)ss): %v", v.Signature(), err)
		}
		return tip.Title + tip.Text
	}
	tipDeadline := time.Now().Add(time.Minute)
	for tip := readTip(); !strings.HasPrefix(tip, "Studio Worker — "); tip = readTip() {
		if time.Now().After(tipDeadline) {
			failf("ToolTip %q, want \"Studio Worker — \" and the state", tip)
		}
		select {
		case <-exited:
			failf("the demo exited while waiting for its tooltip")
		case <-time.After(200 * time.Millisecond): // a property, not a signal we watch: read again
		}
	}

	// 3. The menu, as GetLayout gives it. It is rebuilt whenever the state changes (a job's
	// progress too), so read it again whenever it says it changed.
	menu := host.Object(item.Name, menuPath)
	changed := watchMenu(t, host, item.Name, menuPath)
	wait := func(what string, done func([]dbusMenuItem) bool) []dbusMenuItem {
		t.Helper()
		deadline := time.After(time.Minute)
		var last []dbusMenuItem
		var lastErr error
		for {
			_, items, err := getMenu(menu)
			if err == nil && done(items) {
				return items
			}
			last, lastErr = items, err
			select {
			case <-changed:
			case <-time.After(500 * time.Millisecond): // in case a change went unsignalled
			case <-exited:
				failf("the demo exited while waiting for %s; last menu %v (%v)", what, last, lastErr)
			case <-deadline:
				failf("timed out waiting for %s; last menu %v (%v)", what, last, lastErr)
			}
		}
	}
	// Items are added one by one after a reset, so a menu is whole once Quit, the last, is there.
	complete := func(items []dbusMenuItem) bool {
		return len(items) == 7 && items[6].Label == "Quit"
	}
	items := wait("the whole menu", complete)
	t.Logf("menu over D-Bus: %v", items)

	type want struct {
		label, toggle string
		state         int32
		enabled       bool
	}
	status := items[0]
	if status.Enabled || !hasAnyPrefix(status.Label, "Idle", "Busy", "Connecting", "Connected", "Reconnecting", "Finishing", "Paused", "Yielding", "Offline") {
		t.Errorf("first item %v: want the disabled status line", status)
	}
	if items[4].Type != "separator" {
		t.Errorf("item 4 is %v, want a separator before Open", items[4])
	}
	for i, w := range map[int]want{
		1: {"Auto-accept offers", "checkmark", 1, true},
		2: {"Pause", "", 0, true}, // the demo starts taking work
		5: {"Open Studio Worker", "", 0, true},
		6: {"Quit", "", 0, true},
	} {
		got := items[i]
		if got.Label != w.label || got.ToggleType != w.toggle || got.ToggleState != w.state || got.Enabled != w.enabled {
			t.Errorf("item %d is %v, want %q toggle %q/%d enabled %v", i, got, w.label, w.toggle, w.state, w.enabled)
		}
	}
	if items[3].Label != "Quit after this job" {
		t.Errorf("item 3 is %v, want Quit after this job", items[3])
	}
	if t.Failed() {
		failf("the menu is not the tray menu")
	}

	// 4. Clicks, as the shell sends them. An id is only good until the next rebuild, and a
	// job's progress may rebuild the menu between our GetLayout and our click; a click on a
	// stale id is lost (systray logs "no menu item with ID"), so click the current item again
	// until its label turns.
	click := func(from, to string) []dbusMenuItem {
		t.Helper()
		clicked := map[int32]bool{}
		items := wait(fmt.Sprintf("%q after clicking %q", to, from), func(items []dbusMenuItem) bool {
			if !complete(items) {
				return false
			}
			switch it := items[2]; it.Label {
			case to:
				return true
			case from:
				if !clicked[it.ID] {
					clicked[it.ID] = true
					if call := menu.Call("com.canonical.dbusmenu.Event", 0, it.ID, "clicked", dbus.MakeVariant(""), uint32(0)); call.Err != nil {
						failf("Event(%d, clicked): %v", it.ID, call.Err)
					}
				}
			}
			return false
		})
		t.Logf("clicked %q (%d click(s)); menu now: %v", from, len(clicked), items)
		if len(clicked) == 0 {
			t.Errorf("%q turned into %q without a click", from, to)
		}
		return items
	}
	if items := click("Pause", "Resume"); items[0].Label != "Paused" || items[0].Enabled {
		t.Errorf("after Pause the status line is %v, want a disabled \"Paused\"", items[0])
	}
	click("Resume", "Pause")

	// 5. SIGTERM ends the app, tray and all, without a crash.
	stopped = true
	if err := stopGently(demo.Process, exited, 10*time.Second); err != nil {
		t.Errorf("stop the demo: %v", err)
	}
	// The worker publishes states up to the end, and the tray must not crash on them once Fyne
	// has closed it (fyne.io/systray panics when it sets an icon on a closed connection).
	out := output.String()
	if strings.Contains(out, "panic:") || strings.Contains(out, "goroutine ") {
		t.Errorf("the demo crashed on SIGTERM:\n%s", out)
	}
	if n := strings.Count(out, "no menu item with ID"); n > 0 {
		t.Logf("%d click(s) landed on an item id that a rebuild had already replaced", n)
	}
}

// watchMenu returns a channel that receives (coalesced) whenever the menu at path says it
// changed: LayoutUpdated after a rebuild, ItemsPropertiesUpdated after an item's change. Its
// goroutine ends when conn closes, at the end of the test.
func watchMenu(t *testing.T, conn *dbus.Conn, sender string, path dbus.ObjectPath) <-chan struct{} {
	t.Helper()
	if err := conn.AddMatchSignal(dbus.WithMatchSender(sender), dbus.WithMatchObjectPath(path),
		dbus.WithMatchInterface("com.canonical.dbusmenu")); err != nil {
		t.Fatalf("watch the menu's signals: %v", err)
	}
	sigs := make(chan *dbus.Signal, 16)
	conn.Signal(sigs)
	changed := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range sigs { // closed when conn closes
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return changed
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
