package ui

import (
	"slices"
	"strings"
	"testing"
	"time"

	"studioworker/app"
	"studioworker/assets"
	"studioworker/protocol"
)

func TestTrayMenu(t *testing.T) {
	busy := busyState()
	busy.AutoAccept = true
	two := busyState()
	two.Running = append(two.Running, app.RunningJob{JobID: "job-2", Kind: protocol.KindLLM, Model: "llama"})
	draining := busyState()
	draining.Mode, draining.Draining = protocol.StateDraining, true
	paused := idleState()
	paused.Mode, paused.Paused = protocol.StatePaused, true
	yielding := idleState()
	yielding.Mode, yielding.YieldedTo = protocol.StateYielding, "game.exe"
	reconnecting := idleState()
	reconnecting.Conn = app.ConnInfo{State: connReconnecting, Attempt: 3}
	offline := idleState()
	offline.Conn = app.ConnInfo{State: connOffline, LastError: "no network"}
	unregistered := app.State{Conn: app.ConnInfo{State: connUnregistered}, Mode: protocol.StateIdle}
	reattaching := busyState() // what the worker last said, before it went out of reach
	reattaching.Conn = app.ConnInfo{State: connReattaching, Attempt: 2, LastError: "no Studio Worker is running"}
	noGPU := idleState()
	noGPU.GPU = app.GPUState{Source: "none"}
	noGPU.VRAM = app.VRAMReach{Basis: app.ReachNoGPU}
	backendDown := idleState()
	backendDown.EngineDown = map[string]string{"llm": "backend not reachable: connection refused", "tts": "not checked yet"}
	backendDown.EngineDownSince = map[string]time.Time{"llm": time.Date(2026, 12, 3, 16, 52, 0, 0, time.Local)}

	type want struct {
		status       string
		autoChecked  bool
		pauseLabel   string
		pauseAction  TrayAction
		quitAfterOff bool
		icon         string
	}
	for _, tc := range []struct {
		name  string
		state app.State
		want  want
	}{
		{"idle", idleState(), want{"Idle — waiting for jobs", true, labelPause, TrayPause, true, assets.IconIdle}},
		{"idle with no GPU", noGPU, want{"Idle — no GPU: only jobs that need no VRAM", true, labelPause, TrayPause, true, assets.IconIdle}},
		{"idle with a backend down", backendDown, want{"Idle — the llm backend is down since 16:52", true, labelPause, TrayPause, true, assets.IconIdle}},
		{"busy", busy, want{"Busy: image · sdxl-turbo", true, labelPause, TrayPause, false, assets.IconBusy}},
		{"busy with two jobs, auto-accept off", two, want{"Busy: image · sdxl-turbo (+1)", false, labelPause, TrayPause, false, assets.IconBusy}},
		{"draining", draining, want{"Finishing job 7f3a9c21…, then pausing", false, labelResume, TrayResume, false, assets.IconBusy}},
		{"paused", paused, want{"Paused", true, labelResume, TrayResume, true, assets.IconPaused}},
		{"yielding", yielding, want{"Yielding to game.exe", true, labelPause, TrayPause, true, assets.IconYielding}},
		{"reconnecting", reconnecting, want{"Reconnecting (attempt 3)", true, labelPause, TrayPause, true, assets.IconOffline}},
		{"offline", offline, want{"Offline: no network", true, labelPause, TrayPause, true, assets.IconOffline}},
		{"the worker out of reach", reattaching, want{"Reconnecting to the worker…", false, labelPause, TrayPause, false, assets.IconOffline}},
		{"credentials rejected", authFailedState(), want{"Sign-in needed — register again", true, labelResume, TrayResume, true, assets.IconError}},
		{"not registered", unregistered, want{"Not set up — open Studio Worker to register", false, labelPause, TrayPause, true, assets.IconOffline}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.state.Offers = nil // TestTrayMenuOffers has them
			items := TrayMenu(tc.state, t0, quitAfterAvailable)
			wantItems := []TrayItem{
				{Label: tc.want.status, Disabled: true},
				{Label: labelAutoAccept, Checked: tc.want.autoChecked, Action: TrayAutoAccept},
				{Label: tc.want.pauseLabel, Action: tc.want.pauseAction},
				{Label: labelQuitAfter, Action: TrayQuitAfter, Disabled: tc.want.quitAfterOff},
				{Separator: true},
				{Label: labelOpen, Action: TrayOpen},
				{Label: labelQuit, Action: TrayQuit},
			}
			if len(items) != len(wantItems) {
				t.Fatalf("got %d items: %+v", len(items), items)
			}
			for i := range items {
				if items[i] != wantItems[i] {
					t.Errorf("item %d: got %+v, want %+v", i, items[i], wantItems[i])
				}
			}
			if got := trayIconName(tc.state); got != tc.want.icon {
				t.Errorf("icon %q, want %q", got, tc.want.icon)
			}
			if _, err := assets.StateIcon(trayIconName(tc.state)); err != nil {
				t.Errorf("icon asset: %v", err)
			}
		})
	}
}

