// TestWindowsGPU runs the packaged exe under Wine against scripted GPUs: the test-only nvml.dll
// built from packaging/wine/fake_nvml.c plays each machine through NVML's real entry points, so
// what is tested is the worker's own binding (gpu/nvml_windows.go), its admission by live free
// VRAM, and its yield to a foreign graphics process whose memory the driver does not report.
package winlane

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"studioworker/gpu"
	"studioworker/protocol"
)

// The machines the lane plays. %s in wddm is where the game's line goes.
const (
	oneCard = `gpu
name NVIDIA GeForce RTX 4090
uuid GPU-4090-0000-0000-0000-000000000001
total_mb 24564
used_mb %d
util 35
temp 61
power_mw 123000
`
	twoCards = `gpu
name NVIDIA GeForce RTX 4090
uuid GPU-4090-0000-0000-0000-000000000001
total_mb 24564
used_mb 3000
util na
temp 58
power_mw na
gpu
name NVIDIA RTX A4000
uuid GPU-A4000-000-0000-0000-000000000002
total_mb 16376
used_mb 1000
util 3
temp 40
power_mw 35000
`
	wddmGame = `gpu
name NVIDIA GeForce RTX 3060
uuid GPU-3060-0000-0000-0000-000000000003
total_mb 12288
used_mb 2500
util 20
temp 55
power_mw na
process graphics game.exe na
process graphics dwm.exe na
`
)

// gpuLane is a Wine prefix with the fake nvml.dll and its scenario file.
type gpuLane struct {
	*wine
	scenario string // Linux path of the file the DLL reads
	dlls     map[string]string
	game     string // Linux path of game.exe
}

func TestWindowsGPU(t *testing.T) {
	if testing.Short() {
		t.Skip("the Windows GPU lane runs the real exe under Wine; skipped with -short")
	}
	start := time.Now()
	g := &gpuLane{wine: newWine(t)}
	g.scenario = filepath.Join(g.dir, "fake-nvml-scenario.txt")
	g.extraEnv = append(g.extraEnv, "FAKE_NVML_SCENARIO="+winPath(g.scenario))

	t.Run("no driver", func(t *testing.T) {
		snap := g.gpuJSON(t)
		if snap.Source != gpu.SourceNone || len(snap.Devices) != 0 || snap.Problem != "No NVIDIA driver found: VRAM checks are off" {
			t.Fatalf("without nvml.dll: %+v", snap)
		}
	})

	g.build(t)
	g.useDLL(t, "nvml.dll")

	t.Run("machines", func(t *testing.T) {
		game := g.startGame(t)
		defer game()
		tests := []struct {
			name     string
			dll      string
			scenario string
			check    func(t *testing.T, s gpu.Snapshot)
		}{
			{"nvmlInit fails", "nvml.dll", "init 9\n", func(t *testing.T, s gpu.Snapshot) {
				if s.Source != gpu.SourceNone || !strings.Contains(s.Problem, "The NVIDIA driver is not loaded") {
					t.Errorf("%+v", s)
				}
			}},
			{"one 24 GB card", "nvml.dll", fmt.Sprintf(oneCard, 20000), func(t *testing.T, s gpu.Snapshot) {
				d := oneDevice(t, s)
				if d.Name != "NVIDIA GeForce RTX 4090" || d.UUID != "GPU-4090-0000-0000-0000-000000000001" ||
					d.TotalMB != 24564 || d.UsedMB != 20000 || d.FreeMB != 4564 ||
					!d.HasUtilization || d.UtilizationPct != 35 || !d.HasTemperature || d.TemperatureC != 61 ||
					!d.HasPower || d.PowerW != 123 {
					t.Errorf("%+v", d)
				}
			}},
			{"two cards, values not supported on one", "nvml.dll", twoCards, func(t *testing.T, s gpu.Snapshot) {
				if s.Source != gpu.SourceNVML || s.Problem != "" || len(s.Devices) != 2 {
					t.Fatalf("%+v", s)
				}
				a, b := s.Devices[0], s.Devices[1]
				if a.TotalMB != 24564 || a.HasUtilization || a.HasPower || !a.HasTemperature ||
					b.Name != "NVIDIA RTX A4000" || b.Index != 1 || b.FreeMB != 15376 || b.PowerW != 35 {
					t.Errorf("%+v", s.Devices)
				}
			}},
			{"WDDM: per-process memory not available, a game running", "nvml.dll", wddmGame, func(t *testing.T, s gpu.Snapshot) {
				d := oneDevice(t, s)
				p, ok := process(d, "game.exe")
				if !ok || p.PID == 0 || !p.Graphics || !p.MemoryUnknown || p.UsedMB != 0 {
					t.Errorf("game.exe as NVML lists it: %+v in %+v", p, d.Processes)
				}
				if _, ok := process(d, "dwm.exe"); ok {
					t.Errorf("dwm.exe is not running under Wine, yet listed: %+v", d.Processes)
				}
			}},
			{"a driver from before 2021: no _v2 or _v3 entry points", "nvml-old.dll",
				fmt.Sprintf(oneCard, 1000) + "process compute game.exe 900\n", func(t *testing.T, s gpu.Snapshot) {
					d := oneDevice(t, s)
					p, ok := process(d, "game.exe")
					if d.FreeMB != 23564 || !ok || p.UsedMB != 900 || p.MemoryUnknown || p.Graphics {
						t.Errorf("read through the unversioned entry points: %+v", d)
					}
				}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				g.useDLL(t, tc.dll)
				g.setScenario(t, tc.scenario)
				tc.check(t, g.gpuJSON(t))
			})
		}
		g.useDLL(t, "nvml.dll")
	})

	t.Run("admission and yield", g.admissionAndYield)
	t.Logf("Windows GPU lane: %.1f s in all", time.Since(start).Seconds())
}

