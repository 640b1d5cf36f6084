//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/prop"
)

// registeredItem is a StatusNotifierItem as a watcher knows it: the bus name that owns it and
// the object path where it lives.
type registeredItem struct {
	Name string
	Path dbus.ObjectPath
}

const (
	watcherName  = "org.kde.StatusNotifierWatcher"
	watcherPath  = dbus.ObjectPath("/StatusNotifierWatcher")
	watcherIface = "org.kde.StatusNotifierWatcher"
)

// fakeStatusNotifierWatcher stands in for the desktop shell's tray host (KDE's, or GNOME's
// AppIndicator extension), which cannot run here: it owns org.kde.StatusNotifierWatcher on the
// test's bus, says a host is there, and records every item that registers, as a shell would
// before it draws the icon and asks for the menu.
type fakeStatusNotifierWatcher struct {
	conn       *dbus.Conn
	props      *prop.Properties
	registered chan registeredItem // one per registration; a full buffer drops, never blocks D-Bus

	mu    sync.Mutex
	items []string // "busname/path", as RegisteredStatusNotifierItems lists them
}

func startFakeStatusNotifierWatcher(t *testing.T, busAddr string) *fakeStatusNotifierWatcher {
	t.Helper()
	conn, err := dbus.Connect(busAddr)
	if err != nil {
		t.Fatalf("watcher: connect to the private bus: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	w := &fakeStatusNotifierWatcher{conn: conn, registered: make(chan registeredItem, 8)}

	if err := conn.ExportMethodTable(map[string]any{
		"RegisterStatusNotifierItem": w.registerItem,
		"RegisterStatusNotifierHost": func(string) *dbus.Error { return nil },
	}, watcherPath, watcherIface); err != nil {
		t.Fatalf("watcher: export methods: %v", err)
	}
	w.props, err = prop.Export(conn, watcherPath, prop.Map{
		watcherIface: {
			"RegisteredStatusNotifierItems":  {Value: []string{}, Emit: prop.EmitTrue},
			"IsStatusNotifierHostRegistered": {Value: true, Emit: prop.EmitTrue},
			"ProtocolVersion":                {Value: int32(0), Emit: prop.EmitTrue},
		},
	})
	if err != nil {
		t.Fatalf("watcher: export properties: %v", err)
	}
	// The name last: once it is owned, an item may register at any moment.
	reply, err := conn.RequestName(watcherName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("watcher: own %s: reply %v, %v", watcherName, reply, err)
	}
	return w
}

// registerItem is org.kde.StatusNotifierWatcher.RegisterStatusNotifierItem. The argument is
// either a bus name (the item lives at /StatusNotifierItem) or an object path on the caller's
// own connection; fyne.io/systray sends the path.
func (w *fakeStatusNotifierWatcher) registerItem(sender dbus.Sender, service string) *dbus.Error {
	it := registeredItem{Name: string(sender), Path: "/StatusNotifierItem"}
	if strings.HasPrefix(service, "/") {
		it.Path = dbus.ObjectPath(service)
	} else if service != "" {
		it.Name = service
	}
	if !it.Path.IsValid() {
		return dbus.MakeFailedError(fmt.Errorf("invalid object path %q", service))
	}
	w.mu.Lock()
	w.items = append(w.items, it.Name+string(it.Path))
	items := append([]string(nil), w.items...)
	w.mu.Unlock()
	w.props.SetMust(watcherIface, "RegisteredStatusNotifierItems", items)
	_ = w.conn.Emit(watcherPath, watcherIface+".StatusNotifierItemRegistered", it.Name+string(it.Path))
	select {
	case w.registered <- it:
	default:
	}
	return nil
}

// dbusMenuItem is one entry of a com.canonical.dbusmenu layout, with the properties a tray host
// draws it from. Absent properties take the defaults the dbusmenu spec gives them.
type dbusMenuItem struct {
	ID          int32
	Type        string // "standard" or "separator"
	Label       string
	Enabled     bool
	Visible     bool
	ToggleType  string // "", "checkmark" or "radio"
	ToggleState int32  // 1 on, 0 off, -1 indeterminate
}

func (it dbusMenuItem) String() string {
	if it.Type == "separator" {
		return "----"
	}
	s := fmt.Sprintf("%d %q", it.ID, it.Label)
	if !it.Enabled {
		s += " (disabled)"
	}
	if it.ToggleType != "" {
		s += fmt.Sprintf(" [%s %d]", it.ToggleType, it.ToggleState)
	}
	if !it.Visible {
		s += " (hidden)"
	}
	return s
}

// dbusMenuLayout is the (ia{sv}av) struct GetLayout returns.
type dbusMenuLayout struct {
	ID         int32
	Properties map[string]dbus.Variant
	Children   []dbus.Variant
}

// getMenu calls GetLayout on the whole menu and flattens its visible top level, which is all a
// tray menu without submenus has.
func getMenu(obj dbus.BusObject) (uint32, []dbusMenuItem, error) {
	var rev uint32
	var root dbusMenuLayout
	call := obj.Call("com.canonical.dbusmenu.GetLayout", 0, int32(0), int32(-1), []string{})
	if call.Err != nil {
		return 0, nil, fmt.Errorf("GetLayout: %w", call.Err)
	}
	if err := call.Store(&rev, &root); err != nil {
		return 0, nil, fmt.Errorf("GetLayout reply: %w", err)
	}
	items := make([]dbusMenuItem, 0, len(root.Children))
	for i, v := range root.Children {
		var child dbusMenuLayout
		// A child arrives as a variant holding the same struct, which godbus decodes as []any.
		fields, ok := v.Value().([]any)
		if !ok {
			return 0, nil, fmt.Errorf("child %d is %T, not a struct", i, v.Value())
		}
		if err := dbus.Store(fields, &child.ID, &child.Properties, &child.Children); err != nil {
			return 0, nil, fmt.Errorf("child %d: %w", i, err)
		}
		it := dbusMenuItem{ID: child.ID, Type: "standard", Enabled: true, Visible: true}
		for k, pv := range child.Properties {
			var err error
			switch k {
			case "type":
				err = pv.Store(&it.Type)
			case "label":
				err = pv.Store(&it.Label)
			case "enabled":
				err = pv.Store(&it.Enabled)
			case "visible":
				err = pv.Store(&it.Visible)
			case "toggle-type":
				err = pv.Store(&it.ToggleType)
			case "toggle-state":
				err = pv.Store(&it.ToggleState)
			}
			if err != nil {
				return 0, nil, fmt.Errorf("item %d property %s (%s): %w", child.ID, k, pv.Signature(), err)
			}
		}
		if it.Visible {
			items = append(items, it)
		}
	}
	return rev, items, nil
}

// stopGently sends SIGTERM and waits up to grace for exited to close, then kills.
func stopGently(p *os.Process, exited <-chan struct{}, grace time.Duration) error {
	if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-exited:
		return nil
	case <-time.After(grace):
		_ = p.Kill()
		<-exited
		return fmt.Errorf("did not stop within %v of SIGTERM: killed", grace)
	}
}

// withEnv returns env with every key in set replaced, and the keys in drop removed.
func withEnv(env []string, set map[string]string, drop ...string) []string {
	out := make([]string, 0, len(env)+len(set))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; ok {
			continue
		}
		dropped := false
		for _, d := range drop {
			dropped = dropped || k == d
		}
		if !dropped {
			out = append(out, kv)
		}
	}
	for k, v := range set {
		out = append(out, k+"="+v)
	}
	return out
}