func TestFyneMenuFromItems(t *testing.T) {
	var ran []TrayAction
	s := busyState()
	s.Offers = nil
	m := fyneMenu(TrayMenu(s, t0, quitAfterAvailable), func(it TrayItem) { ran = append(ran, it.Action) })
	if len(m.Items) != 7 {
		t.Fatalf("%d items", len(m.Items))
	}
	if st := m.Items[0]; !st.Disabled || st.Action != nil {
		t.Errorf("status line is clickable: %+v", st)
	}
	if !m.Items[4].IsSeparator {
		t.Error("no separator before Open")
	}
	quit := m.Items[6]
	if !quit.IsQuit || quit.Label != "Quit" {
		t.Errorf("quit item %+v: Fyne would add its own Quit that skips the confirmation", quit)
	}
	for _, i := range []int{1, 2, 3, 5, 6} {
		m.Items[i].Action()
	}
	want := []TrayAction{TrayAutoAccept, TrayPause, TrayQuitAfter, TrayOpen, TrayQuit}
	if len(ran) != len(want) {
		t.Fatalf("ran %v", ran)
	}
	for i := range want {
		if ran[i] != want[i] {
			t.Errorf("action %d: %v, want %v", i, ran[i], want[i])
		}
	}
}

// TestTrayMenuOffers: an offer that waits for the creator is in the tray with its countdown in
// 10 s steps, Accept and Decline (issue 18 finding 2: the tray had neither, and still said "Idle").
func TestTrayMenuOffers(t *testing.T) {
	idle := idleState()
	idle.AutoAccept = false
	offer := func(id string, left time.Duration, waiting bool) app.PendingOffer {
		return app.PendingOffer{JobID: id, Kind: protocol.KindImage, Model: "sdxl", ExpiresAt: t0.Add(left), WaitingForUser: waiting}
	}
	tests := []struct {
		name    string
		offers  []app.PendingOffer
		status  string
		lines   []string // the offers' lines, in order
		more    string   // the "N more" line, if any
		tooltip string
	}{
		{"none", nil, "Idle — waiting for jobs", nil, "", "Studio Worker — Idle — waiting for jobs"},
		{"being decided by the worker", []app.PendingOffer{offer("a", 5*time.Second, false)}, "Idle — waiting for jobs", nil, "",
			"Studio Worker — Idle — waiting for jobs"},
		{"one waiting, 1 min 51 s left", []app.PendingOffer{offer("a", 111*time.Second, true)}, "Idle — an offer waits for your answer",
			[]string{"Offer: image · sdxl — 2 min 0 s left"}, "", "Studio Worker — Idle — an offer waits for your answer · an offer waits for you"},
		{"one waiting, 9 s left", []app.PendingOffer{offer("a", 9*time.Second, true)}, "Idle — an offer waits for your answer",
			[]string{"Offer: image · sdxl — 10 s left"}, "", "Studio Worker — Idle — an offer waits for your answer · an offer waits for you"},
		{"expired", []app.PendingOffer{offer("a", -time.Second, true)}, "Idle — an offer waits for your answer",
			[]string{"Offer: image · sdxl — expiring"}, "", "Studio Worker — Idle — an offer waits for your answer · an offer waits for you"},
		{"five waiting", []app.PendingOffer{offer("a", 20*time.Second, true), offer("b", 20*time.Second, true), offer("c", 20*time.Second, true),
			offer("d", 20*time.Second, true), offer("e", 20*time.Second, true)}, "Idle — an offer waits for your answer",
			[]string{"Offer: image · sdxl — 20 s left", "Offer: image · sdxl — 20 s left", "Offer: image · sdxl — 20 s left"},
			"2 more offers: open Studio Worker", "Studio Worker — Idle — an offer waits for your answer · 5 offers wait for you"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := idle
			s.Offers = tt.offers
			items := TrayMenu(s, t0, quitAfterAvailable)
			if items[0].Label != tt.status {
				t.Errorf("status %q, want %q", items[0].Label, tt.status)
			}
			var lines []string
			more := ""
			for i, it := range items {
				switch {
				case strings.HasPrefix(it.Label, "Offer: "):
					lines = append(lines, it.Label)
					acc, dec := items[i+1], items[i+2]
					id := tt.offers[len(lines)-1].JobID
					if acc.Action != TrayAccept || acc.JobID != id || dec.Action != TrayDecline || dec.JobID != id {
						t.Errorf("after %q: %+v, %+v; want Accept and Decline of %s", it.Label, acc, dec, id)
					}
				case strings.HasSuffix(it.Label, "open Studio Worker"):
					more = it.Label
				}
			}
			if !slices.Equal(lines, tt.lines) || more != tt.more {
				t.Errorf("offer lines %q, more %q; want %q, %q", lines, more, tt.lines, tt.more)
			}
			if got := TrayTooltip(s); got != tt.tooltip {
				t.Errorf("tooltip %q, want %q", got, tt.tooltip)
			}
		})
	}
}

// TestTrayTooltipHasTheWindowsPercent: the tray said "0 %" beside the window's 9 % (finding 8).
func TestTrayTooltipHasTheWindowsPercent(t *testing.T) {
	s := busyState()
	s.Offers = nil
	s.Running[0].Fraction = 0.09
	if got, want := TrayTooltip(s), "Studio Worker — Busy: image · sdxl-turbo · 9 %"; got != want {
		t.Errorf("tooltip %q, want %q", got, want)
	}
	for _, it := range TrayMenu(s, t0, quitAfterAvailable) {
		if strings.Contains(it.Label, "%") {
			t.Errorf("a menu item shows a figure that is not the window's: %q", it.Label)
		}
	}
}
