//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"
)

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
