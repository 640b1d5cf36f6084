// The window step of the lane: the exe's Fyne window under Wine on an Xvfb display of the test's
// own (so no other test's window can be in the picture), read back as a screenshot that must show
// a drawn window.
package winlane

import (
	"bufio"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"studioworker/protocol"
)

func (w *wine) window(t *testing.T, h *hubProc) {
	for _, tool := range []string{"Xvfb", "import"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the window step needs %s (./build.sh deps installs xvfb and imagemagick)", tool)
		}
	}
	display, out := w.startWindow(t)

	shot := filepath.Join(w.root, "artifacts", "windows-dashboard.png")
	if err := os.MkdirAll(filepath.Dir(shot), 0o755); err != nil {
		t.Fatal(err)
	}
	var colours int
	waitFor(t, 2*time.Minute, "the window to be drawn on "+display, func() bool {
		out, err := exec.Command("import", "-display", display, "-window", "root", shot).CombinedOutput()
		if err != nil {
			t.Logf("screenshot: %v: %s", err, out)
			return false
		}
		colours = distinctColours(t, shot, 200)
		return colours >= 40
	})
	// The picture a creator would see: the dashboard once it has done some work.
	h.waitConnected(t)
	for _, req := range []protocol.JobRequest{
		{Kind: protocol.KindLLM, Model: "synthetic", Input: protocol.Object(`{"prompt":"hello from the window"}`)},
		{Kind: protocol.KindImage, Model: "synthetic", Input: protocol.Object(`{"prompt":"a harbour at dusk","width":256,"height":256}`)},
	} {
		if info := h.wait(t, h.submit(t, req)); info.Status != protocol.JobCompleted {
			t.Fatalf("%s job from the window's worker: %+v\nworker:\n%s", req.Kind, info, out())
		}
	}
	waitFor(t, 30*time.Second, "the window to show the finished jobs", func() bool { return w.status(t).Counters.Done >= 2 })
	// No nvml.dll in this prefix: the worker says it has no GPU, never "Ready", and the hub says
	// why a job that needs VRAM waits.
	if st := w.status(t); st.VRAM.Basis != "no_gpu" || strings.Contains(st.ModeReason, "Ready") {
		t.Errorf("without nvml.dll: vram %+v, mode reason %q", st.VRAM, st.ModeReason)
	}
	eight := 8.0
	big := h.submit(t, protocol.JobRequest{Kind: protocol.KindLLM, Model: "synthetic", VRAMGBEstimate: &eight, Input: protocol.Object(`{"prompt":"needs 8 GB"}`)})
	waitFor(t, 30*time.Second, "the hub to say why the 8 GB job waits", func() bool {
		info, err := h.api.Job(h.ctx(t, 5*time.Second), big)
		return err == nil && strings.Contains(info.Waiting, "needs 8 GB of VRAM") && strings.Contains(info.Waiting, "has a GPU")
	})
	if err := h.api.Cancel(h.ctx(t, 5*time.Second), big); err != nil {
		t.Fatalf("cancel the 8 GB job: %v", err)
	}
	if out, err := exec.Command("import", "-display", display, "-window", "root", shot).CombinedOutput(); err != nil {
		t.Fatalf("screenshot: %v: %s", err, out)
	}
	if colours = distinctColours(t, shot, 200); colours < 40 {
		t.Fatalf("screenshot %s looks blank: %d colours\nworker:\n%s", shot, colours, out())
	}
	t.Logf("window under Wine: %s (%d+ colours)", shot, colours)
}

// startWindow starts the exe with no arguments — the window and the tray, as a double-click
// starts it — on an Xvfb display of the test's own, and ends every process of the prefix when the
// test ends. It returns the display and a reader of the exe's output.
func (w *wine) startWindow(t *testing.T) (display string, out func() string) {
	t.Helper()
	display = startXvfb(t)
	gui := w.worker(context.Background())
	gui.Env = append(gui.Env, "DISPLAY="+display)
	out = w.outputFile(gui)
	if err := gui.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.killAll()
		_ = gui.Wait()
	})
	return display, out
}

// startXvfb starts a virtual display of the test's own and returns its name (":N").
func startXvfb(t *testing.T) string {
	t.Helper()
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("Xvfb", "-displayfd", "3", "-screen", "0", "1280x800x24", "-nolisten", "tcp")
	cmd.ExtraFiles = []*os.File{wr}
	if err := cmd.Start(); err != nil {
		t.Fatalf("Xvfb: %v", err)
	}
	wr.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		r.Close()
		got <- strings.TrimSpace(line)
	}()
	select {
	case n := <-got:
		if n == "" {
			t.Fatal("Xvfb did not say which display it took")
		}
		return ":" + n
	case <-time.After(30 * time.Second):
		t.Fatal("Xvfb did not start within 30 s")
	}
	return ""
}

// distinctColours counts the colours of the PNG at path, stopping at limit.
func distinctColours(t *testing.T, path string, limit int) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return countColours(img, limit)
}

func countColours(img image.Image, limit int) int {
	seen := map[[3]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, _ := img.At(x, y).RGBA()
			seen[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
			if len(seen) >= limit {
				return len(seen)
			}
		}
	}
	return len(seen)
}
