// watcher.go: FakeStatusNotifierWatcher, the stand-in for the desktop shell's tray host on a
// private bus. It must not know what an item shows or what its menu does: it only says a host is
// there and records who registers, which is all an app needs to see before it keeps to the tray.

package dbustest

import (
	"fmt"
	"strings"
	"sync"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/prop"
)

// RegisteredItem is a StatusNotifierItem as a watcher knows it: the bus name that owns it and
// the object path where it lives.
type RegisteredItem struct {
	Name string
	Path dbus.ObjectPath
}

const (
	watcherName  = "org.kde.StatusNotifierWatcher"
	watcherPath  = dbus.ObjectPath("/StatusNotifierWatcher")
	watcherIface = "org.kde.StatusNotifierWatcher"
)

// FakeStatusNotifierWatcher stands in for the desktop shell's tray host (KDE's, or GNOME's
// AppIndicator extension), which cannot run here: it owns org.kde.StatusNotifierWatcher on the
// bus, says a host is there, and records every item that registers, as a shell would before it
// draws the icon and asks for the menu. Its owner calls Close.
type FakeStatusNotifierWatcher struct {
	conn       *dbus.Conn
	props      *prop.Properties
	registered chan RegisteredItem // one per registration; a full buffer drops, never blocks D-Bus

	mu    sync.Mutex
	items []string // "busname/path", as RegisteredStatusNotifierItems lists them
}

// StartFakeStatusNotifierWatcher connects to the bus at busAddr and serves the watcher there.
func StartFakeStatusNotifierWatcher(busAddr string) (*FakeStatusNotifierWatcher, error) {
	conn, err := dbus.Connect(busAddr)
	if err != nil {
		return nil, fmt.Errorf("watcher: connect to the bus: %w", err)
	}
	w := &FakeStatusNotifierWatcher{conn: conn, registered: make(chan RegisteredItem, 8)}
	fail := func(format string, args ...any) (*FakeStatusNotifierWatcher, error) {
		conn.Close()
		return nil, fmt.Errorf(format, args...)
	}
	if err := conn.ExportMethodTable(map[string]any{
		"RegisterStatusNotifierItem": w.registerItem,
		"RegisterStatusNotifierHost": func(string) *dbus.Error { return nil },
	}, watcherPath, watcherIface); err != nil {
		return fail("watcher: export methods: %w", err)
	}
	w.props, err = prop.Export(conn, watcherPath, prop.Map{
		watcherIface: {
			"RegisteredStatusNotifierItems":  {Value: []string{}, Emit: prop.EmitTrue},
			"IsStatusNotifierHostRegistered": {Value: true, Emit: prop.EmitTrue},
			"ProtocolVersion":                {Value: int32(0), Emit: prop.EmitTrue},
		},
	})
	if err != nil {
		return fail("watcher: export properties: %w", err)
	}
	// The name last: once it is owned, an item may register at any moment.
	reply, err := conn.RequestName(watcherName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		return fail("watcher: own %s: reply %v, %v", watcherName, reply, err)
	}
	return w, nil
}

// Registered gives each item that registers, in order. Registrations beyond the channel's
// buffer of 8 that nobody has read are dropped from it rather than block the D-Bus dispatch,
// which would stall the registering app.
func (w *FakeStatusNotifierWatcher) Registered() <-chan RegisteredItem { return w.registered }

// Close leaves the bus, which drops the name: to its items the tray host is gone.
func (w *FakeStatusNotifierWatcher) Close() error { return w.conn.Close() }

// registerItem is org.kde.StatusNotifierWatcher.RegisterStatusNotifierItem. The argument is
// either a bus name (the item lives at /StatusNotifierItem) or an object path on the caller's
// own connection; fyne.io/systray sends the path.
func (w *FakeStatusNotifierWatcher) registerItem(sender dbus.Sender, service string) *dbus.Error {
	it := RegisteredItem{Name: string(sender), Path: "/StatusNotifierItem"}
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
