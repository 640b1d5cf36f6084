package ui

import (
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
		status      string
		autoChecked bool
		pauseLabel  string
		pauseAction TrayAction
		drainOff    bool
		icon        string
	}
	for _, tc := range []struct {
		name  string
		state app.State
		want  want
	}{
		{"idle", idleState(), want{"Idle — waiting for jobs", true, labelPause, TrayPause, true, assets.IconIdle}},
		{"idle with no GPU", noGPU, want{"Idle — no GPU: only jobs that need no VRAM", true, labelPause, TrayPause, true, assets.IconIdle}},
		{"idle with a backend down", backendDown, want{"Idle — the llm backend is down since 16:52", true, labelPause, TrayPause, true, assets.IconIdle}},
		{"busy", busy, want{"Busy: image · sdxl-turbo · 60 %", true, labelPause, TrayPause, false, assets.IconBusy}},
		{"busy with two jobs, auto-accept off", two, want{"Busy: image · sdxl-turbo · 60 % (+1)", false, labelPause, TrayPause, false, assets.IconBusy}},
		{"draining", draining, want{"Finishing job 7f3a9c21…, then pausing", false, labelResume, TrayResume, true, assets.IconBusy}},
		{"paused", paused, want{"Paused", true, labelResume, TrayResume, true, assets.IconPaused}},
		{"yielding", yielding, want{"Yielding to game.exe", true, labelPause, TrayPause, true, assets.IconYielding}},
		{"reconnecting", reconnecting, want{"Reconnecting (attempt 3)", true, labelPause, TrayPause, true, assets.IconOffline}},
		{"offline", offline, want{"Offline: no network", true, labelPause, TrayPause, true, assets.IconOffline}},
		{"the worker out of reach", reattaching, want{"Reconnecting to the worker…", false, labelPause, TrayPause, false, assets.IconOffline}},
		{"credentials rejected", authFailedState(), want{"Sign-in needed — register again", true, labelResume, TrayResume, true, assets.IconError}},
		{"not registered", unregistered, want{"Not set up — open Studio Worker to register", false, labelPause, TrayPause, true, assets.IconOffline}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			items := TrayMenu(tc.state)
			wantItems := []TrayItem{
				{Label: tc.want.status, Disabled: true},
				{Label: labelAutoAccept, Checked: tc.want.autoChecked, Action: TrayAutoAccept},
				{Label: tc.want.pauseLabel, Action: tc.want.pauseAction},
				{Label: labelDrain, Action: TrayDrain, Disabled: tc.want.drainOff},
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
	m := fyneMenu(TrayMenu(busyState()), func(a TrayAction) { ran = append(ran, a) })
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
	want := []TrayAction{TrayAutoAccept, TrayPause, TrayDrain, TrayOpen, TrayQuit}
	if len(ran) != len(want) {
		t.Fatalf("ran %v", ran)
	}
	for i := range want {
		if ran[i] != want[i] {
			t.Errorf("action %d: %v, want %v", i, ran[i], want[i])
		}
	}
}
