// history_test.go: the Recent panel — today and this week, declined offers, and a job's details
// with its larger image or its speech to play (issue 18 finding 9).

package ui

import (
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/test"

	"studioworker/app"
	"studioworker/protocol"
)

func TestTallyLine(t *testing.T) {
	now := time.Date(2026, 12, 4, 15, 0, 0, 0, time.Local)
	day := func(date string, llm, image int, gpu time.Duration) app.DayTally {
		return app.DayTally{Date: date, Jobs: map[protocol.Kind]int{protocol.KindLLM: llm, protocol.KindImage: image},
			GPUMS: map[protocol.Kind]int64{protocol.KindLLM: gpu.Milliseconds()}}
	}
	tests := []struct {
		name string
		days []app.DayTally
		want string
	}{
		{"nothing", nil, "Today: no jobs yet. This week: no jobs yet."},
		{"today and earlier", []app.DayTally{day("2026-11-20", 9, 9, time.Hour), day("2026-11-30", 2, 0, 10*time.Minute), day("2026-12-04", 8, 4, 64*time.Minute)},
			"Today: 12 jobs, 1 h 4 min of GPU time (image 4, llm 8). This week: 14 jobs, 1 h 14 min of GPU time (image 4, llm 10)."},
		{"one job yesterday", []app.DayTally{day("2026-12-03", 1, 0, 3*time.Second)}, "Today: no jobs yet. This week: 1 job, 3.0 s of GPU time (llm 1)."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tallyLine(tt.days, now); got != tt.want {
				t.Errorf("tallyLine = %q\nwant        %q", got, tt.want)
			}
		})
	}
}

func writePNG(t *testing.T, path string, w, h int) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for x := range w {
		img.Set(x, h/2, color.RGBA{200, 30, 30, 255})
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}

func TestRecentJobsDetailsDeclinesAndTally(t *testing.T) {
	dir := t.TempDir()
	thumb, preview, speech := filepath.Join(dir, "j1.png"), filepath.Join(dir, "j1-preview.png"), filepath.Join(dir, "j2.wav")
	writePNG(t, thumb, 96, 48)
	writePNG(t, preview, 640, 320)
	if err := os.WriteFile(speech, []byte("RIFF....WAVE"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := idleState()
	s.Recent = []app.RecentJob{
		{JobID: "j3", Kind: protocol.KindLLM, Model: "llama", Status: "declined", Error: "declined by you", Ended: t0},
		{JobID: "j2", Kind: protocol.KindTTS, Model: "kokoro", Status: "done", Duration: 2 * time.Second, Ended: t0, Media: speech, Bytes: 48000},
		{JobID: "j1", Kind: protocol.KindImage, Model: "sdxl", Status: "done", Duration: 40 * time.Second, Ended: t0, File: thumb, Preview: preview, Bytes: 3 << 20},
	}
	s.Days = []app.DayTally{{Date: t0.Local().Format("2006-01-02"), Jobs: map[protocol.Kind]int{protocol.KindImage: 1, protocol.KindTTS: 1},
		GPUMS: map[protocol.Kind]int64{protocol.KindImage: 40000, protocol.KindTTS: 2000}}}
	h := newHarness(t, s)
	h.ui.do(func() {
		d := h.w.dash
		if got := d.tally.Text; !strings.HasPrefix(got, "Today: 2 jobs, 42 s of GPU time (image 1, tts 1).") {
			t.Errorf("tally %q", got)
		}
		if got := subtleText(d.recent.get("j3/" + t0.String()).sub); got != "offer declined by you" {
			t.Errorf("declined row %q", got)
		}
		// A click on the thumbnail shows the job with its larger image.
		img := d.recent.get("j1/" + t0.String())
		test.Tap(img.thumb)
		top := h.w.win.Canvas().Overlays().Top()
		if top == nil {
			t.Fatal("a click on the thumbnail showed nothing")
		}
		texts := strings.Join(shownTexts(top), " ")
		for _, want := range []string{"Job details", "image", "sdxl", "done", "40 s", "3.0 MB"} {
			if !strings.Contains(texts, want) {
				t.Errorf("details lack %q: %s", want, texts)
			}
		}
		found := false
		walk(top, func(o fyne.CanvasObject) bool {
			if ci, ok := o.(*canvas.Image); ok && ci.File == preview {
				found = true
			}
			return true
		})
		if !found {
			t.Error("the details do not show the larger preview")
		}
		test.Tap(findButton(top, "Close"))
		// Speech: Details, then Play opens it with the desktop's player.
		test.Tap(d.recent.get("j2/" + t0.String()).details)
		test.Tap(findButton(h.w.win.Canvas().Overlays().Top(), "Play"))
	})
	if got := h.app.Opened(); len(got) != 1 || !strings.HasPrefix(got[0], "file://") || !strings.HasSuffix(got[0], "j2.wav") {
		t.Fatalf("Play opened %q", got)
	}
}

func TestBreakLines(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"short", "short"},
		{"the backend answered with an error that is rather long indeed", "the backend answered\nwith an error that is\nrather long indeed"},
		{"averyveryverylongwordthatdoesnotfit x", "averyveryverylongwordthatdoesnotfit\nx"},
	} {
		if got := breakLines(tt.in, 22); got != tt.want {
			t.Errorf("breakLines(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
