// widgets.go: the window's own widgets — the VRAM bar and the GPU sparkline. They draw what they
// are given and must not know the State.

package ui

import (
	"image"
	"image/color"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"studioworker/app"
)

// sparkWindow is the span a sparkline shows.
const sparkWindow = 5 * time.Minute

// vramBar is a horizontal bar of used VRAM over the total, with the user's cap marked.
type vramBar struct {
	widget.BaseWidget
	usedMB, totalMB, capMB int64
}

func newVRAMBar() *vramBar {
	b := &vramBar{}
	b.ExtendBaseWidget(b)
	return b
}

// set changes the figures; it must run on the UI thread.
func (b *vramBar) set(used, total, capMB int64) {
	if b.usedMB == used && b.totalMB == total && b.capMB == capMB {
		return
	}
	b.usedMB, b.totalMB, b.capMB = used, total, capMB
	b.Refresh()
}

func (b *vramBar) CreateRenderer() fyne.WidgetRenderer {
	r := &vramBarRenderer{bar: b, bg: canvas.NewRectangle(color.Transparent), used: canvas.NewRectangle(color.Transparent),
		capMark: canvas.NewRectangle(color.Transparent)}
	r.bg.CornerRadius, r.used.CornerRadius = 4, 4
	r.Refresh()
	return r
}

type vramBarRenderer struct {
	bar               *vramBar
	bg, used, capMark *canvas.Rectangle
	lastSize          fyne.Size
}

func (r *vramBarRenderer) Layout(size fyne.Size) {
	r.lastSize = size
	r.bg.Resize(size)
	r.bg.Move(fyne.NewPos(0, 0))
	b := r.bar
	frac := func(mb int64) float32 {
		if b.totalMB <= 0 {
			return 0
		}
		f := float32(mb) / float32(b.totalMB)
		return max(0, min(1, f))
	}
	r.used.Resize(fyne.NewSize(size.Width*frac(b.usedMB), size.Height))
	r.used.Move(fyne.NewPos(0, 0))
	if b.capMB > 0 && b.capMB < b.totalMB {
		r.capMark.Show()
		x := size.Width * frac(b.capMB)
		r.capMark.Resize(fyne.NewSize(3, size.Height+6))
		r.capMark.Move(fyne.NewPos(x-1.5, -3))
	} else {
		r.capMark.Hide()
	}
}

func (r *vramBarRenderer) MinSize() fyne.Size { return fyne.NewSize(120, 14) }

func (r *vramBarRenderer) Refresh() {
	r.bg.FillColor = theme.Color(theme.ColorNameInputBackground)
	r.bg.StrokeColor = theme.Color(theme.ColorNameInputBorder)
	r.bg.StrokeWidth = 1
	r.used.FillColor = theme.Color(theme.ColorNamePrimary)
	if b := r.bar; b.capMB > 0 && b.usedMB > b.capMB {
		// Over the cap: the worker takes no jobs that need more; say so in the bar's colour.
		r.used.FillColor = theme.Color(theme.ColorNameWarning)
	}
	r.capMark.FillColor = theme.Color(theme.ColorNameForeground)
	r.Layout(r.lastSize)
	r.bg.Refresh()
	r.used.Refresh()
	r.capMark.Refresh()
}

func (r *vramBarRenderer) Objects() []fyne.CanvasObject {
	return []fyne.CanvasObject{r.bg, r.used, r.capMark}
}

func (r *vramBarRenderer) Destroy() {}

// sparkline draws a GPU's recent VRAM use (a filled area) and utilization (a line).
type sparkline struct {
	widget.BaseWidget
	samples []app.GPUSample
	totalMB int64
}

func newSparkline() *sparkline {
	s := &sparkline{}
	s.ExtendBaseWidget(s)
	return s
}

// set replaces the history; it must run on the UI thread.
func (s *sparkline) set(samples []app.GPUSample, totalMB int64) {
	s.samples, s.totalMB = samples, totalMB
	s.Refresh()
}

func (s *sparkline) CreateRenderer() fyne.WidgetRenderer {
	bg := canvas.NewRectangle(color.Transparent)
	bg.CornerRadius = 4
	r := &sparkRenderer{s: s, bg: bg}
	r.raster = canvas.NewRaster(r.draw)
	r.Refresh()
	return r
}

type sparkRenderer struct {
	s      *sparkline
	bg     *canvas.Rectangle
	raster *canvas.Raster
}

