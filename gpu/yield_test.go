package gpu

import (
	"testing"
	"time"
)

func TestYielderSequence(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	const workerPID, backendChild = 4000, 4242
	own := func(pid uint32) bool { return pid == workerPID || pid == backendChild }
	gfx := func(pid uint32, name string, mb int64) Process {
		return Process{PID: pid, Name: name, UsedMB: mb, Graphics: true}
	}
	snap := func(ps ...Process) Snapshot { return Snapshot{Devices: []Device{{Processes: ps}}} }
	game := gfx(900, "game.exe", 2048)

	y := NewYielder(YieldPolicy{}) // defaults: 512 MB, 30 s, desktop shells ignored
	steps := []struct {
		name      string
		snap      Snapshot
		now       time.Time
		yielding  bool
		process   string
		pid       uint32
		sinceSecs int
	}{
		{name: "idle GPU", snap: snap(), now: at(0)},
		{name: "game below threshold", snap: snap(gfx(900, "game.exe", 300)), now: at(1)},
		{name: "exactly at threshold is not above it", snap: snap(gfx(900, "game.exe", 512)), now: at(2)},
		{name: "desktop shell, any case", snap: snap(gfx(10, "XORG", 3000), gfx(11, "gnome-shell", 900)), now: at(3)},
		{name: "the worker's own backend", snap: snap(gfx(backendChild, "llama-server", 9000)), now: at(4)},
		{name: "foreign compute is not the user", snap: snap(Process{PID: 950, Name: "python3", UsedMB: 9000}), now: at(5)},
		{name: "a game starts", snap: snap(game, gfx(11, "gnome-shell", 900)), now: at(10), yielding: true, process: "game.exe", pid: 900, sinceSecs: 10},
		{name: "game gone, hysteresis holds", snap: snap(), now: at(15), yielding: true, process: "game.exe", pid: 900, sinceSecs: 10},
		{name: "failed sample is no evidence", snap: Snapshot{Problem: "lost"}, now: at(30), yielding: true, process: "game.exe", pid: 900, sinceSecs: 10},
		{name: "game back resets the timer", snap: snap(game), now: at(38), yielding: true, process: "game.exe", pid: 900, sinceSecs: 10},
		{name: "29 s after last seen: still yielding", snap: snap(), now: at(67), yielding: true, process: "game.exe", pid: 900, sinceSecs: 10},
		{name: "30 s after last seen: resume", snap: snap(), now: at(68)},
		{name: "stays resumed", snap: snap(), now: at(200)},
		{name: "unreported memory: a shell does not count", snap: snap(Process{PID: 12, Name: "dwm.exe", Graphics: true, MemoryUnknown: true}), now: at(201)},
		{name: "unreported memory: nor the worker's own", snap: snap(Process{PID: backendChild, Name: "ollama.exe", Graphics: true, MemoryUnknown: true}), now: at(202)},
		{name: "unreported memory: nor a compute process", snap: snap(Process{PID: 951, Name: "python.exe", MemoryUnknown: true}), now: at(203)},
		{name: "unreported memory: a foreign graphics program is enough", snap: snap(Process{PID: 905, Name: "game.exe", Graphics: true, MemoryUnknown: true}), now: at(204), yielding: true, process: "game.exe", pid: 905, sinceSecs: 204},
		{name: "and it is gone for long enough", snap: snap(), now: at(234)},
		{name: "memory known beats memory unknown", snap: snap(Process{PID: 903, Name: "unknown.exe", Graphics: true, MemoryUnknown: true}, gfx(904, "known.exe", 700)), now: at(301), yielding: true, process: "known.exe", pid: 904, sinceSecs: 301},
		{name: "the larger of two culprits is named", snap: snap(gfx(901, "editor", 1000), gfx(902, "Cyberpunk2077.exe", 6000)), now: at(302), yielding: true, process: "Cyberpunk2077.exe", pid: 902, sinceSecs: 301},
	}
	for _, st := range steps {
		got := y.Observe(st.snap, own, st.now)
		want := YieldState{Yielding: st.yielding, Process: st.process, PID: st.pid}
		if st.yielding {
			want.Since = at(st.sinceSecs)
		}
		if got != want {
			t.Fatalf("%s: got %+v, want %+v", st.name, got, want)
		}
		if y.State() != got {
			t.Fatalf("%s: State() disagrees with Observe", st.name)
		}
	}
}

func TestYieldPolicyOptions(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	shell := Snapshot{Devices: []Device{{Processes: []Process{{PID: 5, Name: "gnome-shell", UsedMB: 2000, Graphics: true}}}}}
	small := Snapshot{Devices: []Device{{Processes: []Process{{PID: 6, Name: "krita", UsedMB: 200, Graphics: true}}}}}
	tests := []struct {
		name   string
		policy YieldPolicy
		snap   Snapshot
		own    func(uint32) bool
		want   bool
	}{
		{"default ignores the shell", YieldPolicy{}, shell, nil, false},
		{"own list replaces the default", YieldPolicy{Ignore: []string{"steam"}}, shell, nil, true},
		{"empty non-nil list ignores nothing", YieldPolicy{Ignore: []string{}}, shell, nil, true},
		{"lower threshold catches small users", YieldPolicy{ThresholdMB: 100}, small, nil, true},
		{"default threshold lets them be", YieldPolicy{}, small, nil, false},
		{"own func sees the pid", YieldPolicy{Ignore: []string{}}, shell, func(pid uint32) bool { return pid == 5 }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := NewYielder(tc.policy).Observe(tc.snap, tc.own, t0).Yielding; got != tc.want {
				t.Errorf("Yielding = %v, want %v", got, tc.want)
			}
		})
	}

	y := NewYielder(YieldPolicy{ThresholdMB: 100, ResumeAfter: 5 * time.Second})
	y.Observe(small, nil, t0)
	if !y.Observe(Snapshot{Devices: []Device{{}}}, nil, t0.Add(4*time.Second)).Yielding {
		t.Error("resumed before the custom ResumeAfter")
	}
	if y.Observe(Snapshot{Devices: []Device{{}}}, nil, t0.Add(5*time.Second)).Yielding {
		t.Error("still yielding after the custom ResumeAfter")
	}
}
