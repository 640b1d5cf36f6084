//go:build linux

// trayhost_linux.go: whether a session bus answers (without one the tray cannot start) and
// whether a StatusNotifier host is on it to show the tray icon; without one the window is the
// only way to control the app.

package ui

import (
	"context"
	"time"

	"github.com/godbus/dbus/v5"
)

// trayHostPresent reports whether a StatusNotifier host (the thing that draws tray icons on Linux)
// is running: without one the tray icon is invisible, and the window must stay the way to control
// the app. Any failure to ask counts as "no tray", the safe side.
func trayHostPresent() bool {
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		return false
	}
	defer conn.Close() // a private connection: closing it does not touch the one systray uses
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var has bool
	call := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, "org.kde.StatusNotifierWatcher")
	if call.Err != nil || call.Store(&has) != nil {
		return false
	}
	return has
}

// trayBusReachable reports whether a session bus answers at all.
func trayBusReachable() bool {
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		return false
	}
	conn.Close() // a private connection: closing it does not touch the one systray uses
	return true
}
