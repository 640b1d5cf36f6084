package ui

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"slices"
	"strings"
	"testing"
	"time"

	"studioworker/app"
	"studioworker/protocol"
)

func TestRateLimiter(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   []time.Duration // offsets from t0
		want []bool
	}{
		{"first passes", []time.Duration{0}, []bool{true}},
		{"second within the minute is held", []time.Duration{0, 59 * time.Second}, []bool{true, false}},
		{"a minute later passes", []time.Duration{0, time.Minute}, []bool{true, true}},
		{"held ones do not restart the minute", []time.Duration{0, 30 * time.Second, 50 * time.Second, 61 * time.Second, 90 * time.Second},
			[]bool{true, false, false, true, false}},
		{"a clock stepping back holds", []time.Duration{time.Minute, 0}, []bool{true, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rateLimiter{every: time.Minute}
			for i, d := range tc.at {
				if got := r.allow(t0.Add(d)); got != tc.want[i] {
					t.Errorf("event %d at +%v: allow=%v, want %v", i, d, got, tc.want[i])
				}
			}
		})
	}
}

func TestDescribeConn(t *testing.T) {
	base := idleState()
	with := func(c app.ConnInfo) app.State { s := base; s.Conn = c; return s }
	for _, tc := range []struct {
		name   string
		state  app.State
		title  string
		tone   tone
		action string
	}{
		{"connected", base, "Connected to studio.example.com", toneGood, ""},
		{"connecting", with(app.ConnInfo{State: connConnecting}), "Connecting to studio.example.com…", toneWait, ""},
		{"reconnecting with countdown", with(app.ConnInfo{State: connReconnecting, Attempt: 3, NextRetry: t0.Add(3200 * time.Millisecond)}),
			"Reconnecting in 4 s (attempt 3)", toneWait, "reconnect"},
		{"reconnecting, time passed", with(app.ConnInfo{State: connReconnecting, Attempt: 1, NextRetry: t0.Add(-time.Second)}),
			"Reconnecting to studio.example.com now (attempt 1)", toneWait, "reconnect"},
		{"offline with reason", with(app.ConnInfo{State: connOffline, LastError: "no network"}), "Offline: no network", toneNeutral, "reconnect"},
		{"gave up", with(app.ConnInfo{State: connGaveUp}), "Offline: gave up reconnecting", toneBad, "reconnect"},
		{"the worker this window watches is out of reach", with(app.ConnInfo{State: connReattaching, Attempt: 4, NextRetry: t0.Add(time.Second),
			LastError: "no Studio Worker is running for this configuration"}), "Reconnecting to the worker…", toneWait, "reconnect"},
		{"auth failed", with(app.ConnInfo{State: connAuthFailed}), "Sign-in needed — register again", toneBad, "register"},
		{"unregistered", app.State{Conn: app.ConnInfo{State: connUnregistered}}, "Not set up yet — register this worker with a Studio", toneNeutral, "register"},
		{"host from the URL", app.State{Registered: true, ServerURL: "wss://user:pw@hub.example:8443/ws", Conn: app.ConnInfo{State: connConnected}},
			"Connected to hub.example:8443", toneGood, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cv := describeConn(tc.state, t0)
			if cv.Title != tc.title || cv.Tone != tc.tone || cv.Action != tc.action {
				t.Errorf("got %q tone %d action %q, want %q tone %d action %q", cv.Title, cv.Tone, cv.Action, tc.title, tc.tone, tc.action)
			}
		})
	}
}

func TestDescribeMode(t *testing.T) {
	y := idleState()
	y.Mode, y.YieldedTo = protocol.StateYielding, "game.exe"
	b := busyState()
	d := busyState()
	d.Mode = protocol.StateDraining
	noGPU := idleState()
	noGPU.GPU, noGPU.VRAM = app.GPUState{Source: "none"}, app.VRAMReach{Basis: app.ReachNoGPU}
	noGPUManual := noGPU
	noGPUManual.AutoAccept = false
	noGPUOneKind := noGPU
	noGPUOneKind.Models = map[string][]string{"tts": {"espeak-ng"}}
	noGPUNoKind := noGPU
	noGPUNoKind.Models = map[string][]string{}
	unseen := idleState()
	unseen.GPU, unseen.VRAM = app.GPUState{Source: "none", CapGB: 8}, app.VRAMReach{Basis: app.ReachUserLimitNoGPU, LimitGB: 8}
	reattaching := busyState() // the worker's last word was busy, but it has gone out of reach
	reattaching.Conn = app.ConnInfo{State: connReattaching, Attempt: 1}
	for _, tc := range []struct {
		s    app.State
		want string
	}{
		{idleState(), "Ready — taking jobs as they come"},
		{noGPU, "No GPU — taking only llm and image jobs that need no VRAM"},
		{noGPUManual, "No GPU — taking only llm and image jobs that need no VRAM (you choose each offer)"},
		{noGPUOneKind, "No GPU — taking only tts jobs that need no VRAM"},
		{noGPUNoKind, "No GPU, and no backend is answering — no jobs can reach this computer"},
		{unseen, "Ready — taking jobs as they come"},
		{y, "Paused while game.exe uses the GPU — resumes by itself"},
		{b, "Working on image · sdxl-turbo"},
		{d, "Finishing job 7f3a9c21…, then pausing"},
		{reattaching, "Waiting for the worker to answer — the dashboard shows what it last said"},
	} {
		got, tone := describeMode(tc.s)
		if got != tc.want {
			t.Errorf("mode %s: %q, want %q", tc.s.Mode, got, tc.want)
		}
		if tc.s.VRAM.Basis == app.ReachNoGPU && tone == toneGood {
			t.Errorf("%q is told in a good tone", got)
		}
	}
}