// admissionAndYield runs the worker's window against a Linux hub on the scripted machines: an
// offer declined for VRAM while the card is full and taken once it frees up, then a game that
// makes the worker step aside and come back.
func (g *gpuLane) admissionAndYield(t *testing.T) {
	hubBin := buildHub(t, g.root, g.dir)
	h := newHub(t, hubBin, filepath.Join(g.dir, "hub"))
	g.setScenario(t, fmt.Sprintf(oneCard, 20000))
	if code, out := g.run(time.Minute, "register", "--server", h.url(), "--pairing-code", h.pairingCode(), "--name", "Wine GPU worker"); code != 0 {
		t.Fatalf("register: exit %d\n%s", code, out)
	}
	g.editConfig(t, func(c map[string]any) {
		c["gpu"].(map[string]any)["yield"].(map[string]any)["resume_after_s"] = 2
	})

	display, out := g.startWindow(t)
	h.waitConnected(t)

	eight := 8.0
	llm := protocol.JobRequest{Kind: protocol.KindLLM, Model: "synthetic", VRAMGBEstimate: &eight,
		Input: protocol.Object(`{"prompt":"needs 8 GB"}`)}
	id := h.submit(t, llm)
	waitFor(t, time.Minute, "the worker to decline for VRAM (4.5 GB free of 24)", func() bool {
		return g.status(t).Counters.Declined["vram"] >= 1
	})
	if info, err := h.api.Job(h.ctx(t, 5*time.Second), id); err != nil || info.Status != protocol.JobQueued {
		t.Fatalf("after the decline the job is %+v, %v; want queued", info, err)
	}
	g.screenshot(t, display, "windows-gpu-one-card.png")

	g.setScenario(t, fmt.Sprintf(oneCard, 2000)) // the creator closed what held the memory
	if info := h.wait(t, id); info.Status != protocol.JobCompleted {
		t.Fatalf("once 22 GB are free the job should run: %+v\nworker:\n%s", info, out())
	}

	g.setScenario(t, twoCards)
	waitFor(t, 30*time.Second, "the window's worker to see two cards", func() bool { return len(g.status(t).GPU.Cards) == 2 })
	g.screenshot(t, display, "windows-gpu-two-cards.png")

	stopGame := g.startGame(t)
	g.setScenario(t, wddmGame)
	waitFor(t, 30*time.Second, "the worker to yield to game.exe", func() bool {
		st := g.status(t)
		return st.Mode == protocol.StateYielding && st.YieldedTo == "game.exe"
	})
	st := g.status(t)
	if len(st.GPU.Cards) != 1 || !st.GPU.Cards[0].ProcessMemoryUnknown {
		t.Errorf("the card should say per-process VRAM is not reported: %+v", st.GPU.Cards)
	}
	g.screenshot(t, display, "windows-gpu-yielding.png")
	stopGame()
	waitFor(t, 30*time.Second, "the worker to take jobs again once game.exe has gone", func() bool {
		return g.status(t).Mode == protocol.StateIdle
	})
	if info := h.wait(t, h.submit(t, llm)); info.Status != protocol.JobCompleted {
		t.Fatalf("after the game: %+v\nworker:\n%s", info, out())
	}
}

