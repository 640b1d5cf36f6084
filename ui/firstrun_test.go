package ui

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"studioworker/app"
	"studioworker/hub"
	"studioworker/protocol"
)

func unregisteredState() app.State {
	return app.State{Conn: app.ConnInfo{State: connUnregistered}, Mode: protocol.StateIdle, AutoAccept: true,
		Counters: app.Counters{Declined: map[string]int{}}, Started: t0}
}

// rowNamed finds a detected backend's row by the program's name and kind.
func (p *firstRun) rowNamed(name string, kind protocol.Kind) *detectedRow {
	for _, r := range p.rows {
		if r.det.Name == name && r.det.Kind == kind {
			return r
		}
	}
	return nil
}

func TestFirstRunPageTicksRegisterAndDemo(t *testing.T) {
	h := newHarness(t, unregisteredState())
	p := h.w.first
	h.waitUI("the backends to be listed", func() bool { return p.detected && len(p.rows) == 4 })
	h.ui.do(func() {
		if h.w.page != pageFirstRun || h.w.win.Content() != p.content {
			t.Fatalf("an unregistered worker shows page %q, not the first-run page", h.w.page)
		}
		ollama, llama := p.rowNamed("Ollama", protocol.KindLLM), p.rowNamed("llama.cpp server", protocol.KindLLM)
		espeak, whisper := p.rowNamed("espeak-ng", protocol.KindTTS), p.rowNamed("whisper.cpp", protocol.KindSTT)
		if !ollama.check.Checked || llama.check.Checked || !espeak.check.Checked {
			t.Errorf("ticks at start: ollama %v llama %v espeak %v; want the first of each kind", ollama.check.Checked, llama.check.Checked, espeak.check.Checked)
		}
		if whisper.check.Checked || !whisper.check.Disabled() {
			t.Error("a backend that is not ready can be ticked")
		}
		if !strings.Contains(ollama.check.Text, "Ollama for text (LLM) — http://127.0.0.1:11434") {
			t.Errorf("row label %q", ollama.check.Text)
		}
		// One backend per kind: ticking llama.cpp unticks Ollama.
		test.Tap(llama.check)
		if ollama.check.Checked || !llama.check.Checked {
			t.Error("two backends ticked for llm")
		}

		// Empty fields are marked next to them, and nothing is called.
		test.Tap(p.register)
		for _, key := range []string{"server_url", "pairing_code"} {
			if l := p.errs[key]; !l.Visible() || l.Text == "" {
				t.Errorf("no message next to %s", key)
			}
		}
		p.serverURL.SetText("https://studio.example.com")
		p.pairing.SetText("ABCDE-FGHJK")
		test.Tap(p.register)
	})
	waitFor(t, "Register", func() bool { return len(h.ctl.Registrations()) == 1 })
	req := h.ctl.Registrations()[0]
	if req.ServerURL != "https://studio.example.com" || req.PairingCode != "ABCDE-FGHJK" || req.Engines == nil {
		t.Fatalf("register request %+v", req)
	}
	want := app.BackendForms{protocol.KindLLM: testDetected()[1].Backend, protocol.KindTTS: testDetected()[2].Backend}
	if got := *req.Engines; len(got) != 2 || got[protocol.KindLLM].URL != want[protocol.KindLLM].URL ||
		got[protocol.KindTTS].Command[0] != want[protocol.KindTTS].Command[0] {
		t.Fatalf("ticked engines sent: %+v", got)
	}

	// The demo: the dashboard with the demo bar, and back to the first-run page when it ends.
	h.ui.do(func() { test.Tap(p.demo) })
	waitFor(t, "StartDemo", func() bool { return h.ctl.called("StartDemo") })
	h.waitUI("the demo page", func() bool { return h.w.page == pageDemo })
	h.ui.do(func() {
		if findButton(h.w.win.Content(), "End the demo") == nil {
			t.Fatal("no End the demo button during the demo")
		}
		test.Tap(h.w.demoBar.end)
	})
	waitFor(t, "StopDemo", func() bool { return h.ctl.called("StopDemo") })
	h.waitUI("the first-run page again", func() bool { return h.w.page == pageFirstRun })

	// Registered from elsewhere (the CLI): the dashboard.
	h.publish(func(s *app.State) {
		s.Registered, s.Conn = true, app.ConnInfo{State: connConnected, Server: "studio.example.com"}
	})
	h.ui.do(func() {
		if h.w.page != pageMain || findButton(h.w.win.Content(), "Register") != nil {
			t.Errorf("registered: page %q", h.w.page)
		}
	})
	if n := h.ctl.count("DetectBackends"); n != 1 {
		t.Errorf("DetectBackends called %d times, want once", n)
	}
}