func TestVRAMNote(t *testing.T) {
	for _, tc := range []struct {
		reach app.VRAMReach
		want  string
	}{
		{app.VRAMReach{Basis: app.ReachGPU, LimitGB: 24, TotalGB: 24}, ""},
		{app.VRAMReach{Basis: app.ReachUserLimit, LimitGB: 20, TotalGB: 24}, ""},
		{app.VRAMReach{Basis: app.ReachPending}, ""},
		{app.VRAMReach{Basis: app.ReachNoGPU},
			"No GPU seen: jobs that need VRAM are not offered to this computer. If it has a GPU the worker cannot see, set a VRAM cap in Settings."},
		{app.VRAMReach{Basis: app.ReachUserLimitNoGPU, LimitGB: 7.5},
			"No GPU seen: free VRAM is unknown, so jobs are offered up to your VRAM cap of 7.5 GB."},
	} {
		s := idleState()
		s.VRAM = tc.reach
		if got := vramNote(s); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.reach, got, tc.want)
		}
	}
}

func TestFormatting(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{clock(12 * time.Second), "00:12"},
		{clock(3*time.Minute + 4*time.Second), "03:04"},
		{clock(time.Hour + 2*time.Minute + 3*time.Second), "1:02:03"},
		{clock(-time.Second), "00:00"},
		{humanDuration(850 * time.Millisecond), "850 ms"},
		{humanDuration(4100 * time.Millisecond), "4.1 s"},
		{humanDuration(42 * time.Second), "42 s"},
		{humanDuration(123 * time.Second), "2 min 3 s"},
		{humanDuration(64 * time.Minute), "1 h 4 min"},
		{expiresIn(t0.Add(6100*time.Millisecond), t0), "expires in 7 s"},
		{expiresIn(t0, t0), "expiring…"},
		{gb(14540), "14.2"},
		{gbEstimate(1.5), "1.5 GB"},
		{gbEstimate(6), "6 GB"},
		{vramNeed(6), "6 GB VRAM"},
		{vramNeed(0), "no VRAM need stated"}, // finding 8: "VRAM unknown VRAM"
		{percent(0.644), "64 %"},
		{percent(2), "100 %"},
		{shortID("7f3a9c21-5be0"), "7f3a9c21…"},
		{shortID("job-1"), "job-1"},
		{gpuReading(app.GPUCard{TotalMB: 24576, UsedMB: 12288, HasTemperature: true, TemperatureC: 62}), "62 °C · utilization not reported"},
		{gpuReading(app.GPUCard{HasUtilization: true, UtilizationPct: 87, HasTemperature: true, TemperatureC: 62}), "62 °C · 87 % busy"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestSplitArgs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  error
	}{
		{"", nil, nil},
		{"  piper  --model x.onnx ", []string{"piper", "--model", "x.onnx"}, nil},
		{`tool --prompt {prompt} --out '{output}'`, []string{"tool", "--prompt", "{prompt}", "--out", "{output}"}, nil},
		{`say "hello \"world\"" 'it''s'`, []string{"say", `hello "world"`, "its"}, nil},
		{`a\ b ''`, []string{"a b", ""}, nil},
		{`C:\\tools\\x.exe`, []string{`C:\tools\x.exe`}, nil},
		{`open "quote`, nil, errUnclosedQuote},
		{`trailing\`, nil, errUnclosedQuote},
	} {
		got, err := splitArgs(tc.in)
		if !errors.Is(err, tc.err) || !slices.Equal(got, tc.want) {
			t.Errorf("splitArgs(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestJoinArgsRoundTrips(t *testing.T) {
	for _, args := range [][]string{
		{"piper", "--model", "x.onnx"},
		{"tool", "with space", "", `it's "quoted"`, `back\slash`, "{prompt}"},
	} {
		line := joinArgs(args)
		back, err := splitArgs(line)
		if err != nil || !slices.Equal(back, args) {
			t.Errorf("%q -> %q -> %q, %v", args, line, back, err)
		}
	}
}

func TestSplitList(t *testing.T) {
	if got := splitList(" a, b ,,c "); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("got %q", got)
	}
	if got := splitList("  "); got != nil {
		t.Errorf("got %q", got)
	}
}