// build compiles the fake nvml.dll (current and pre-2021 exports) and game.exe with mingw-w64.
func (g *gpuLane) build(t *testing.T) {
	t.Helper()
	src := filepath.Join(g.root, "packaging", "wine")
	g.dlls = map[string]string{"nvml.dll": filepath.Join(g.dir, "nvml.dll"), "nvml-old.dll": filepath.Join(g.dir, "nvml-old.dll")}
	g.game = filepath.Join(g.prefix, "drive_c", "Games", "game.exe")
	if err := os.MkdirAll(filepath.Dir(g.game), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-shared", "-O2", "-o", g.dlls["nvml.dll"], filepath.Join(src, "fake_nvml.c"), "-Wl,--kill-at"},
		{"-shared", "-O2", "-DFAKE_NVML_OLD_DRIVER", "-o", g.dlls["nvml-old.dll"], filepath.Join(src, "fake_nvml.c"), "-Wl,--kill-at"},
		{"-O2", "-o", g.game, filepath.Join(src, "fake_game.c")},
	} {
		if out, err := exec.Command("x86_64-w64-mingw32-gcc", args...).CombinedOutput(); err != nil {
			t.Fatalf("x86_64-w64-mingw32-gcc %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// useDLL puts one of the built DLLs in the prefix's System32 as nvml.dll, where drivers put it.
func (g *gpuLane) useDLL(t *testing.T, name string) {
	t.Helper()
	b, err := os.ReadFile(g.dlls[name])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(g.prefix, "drive_c", "windows", "system32", "nvml.dll"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// setScenario replaces the machine in one step: the DLL reads the file at every sample.
func (g *gpuLane) setScenario(t *testing.T, text string) {
	t.Helper()
	tmp := g.scenario + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, g.scenario); err != nil {
		t.Fatal(err)
	}
}

// startGame runs game.exe until the returned func ends it.
func (g *gpuLane) startGame(t *testing.T) func() {
	t.Helper()
	cmd := g.command(context.Background(), "wine", g.game)
	g.outputFile(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(stop)
	return stop
}

// gpuJSON is `gpu --json`, decoded.
func (g *gpuLane) gpuJSON(t *testing.T) gpu.Snapshot {
	t.Helper()
	code, out := g.run(time.Minute, "gpu", "--json")
	var s gpu.Snapshot
	i := strings.IndexByte(out, '{')
	if code != 0 || i < 0 || firstJSON(out[i:], &s) != nil {
		t.Fatalf("gpu --json: exit %d\n%s", code, out)
	}
	return s
}

// editConfig changes the registered worker's config.json in place.
func (g *gpuLane) editConfig(t *testing.T, edit func(map[string]any)) {
	t.Helper()
	path := filepath.Join(g.appData(), "studio-worker", "config.json")
	var c map[string]any
	readJSON(t, path, &c)
	edit(c)
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// screenshot saves the display under artifacts/ once the window shows the latest state.
func (g *gpuLane) screenshot(t *testing.T, display, name string) {
	t.Helper()
	shot := filepath.Join(g.root, "artifacts", name)
	if err := os.MkdirAll(filepath.Dir(shot), 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "a drawn window in "+name, func() bool {
		if out, err := exec.Command("import", "-display", display, "-window", "root", shot).CombinedOutput(); err != nil {
			t.Logf("screenshot: %v: %s", err, out)
			return false
		}
		return distinctColours(t, shot, 200) >= 40
	})
	t.Logf("window under Wine: %s", shot)
}

func oneDevice(t *testing.T, s gpu.Snapshot) gpu.Device {
	t.Helper()
	if s.Source != gpu.SourceNVML || s.Problem != "" || len(s.Devices) != 1 {
		t.Fatalf("want one card read without problems: %+v", s)
	}
	return s.Devices[0]
}

func process(d gpu.Device, name string) (gpu.Process, bool) {
	for _, p := range d.Processes {
		if strings.EqualFold(p.Name, name) {
			return p, true
		}
	}
	return gpu.Process{}, false
}