func (r *sparkRenderer) Layout(size fyne.Size) {
	r.bg.Resize(size)
	r.raster.Resize(size)
}

func (r *sparkRenderer) MinSize() fyne.Size { return fyne.NewSize(240, 56) }

func (r *sparkRenderer) Refresh() {
	r.bg.FillColor = theme.Color(theme.ColorNameInputBackground)
	r.bg.Refresh()
	r.raster.Refresh()
}

func (r *sparkRenderer) Objects() []fyne.CanvasObject { return []fyne.CanvasObject{r.bg, r.raster} }

func (r *sparkRenderer) Destroy() {}

func (r *sparkRenderer) draw(w, h int) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	drawSpark(img, r.s.samples, r.s.totalMB, theme.Color(theme.ColorNamePrimary), theme.Color(theme.ColorNameSuccess))
	return img
}

// drawSpark plots samples onto img: VRAM used over total as a translucent area with an edge, and
// utilization as a line. The time axis is the last five minutes ending at the newest sample, so a
// history shorter than that fills the right-hand part.
func drawSpark(img *image.RGBA, samples []app.GPUSample, totalMB int64, vramColor, utilColor color.Color) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w < 2 || h < 4 || len(samples) == 0 {
		return
	}
	end := samples[len(samples)-1].Time
	start := end.Add(-sparkWindow)
	area := withAlpha(vramColor, 0x90)
	top := 2
	plotH := h - 2*top
	yOf := func(f float64) int {
		f = max(0, min(1, f))
		return top + plotH - int(f*float64(plotH)+0.5)
	}
	prevUtil := -1
	i := 0
	for x := range w {
		t := start.Add(time.Duration(float64(sparkWindow) * float64(x) / float64(w-1)))
		for i+1 < len(samples) && !samples[i+1].Time.After(t) {
			i++
		}
		if samples[i].Time.After(t) && i == 0 {
			continue // before the first sample: nothing known
		}
		a := samples[i]
		vram, util := float64(a.UsedMB), float64(a.UtilizationPct)
		if i+1 < len(samples) {
			n := samples[i+1]
			if span := n.Time.Sub(a.Time); span > 0 {
				k := float64(t.Sub(a.Time)) / float64(span)
				vram += k * (float64(n.UsedMB) - vram)
				util += k * (float64(n.UtilizationPct) - util)
			}
		}
		if totalMB > 0 {
			yv := yOf(vram / float64(totalMB))
			for y := yv; y < top+plotH; y++ {
				img.Set(x, y, area)
			}
			img.Set(x, yv, vramColor)
			img.Set(x, yv+1, vramColor) // a crisp edge over the area
		}
		yu := yOf(util / 100)
		from, to := yu, yu
		if prevUtil >= 0 {
			from, to = min(prevUtil, yu), max(prevUtil, yu)
		}
		for y := from; y <= to; y++ {
			img.Set(x, y, utilColor)
			if y+1 < h {
				img.Set(x, y+1, utilColor) // two pixels thick reads better at small sizes
			}
		}
		prevUtil = yu
	}
}

func withAlpha(c color.Color, a uint8) color.Color {
	r, g, b, _ := c.RGBA()
	// NRGBA: the area colour is the theme colour made translucent, not darkened.
	return color.NRGBA{R: uint8(r >> 8), G: uint8(g >> 8), B: uint8(b >> 8), A: a}
}

// dot is the coloured connection dot.
func toneColor(t tone) color.Color {
	switch t {
	case toneGood:
		return theme.Color(theme.ColorNameSuccess)
	case toneWait:
		return theme.Color(theme.ColorNameWarning)
	case toneBad:
		return theme.Color(theme.ColorNameError)
	}
	return theme.Color(theme.ColorNameDisabled)
}

// legendSwatch is a small square of a series' colour for a legend.
func legendSwatch(c color.Color) fyne.CanvasObject {
	r := canvas.NewRectangle(c)
	r.CornerRadius = 2
	r.SetMinSize(fyne.NewSize(10, 10))
	return r
}

// setLabel changes a label's text only when it changes: Fyne's SetText refreshes (and the
// window repaints) even for the same text, and the clock and each State set most labels again
// unchanged — once a second, an open window idle on its dashboard repainted for nothing.
func setLabel(l *widget.Label, text string) {
	if l.Text != text {
		l.SetText(text)
	}
}

// setButtonText is setLabel for a button.
func setButtonText(b *widget.Button, text string) {
	if b.Text != text {
		b.SetText(text)
	}
}