func TestLogBufferIsBounded(t *testing.T) {
	lb := logBuffer{max: 100, minLevel: 1}
	for i := range 250 {
		lvl := protocol.LevelInfo
		if i%10 == 0 {
			lvl = protocol.LevelError
		}
		lb.add(formatLog(app.Notice{Kind: app.NoticeLog, Level: lvl, Text: fmt.Sprintf("line %d", i)}, time.UTC))
	}
	if len(lb.lines) != 100 || len(lb.shown) != 100 {
		t.Fatalf("kept %d lines, %d shown", len(lb.lines), len(lb.shown))
	}
	if !strings.Contains(lb.lines[0].text, "line 150") || !strings.Contains(lb.lines[99].text, "line 249") {
		t.Errorf("kept %q .. %q", lb.lines[0].text, lb.lines[99].text)
	}
	if cap(lb.lines) > 300 {
		t.Errorf("backing array grew to %d", cap(lb.lines))
	}
	lb.setFilter(3, "")
	if len(lb.shown) != 10 {
		t.Errorf("errors only: %d lines", len(lb.shown))
	}
	lb.setFilter(0, "LINE 24")
	if len(lb.shown) != 10 { // 240..249
		t.Errorf("search: %d lines", len(lb.shown))
	}
}

func TestFormatLogKeepsOneLine(t *testing.T) {
	l := formatLog(app.Notice{Time: t0, Level: protocol.LevelWarn, Source: "engine", Text: "first\nsecond"}, time.UTC)
	if l.text != "15:09:26  WARN   engine: first ⏎ second" {
		t.Errorf("%q", l.text)
	}
}

func TestDrawSpark(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 100, 40))
	vram := color.NRGBA{R: 0, G: 0, B: 255, A: 255}
	util := color.NRGBA{R: 0, G: 255, B: 0, A: 255}
	// Two and a half minutes of history at full VRAM and no utilization: the left half stays
	// empty, the right half is filled to the top.
	var samples []app.GPUSample
	for i := range 76 {
		samples = append(samples, app.GPUSample{Time: t0.Add(time.Duration(i-75) * 2 * time.Second), UsedMB: 1000, UtilizationPct: 0})
	}
	drawSpark(img, samples, 1000, vram, util)
	if _, _, _, a := img.At(10, 20).RGBA(); a != 0 {
		t.Error("drew before the first sample")
	}
	if c := color.NRGBAModel.Convert(img.At(90, 2)).(color.NRGBA); c != vram {
		t.Errorf("top of a full VRAM column is %v", c)
	}
	if c := color.NRGBAModel.Convert(img.At(90, 38)).(color.NRGBA); c != util {
		t.Errorf("zero utilization line is %v at the bottom", c)
	}
	drawSpark(image.NewRGBA(image.Rect(0, 0, 1, 1)), samples, 1000, vram, util) // too small: no panic
	drawSpark(img, nil, 0, vram, util)
}

// TestBackendVRAMLine: what Ollama and ComfyUI say of VRAM shows on the card it is about (issue 21:
// "use it in admission and say so in the window").
func TestBackendVRAMLine(t *testing.T) {
	bs := []app.BackendVRAM{
		{Kind: protocol.KindLLM, Backend: "Ollama", Model: "llama3.1:8b", HeldMB: 5939, GPU: -1},
		{Kind: protocol.KindImage, Backend: "ComfyUI", FreeMB: 10240, CacheFreeMB: 6144, GPU: 1},
	}
	for _, tt := range []struct {
		card, cards int
		want        string
	}{
		{0, 1, "Ollama holds 5.8 GB for llama3.1:8b"},
		{1, 2, "ComfyUI counts 10.0 GB free (6.0 GB of it its own cache)"},
		{0, 2, ""}, // Ollama names no card: on a two-card machine it is not pinned to one
	} {
		if got := backendVRAMLine(bs, tt.card, tt.cards); got != tt.want {
			t.Errorf("card %d of %d: %q, want %q", tt.card, tt.cards, got, tt.want)
		}
	}
}

func TestGPUCardSaysWhatTheBackendHolds(t *testing.T) {
	s := idleState()
	s.GPU.Backends = []app.BackendVRAM{{Kind: protocol.KindLLM, Backend: "Ollama", Model: "llama3.1:8b", HeldMB: 5939, GPU: -1}}
	h := newHarness(t, s)
	h.ui.do(func() {
		c := h.w.dash.gpus.get(fmt.Sprint(s.GPU.Cards[0].Index))
		if got := subtleText(c.held); got != "Ollama holds 5.8 GB for llama3.1:8b" || !c.held.Visible() {
			t.Errorf("GPU card backend line %q (shown %v)", got, c.held.Visible())
		}
	})
}
