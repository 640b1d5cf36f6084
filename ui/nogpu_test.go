// nogpu_test.go drives the window of a real worker that sees no GPU, connected to the real hub
// over a real socket. Nothing is faked but the GPU, and only as gpu.Unavailable: what a computer
// without an NVIDIA driver gives the worker.
package ui

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"studioworker/app"
	"studioworker/gpu"
	"studioworker/hub"
	"studioworker/protocol"
)

// TestNoGPUWindowSaysWhichJobsItCannotTake: a Linux worker with no GPU and a job that states 8 GB
// of VRAM. The hub's GET says why the job waits, and the window says which jobs this computer
// cannot take, in no place "Ready".
func TestNoGPUWindowSaysWhichJobsItCannotTake(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	hb, err := hub.Open(ctx, hub.Config{DBPath: filepath.Join(dir, "hub.db"), OpenRegistration: true, AdminToken: "admin",
		HeartbeatInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hb.Handler())
	admin := &hub.Client{BaseURL: srv.URL, AdminToken: "admin"}
	reg, err := admin.Register(ctx, "cpu-only", "any")
	if err != nil {
		t.Fatal(err)
	}
	cfg := app.DefaultConfig()
	cfg.ServerURL, cfg.WorkerID, cfg.AuthToken, cfg.Name = srv.URL, reg.WorkerID, reg.AuthToken, "cpu-only"
	cfg.GPU.Simulated, cfg.VRAMThresholdGB = nil, 0
	path := filepath.Join(dir, "worker", "config.json")
	if err := app.SaveConfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	w, err := app.NewWorker(app.Options{ConfigPath: path, Config: cfg, Logger: logger, AgentVersion: "test",
		Sampler: gpu.Unavailable("No NVIDIA driver found: VRAM checks are off")})
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
	t.Cleanup(func() {
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
	})
	waitOn := func(what string, cond func() bool) {
		t.Helper()
		waitFor(t, what, func() bool {
			var ok bool
			ui.do(func() { ok = cond() })
			return ok
		})
	}
	waitOn("the dashboard, connected, with no GPU seen", func() bool {
		return win.page == pageMain && win.state.Conn.State == connConnected && win.state.VRAM.Basis == app.ReachNoGPU
	})

	est := 8.0
	id, err := admin.Submit(ctx, protocol.JobRequest{Kind: protocol.KindLLM, Model: "synthetic",
		Input: protocol.Object(`{"prompt":"hi"}`), VRAMGBEstimate: &est})
	if err != nil {
		t.Fatal(err)
	}
	const why = `needs 8 GB of VRAM; no connected worker that offers model "synthetic" for kind llm has a GPU`
	waitFor(t, "the job to say why it waits", func() bool {
		info, err := admin.Job(ctx, id)
		if err != nil {
			t.Fatalf("job %s: %v", id, err)
		}
		return info.Status == protocol.JobQueued && info.Waiting == why
	})

	ui.do(func() {
		h := win.header
		if want := "No GPU — taking only llm, image, tts, stt and video jobs that need no VRAM"; h.mode.Text != want {
			t.Errorf("header mode %q, want %q", h.mode.Text, want)
		}
		if !h.vram.Visible() || !strings.HasPrefix(h.vram.Text, "No GPU seen: jobs that need VRAM are not offered to this computer.") {
			t.Errorf("header VRAM line (shown %v): %q", h.vram.Visible(), h.vram.Text)
		}
		if got := TrayMenu(win.state, time.Now(), quitAfterOff)[0].Label; got != "Idle — no GPU: only jobs that need no VRAM" {
			t.Errorf("tray status %q", got)
		}
		texts := shownTexts(win.win.Content())
		if !slices.Contains(texts, h.mode.Text) {
			t.Errorf("the walk over the window missed the header's mode line; it found %q", texts)
		}
		for _, text := range texts {
			if strings.Contains(text, "Ready") {
				t.Errorf("the window says %q with no GPU", text)
			}
		}
	})
}

// shownTexts is every text a visible label, rich text or canvas text under o shows; a hidden
// object's children are not shown either.
func shownTexts(o fyne.CanvasObject) []string {
	if o == nil || !o.Visible() {
		return nil
	}
	var out []string
	var children []fyne.CanvasObject
	switch v := o.(type) {
	case *widget.Label:
		out = append(out, v.Text)
	case *widget.RichText:
		out = append(out, v.String())
	case *canvas.Text:
		out = append(out, v.Text)
	}
	switch v := o.(type) {
	case *fyne.Container:
		children = v.Objects
	case fyne.Widget:
		children = test.WidgetRenderer(v).Objects()
	}
	for _, c := range children {
		out = append(out, shownTexts(c)...)
	}
	return out
}
