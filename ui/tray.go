// tray.go: the tray menu, icon and tooltip as pure functions of a State and the time, so every
// state's tray is tested without a tray; fyneMenu turns them into Fyne's menu. It must not know
// how the tray is drawn or what an action does.

package ui

import (
	"fmt"
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
	TrayQuitAfter  TrayAction = "quit_after" // quit once the running jobs are done and delivered
	TrayOpen       TrayAction = "open"       // show the window
	TrayQuit       TrayAction = "quit"       // asks first when a job is running
	TrayAccept     TrayAction = "accept"     // accept the offer TrayItem.JobID
	TrayDecline    TrayAction = "decline"    // decline the offer TrayItem.JobID
)

// maxTrayOffers is how many waiting offers the tray lists; the window lists them all. The hub
// offers a worker at most max_concurrent_jobs at once, so more is rare.
const maxTrayOffers = 3

// trayCountdownStep is how finely an offer's countdown moves in the tray: every new label
// rebuilds the menu over D-Bus with new item ids, and a click that lands during a rebuild is lost.
const trayCountdownStep = 10 * time.Second

// TrayItem is one entry of the tray menu.
type TrayItem struct {
	Label     string
	Checked   bool
	Disabled  bool
	Separator bool
	Action    TrayAction
	JobID     string // the offer Accept and Decline are about
}

// Tray labels, shared by the window's buttons so both say the same thing.
const (
	labelAutoAccept = "Auto-accept offers"
	labelPause      = "Pause"
	labelResume     = "Resume"
	labelQuitAfter  = "Quit after this job"
	labelQuitting   = "Quitting after this job…"
	labelOpen       = "Open Studio Worker"
	labelQuit       = "Quit" // Fyne recognises this label as the tray's quit item and keeps our action
)

// TrayMenu is the tray menu for a state at a time: a status line; each offer that waits for the
// creator with its countdown, Accept and Decline; the auto-accept toggle, pause or resume, quit
// after this job; then open and quit.
func TrayMenu(s app.State, now time.Time, qa quitAfter) []TrayItem {
	pauseOrResume := TrayItem{Label: labelPause, Action: TrayPause}
	if s.Paused || s.Draining {
		pauseOrResume = TrayItem{Label: labelResume, Action: TrayResume}
	}
	items := []TrayItem{{Label: trayStatus(s), Disabled: true}}
	shown := 0
	for _, o := range s.Offers {
		if !o.WaitingForUser || shown == maxTrayOffers {
			continue
		}
		shown++
		items = append(items,
			TrayItem{Separator: true},
			TrayItem{Label: "Offer: " + jobLabel(o.Kind, o.Model) + " — " + trayCountdown(o.ExpiresAt, now), Disabled: true},
			TrayItem{Label: "Accept", Action: TrayAccept, JobID: o.JobID},
			TrayItem{Label: "Decline", Action: TrayDecline, JobID: o.JobID},
		)
	}
	if more := waitingOffers(s) - shown; more > 0 {
		items = append(items, TrayItem{Label: fmt.Sprintf("%d more offers: open Studio Worker", more), Action: TrayOpen})
	}
	if shown > 0 {
		items = append(items, TrayItem{Separator: true})
	}
	return append(items,
		TrayItem{Label: labelAutoAccept, Checked: s.AutoAccept, Action: TrayAutoAccept},
		pauseOrResume,
		quitAfterItem(s, qa),
		TrayItem{Separator: true},
		TrayItem{Label: labelOpen, Action: TrayOpen},
		TrayItem{Label: labelQuit, Action: TrayQuit},
	)
}

// waitingOffers counts the offers that wait for the creator's answer.
func waitingOffers(s app.State) int {
	n := 0
	for _, o := range s.Offers {
		if o.WaitingForUser {
			n++
		}
	}
	return n
}

// trayCountdown is an offer's time left in trayCountdownStep steps, rounded up: "1 min 50 s left".
func trayCountdown(at, now time.Time) string {
	left := at.Sub(now)
	if at.IsZero() || left <= 0 {
		return "expiring"
	}
	steps := (left + trayCountdownStep - 1) / trayCountdownStep
	return seconds(steps*trayCountdownStep) + " left"
}

// TrayTooltip is what the tray icon says when the pointer rests on it: the app's name and the
// state, with a running job's progress as the window shows it (the menu leaves the figure out,
// since a new label each percent would rebuild the menu).
func TrayTooltip(s app.State) string {
	line := "Studio Worker — " + trayStatus(s)
	if s.Mode == protocol.StateBusy && len(s.Running) > 0 {
		line += " · " + percent(s.Running[0].Fraction)
	}
	if n := waitingOffers(s); n == 1 {
		line += " · an offer waits for you"
	} else if n > 1 {
		line += fmt.Sprintf(" · %d offers wait for you", n)
	}
	return line
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
			// No percent here (the tooltip has it): every new label rebuilds the tray menu over
			// D-Bus with new item ids, and a click that lands during a rebuild is lost.
			line := "Busy: " + jobLabel(j.Kind, j.Model)
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
		if waitingOffers(s) > 0 {
			return "Idle — an offer waits for your answer"
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
func fyneMenu(items []TrayItem, act func(TrayItem)) *fyne.Menu {
	out := make([]*fyne.MenuItem, 0, len(items))
	for _, it := range items {
		if it.Separator {
			out = append(out, fyne.NewMenuItemSeparator())
			continue
		}
		mi := fyne.NewMenuItem(it.Label, nil)
		mi.Checked, mi.Disabled = it.Checked, it.Disabled
		if it.Action != TrayNone {
			mi.Action = func() { act(it) }
		}
		if it.Action == TrayQuit {
			mi.IsQuit = true
		}
		out = append(out, mi)
	}
	return fyne.NewMenu("Studio Worker", out...)
}