func TestFirstRunSkip(t *testing.T) {
	h := newHarness(t, unregisteredState())
	h.waitUI("the first-run page", func() bool { return h.w.page == pageFirstRun })
	h.ui.do(func() {
		skip := findButton(h.w.first.content, "Skip to the dashboard")
		if skip == nil {
			t.Fatal("no skip button")
		}
		test.Tap(skip)
		if h.w.page != pageMain {
			t.Errorf("after skip: page %q", h.w.page)
		}
	})
}

// TestFirstRunWithTheRealWorker drives the page against a real app.Worker started with no
// config, as a double-click does the first time, and the reference hub over a real socket.
func TestFirstRunWithTheRealWorker(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	t.Setenv("PATH", dir) // no command-line backends: what the detector finds does not depend on this machine
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	hb, err := hub.Open(ctx, hub.Config{DBPath: filepath.Join(dir, "hub.db"), AdminToken: "admin", HeartbeatInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hb.Handler())
	code, err := hb.NewPairingCode(ctx)
	if err != nil {
		t.Fatal(err)
	}

	cfg := app.DefaultConfig() // what the window starts with when there is no config file
	cfg.GPU.Simulated = &app.SimulatedGPU{Name: "Simulated test GPU", VRAMGB: 24}
	path := filepath.Join(dir, "worker", "config.json")
	w, err := app.NewWorker(app.Options{ConfigPath: path, Config: cfg, Logger: logger, AgentVersion: "test", KeepRunning: true})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- w.Serve(wctx) }()

	ui := &uiThread{}
	var win *Window
	ui.do(func() {
		win = newWindow(test.NewTempApp(t), w, w, Options{}, env{do: ui.do, now: time.Now,
			trayHost: func() bool { return false }, log: logger})
	})
	var once sync.Once
	stop := func() {
		once.Do(func() {
			win.Close()
			cancel()
			select {
			case err := <-served:
				if err != nil {
					t.Errorf("worker: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Error("the worker did not stop within 15 s")
			}
			srv.Close()
			cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer ccancel()
			_ = hb.Close(cctx)
		})
	}
	t.Cleanup(stop)
	waitOn := func(what string, cond func() bool) {
		t.Helper()
		waitFor(t, what, func() bool {
			var ok bool
			ui.do(func() { ok = cond() })
			return ok
		})
	}
	p := win.first
	waitOn("the first-run page", func() bool { return win.page == pageFirstRun && p.detected })

	// A wrong pairing code: the hub's refusal shows next to the pairing code field.
	ui.do(func() {
		p.serverURL.SetText(srv.URL)
		p.name.SetText("test-pc")
		p.pairing.SetText("WRONG-CODE0")
		test.Tap(p.register)
	})
	waitOn("the pairing code's error", func() bool { return p.errs["pairing_code"].Visible() })
	ui.do(func() {
		if msg := p.errs["pairing_code"].Text; !strings.Contains(strings.ToLower(msg), "pairing") {
			t.Errorf("pairing code error %q", msg)
		}
		if p.errs["server_url"].Visible() {
			t.Errorf("the server URL is marked too: %q", p.errs["server_url"].Text)
		}
		if win.page != pageFirstRun {
			t.Errorf("after a refused registration: page %q", win.page)
		}
	})
	if _, err := os.Stat(path); err == nil {
		t.Fatal("a refused registration wrote a config file")
	}

	// The right code: registered, connected, and the dashboard.
	ui.do(func() {
		p.pairing.SetText(code)
		test.Tap(p.register)
	})
	waitOn("the dashboard, connected", func() bool {
		return win.page == pageMain && win.state.Conn.State == connConnected
	})
	saved, err := app.LoadConfig(path)
	if err != nil || !saved.Registered() || saved.Name != "test-pc" {
		t.Fatalf("saved config: %+v, %v", saved, err)
	}
	workers, err := (&hub.Client{BaseURL: srv.URL, AdminToken: "admin"}).Workers(ctx)
	if err != nil || len(workers) != 1 || workers[0].Name != "test-pc" {
		t.Fatalf("the hub's workers: %+v, %v", workers, err)
	}

	// The Settings tab shows what was registered, and Save with nothing edited changes nothing:
	// not the file, not the connection (issue 18 finding 1: it saved an empty address and name).
	v := win.settings
	waitOn("the Settings form to show the registration", func() bool {
		return v.serverURL.Text == srv.URL && v.name.Text == "test-pc"
	})
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ui.do(func() { test.Tap(v.save) })
	waitOn("Saved.", func() bool { return subtleText(v.status) == "Saved." })
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Errorf("Save with nothing edited rewrote the config:\nbefore %s\nafter  %s", before, after)
	}
	ui.do(func() {
		if win.state.Conn.State != connConnected {
			t.Errorf("after Save: connection %q", win.state.Conn.State)
		}
	})
}
