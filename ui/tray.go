package ui

import (
	"fmt"
	"math"
	"time"

	"fyne.io/fyne/v2"

	"studioworker/app"
	"studioworker/assets"
	"studioworker/protocol"
)

// TrayAction names what a tray item does when clicked.
type TrayAction string

// Tray actions.
const (
	TrayNone       TrayAction = ""            // a status line or a separator
	TrayAutoAccept TrayAction = "auto_accept" // toggles auto-accept
	TrayPause      TrayAction = "pause"
	TrayResume     TrayAction = "resume"
	TrayDrain      TrayAction = "drain" // finish the running job, then pause
	TrayOpen       TrayAction = "open"  // show the window
	TrayQuit       TrayAction = "quit"  // asks first when a job is running
)

// TrayItem is one entry of the tray menu.
type TrayItem struct {
	Label     string
	Checked   bool
	Disabled  bool
	Separator bool
	Action    TrayAction
}

// Tray labels, shared by the window's buttons so both say the same thing.
const (
	labelAutoAccept = "Auto-accept offers"
	labelPause      = "Pause"
	labelResume     = "Resume"
	labelDrain      = "Finish current job, then pause"
	labelOpen       = "Open Studio Worker"
	labelQuit       = "Quit" // Fyne recognises this label as the tray's quit item and keeps our action
)

// TrayMenu is the tray menu for a state: a status line, the auto-accept toggle, pause or resume,
// drain, then open and quit. It is a pure function so that every state's menu can be tested
// without a tray.
func TrayMenu(s app.State) []TrayItem {
	pauseOrResume := TrayItem{Label: labelPause, Action: TrayPause}
	if s.Paused || s.Draining {
		pauseOrResume = TrayItem{Label: labelResume, Action: TrayResume}
	}
	return []TrayItem{
		{Label: trayStatus(s), Disabled: true},
		{Label: labelAutoAccept, Checked: s.AutoAccept, Action: TrayAutoAccept},
		pauseOrResume,
		// Draining only means something while a job runs and the worker is not already stopping.
		{Label: labelDrain, Action: TrayDrain, Disabled: len(s.Running) == 0 || s.Paused || s.Draining},
		{Separator: true},
		{Label: labelOpen, Action: TrayOpen},
		{Label: labelQuit, Action: TrayQuit},
	}
}

// trayStatus is the tray's status line: the state in a few words.
func trayStatus(s app.State) string {
	if needsSignIn(s) {
		if s.Conn.State == connAuthFailed {
			return "Sign-in needed — register again"
		}
		return "Not set up — open Studio Worker to register"
	}
	if s.Conn.State == connReattaching {
		return titleReattaching // before the mode, which is the worker's last word and may be stale
	}
	switch s.Mode {
	case protocol.StateBusy:
		if len(s.Running) > 0 {
			j := s.Running[0]
			// Tens only: every new label rebuilds the tray menu over D-Bus with new item ids, and
			// a click that lands during a rebuild is lost.
			line := fmt.Sprintf("Busy: %s · %s", jobLabel(j.Kind, j.Model), percent(math.Floor(j.Fraction*10)/10))
			if n := len(s.Running) - 1; n > 0 {
				line += fmt.Sprintf(" (+%d)", n)
			}
			return line
		}
		return "Busy"
	case protocol.StateDraining:
		if len(s.Running) > 0 {
			return "Finishing job " + shortID(s.Running[0].JobID) + ", then pausing"
		}
		return "Finishing, then pausing"
	case protocol.StatePaused:
		return "Paused"
	case protocol.StateYielding:
		if s.YieldedTo != "" {
			return "Yielding to " + s.YieldedTo
		}
		return "Yielding to your programs"
	}
	switch s.Conn.State {
	case connConnected:
		if k := firstDownKind(s); k != "" {
			return fmt.Sprintf("Idle — the %s backend is down since %s", k, s.EngineDownSince[k].Local().Format("15:04"))
		}
		if s.VRAM.Basis == app.ReachNoGPU {
			return "Idle — no GPU: only jobs that need no VRAM"
		}
		return "Idle — waiting for jobs"
	case connReconnecting:
		if s.Conn.Attempt > 0 {
			return fmt.Sprintf("Reconnecting (attempt %d)", s.Conn.Attempt)
		}
		return "Reconnecting"
	}
	// The other words do not depend on the time: the tray has no ticker.
	return describeConn(s, time.Time{}).Title
}

// trayIconName picks the tray icon: trouble first, then work, then what holds work back.
func trayIconName(s app.State) string {
	switch s.Conn.State {
	case connAuthFailed, connSuperseded, connGaveUp:
		return assets.IconError
	case connReattaching:
		return assets.IconOffline // not busy or paused: nothing is known until the worker answers
	}
	switch s.Mode {
	case protocol.StateBusy, protocol.StateDraining:
		return assets.IconBusy
	case protocol.StateYielding:
		return assets.IconYielding
	case protocol.StatePaused:
		return assets.IconPaused
	}
	if s.Conn.State != connConnected {
		return assets.IconOffline
	}
	return assets.IconIdle
}

// fyneMenu turns tray items into a Fyne menu; act runs an item's action.
func fyneMenu(items []TrayItem, act func(TrayAction)) *fyne.Menu {
	out := make([]*fyne.MenuItem, 0, len(items))
	for _, it := range items {
		if it.Separator {
			out = append(out, fyne.NewMenuItemSeparator())
			continue
		}
		mi := fyne.NewMenuItem(it.Label, nil)
		mi.Checked, mi.Disabled = it.Checked, it.Disabled
		if a := it.Action; a != TrayNone {
			mi.Action = func() { act(a) }
		}
		if it.Action == TrayQuit {
			mi.IsQuit = true
		}
		out = append(out, mi)
	}
	return fyne.NewMenu("Studio Worker", out...)
}
