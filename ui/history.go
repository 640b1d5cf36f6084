// history.go: the Recent jobs panel — each finished or declined job as a row with its thumbnail,
// the creator's today and this week above them, and a job's details on a click: what, when, how
// long, the result's size, a larger image, speech to play. It must not know how the worker keeps
// its history: app.State carries it.

package ui

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"studioworker/app"
	"studioworker/protocol"
)

// tallyLine is "Today: 12 jobs, 1 h 4 min of GPU time (llm 8, image 4). This week: …" from the
// days' tallies; the week is the seven days up to now's.
func tallyLine(days []app.DayTally, now time.Time) string {
	today := now.Local().Format("2006-01-02")
	weekFrom := now.Local().AddDate(0, 0, -6).Format("2006-01-02")
	var day, week app.DayTally
	day.Jobs, week.Jobs = map[protocol.Kind]int{}, map[protocol.Kind]int{}
	var dayTime, weekTime time.Duration
	for _, d := range days {
		if d.Date < weekFrom || d.Date > today {
			continue
		}
		for k, n := range d.Jobs {
			week.Jobs[k] += n
			if d.Date == today {
				day.Jobs[k] += n
			}
		}
		weekTime += d.GPUTime()
		if d.Date == today {
			dayTime += d.GPUTime()
		}
	}
	return "Today: " + tallyWords(day.Jobs, dayTime) + ". This week: " + tallyWords(week.Jobs, weekTime) + "."
}

func tallyWords(jobs map[protocol.Kind]int, gpu time.Duration) string {
	total := 0
	kinds := make([]string, 0, len(jobs))
	for k, n := range jobs {
		total += n
		if n > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		}
	}
	if total == 0 {
		return "no jobs yet"
	}
	sort.Strings(kinds)
	jobsWord := "jobs"
	if total == 1 {
		jobsWord = "job"
	}
	return fmt.Sprintf("%d %s, %s of GPU time (%s)", total, jobsWord, humanDuration(gpu), strings.Join(kinds, ", "))
}

// recentRow is a finished or declined job: status, what, how long, a thumbnail for an image that
// a click shows larger, and Details.
type recentRow struct {
	job     app.RecentJob
	status  *widget.Icon
	title   *widget.Label
	sub     *widget.RichText
	when    *widget.RichText
	thumb   *tappableImage
	details *widget.Button
	file    string
	obj     fyne.CanvasObject
}

func newRecentRow(act jobActions) *recentRow {
	r := &recentRow{status: widget.NewIcon(theme.ConfirmIcon()), title: boldLabel(""), sub: subtle(""), when: subtle("")}
	r.sub.Truncation = fyne.TextTruncateEllipsis
	r.thumb = newTappableImage(func() { act.showJob(r.job) })
	r.thumb.Hide()
	r.details = widget.NewButtonWithIcon("", theme.InfoIcon(), func() { act.showJob(r.job) })
	r.details.Importance = widget.LowImportance
	r.obj = container.NewBorder(nil, nil, container.NewHBox(r.status, container.NewCenter(r.thumb)),
		container.NewHBox(container.NewCenter(r.when), r.details), container.NewVBox(r.title, r.sub))
	return r
}

func (r *recentRow) object() fyne.CanvasObject { return r.obj }

func (r *recentRow) set(j app.RecentJob, loc *time.Location) {
	r.job = j
	switch j.Status {
	case "done":
		r.status.SetResource(theme.NewSuccessThemedResource(theme.ConfirmIcon()))
	case "failed":
		r.status.SetResource(theme.NewErrorThemedResource(theme.ErrorIcon()))
	case "declined":
		r.status.SetResource(theme.NewDisabledResource(theme.NavigateBackIcon()))
	default:
		r.status.SetResource(theme.NewDisabledResource(theme.CancelIcon()))
	}
	setLabel(r.title, jobLabel(j.Kind, j.Model))
	if j.Status == "declined" {
		setSubtle(r.sub, "offer "+recentStatus(j))
	} else {
		setSubtle(r.sub, humanDuration(j.Duration)+" · "+recentStatus(j))
	}
	if !j.Ended.IsZero() {
		setSubtle(r.when, j.Ended.In(loc).Format("15:04:05"))
	}
	file := ""
	if j.Kind == protocol.KindImage && j.Status == "done" && thumbnailable(j.File) {
		file = j.File
	}
	if file != r.file {
		r.file = file
		if file == "" {
			r.thumb.Hide()
		} else {
			r.thumb.img.File = file
			r.thumb.Show()
			r.thumb.img.Refresh()
		}
	}
}

// tappableImage is an image a click acts on (a thumbnail that opens the details).
type tappableImage struct {
	widget.BaseWidget
	img *canvas.Image
	tap func()
}

func newTappableImage(tap func()) *tappableImage {
	t := &tappableImage{img: &canvas.Image{FillMode: canvas.ImageFillContain, ScaleMode: canvas.ImageScaleSmooth}, tap: tap}
	t.img.SetMinSize(fyne.NewSize(48, 48))
	t.ExtendBaseWidget(t)
	return t
}

func (t *tappableImage) Tapped(*fyne.PointEvent) { t.tap() }

func (t *tappableImage) CreateRenderer() fyne.WidgetRenderer { return widget.NewSimpleRenderer(t.img) }

// showJob opens a recent job's details.
func (w *Window) showJob(j app.RecentJob) {
	rows := [][2]string{
		{"Job", j.JobID},
		{"Kind", string(j.Kind)},
		{"Model", orDefault(j.Model, "—")},
		{"Outcome", recentStatus(j)},
	}
	loc := w.env.now().Location()
	if j.Status != "declined" {
		rows = append(rows,
			[2]string{"Started", j.Ended.Add(-j.Duration).In(loc).Format("Mon 2 Jan 15:04:05")},
			[2]string{"Took", humanDuration(j.Duration)})
	}
	rows = append(rows, [2]string{map[bool]string{true: "Declined", false: "Ended"}[j.Status == "declined"], j.Ended.In(loc).Format("Mon 2 Jan 15:04:05")})
	if j.Bytes > 0 {
		rows = append(rows, [2]string{"Result", byteSize(j.Bytes)})
	}
	form := container.New(layout2Columns{})
	for _, r := range rows {
		k := widget.NewLabelWithStyle(r[0], fyne.TextAlignTrailing, fyne.TextStyle{Bold: true})
		// Broken by hand: a wrapping label beside an image has no width to wrap to yet when
		// the dialog sizes itself, and comes out one letter wide.
		v := widget.NewLabel(breakLines(r[1], 56))
		v.Selectable = true
		form.Add(k)
		form.Add(v)
	}
	parts := []fyne.CanvasObject{form}
	var picture fyne.CanvasObject
	if pic := firstExisting(j.Preview, j.File); pic != "" && j.Kind == protocol.KindImage {
		img := canvas.NewImageFromFile(pic)
		img.FillMode = canvas.ImageFillContain
		img.SetMinSize(fyne.NewSize(360, 360)) // beside the facts, so the dialog fits a small window
		picture = img
	}
	if j.Media != "" && fileExists(j.Media) {
		media := j.Media
		parts = append(parts, widget.NewButtonWithIcon("Play", theme.MediaPlayIcon(), func() {
			u := &url.URL{Scheme: "file", Path: filepath.ToSlash(media)}
			if !strings.HasPrefix(u.Path, "/") { // C:/… on Windows
				u.Path = "/" + u.Path
			}
			if err := w.app.OpenURL(u); err != nil {
				w.header.showError("Could not play the result: " + err.Error())
			}
		}))
	}
	var content fyne.CanvasObject = container.NewVBox(parts...)
	if picture != nil {
		content = container.NewHBox(content, picture)
	}
	d := dialog.NewCustom("Job details", "Close", content, w.win)
	d.Show()
}

// layout2Columns lays out label/value pairs: the labels as wide as the widest, the values the rest.
type layout2Columns struct{}

func (layout2Columns) MinSize(objs []fyne.CanvasObject) fyne.Size {
	kw, vw, h := float32(0), float32(0), float32(0)
	for i := 0; i+1 < len(objs); i += 2 {
		k, v := objs[i].MinSize(), objs[i+1].MinSize()
		kw, vw = max(kw, k.Width), max(vw, v.Width)
		h += max(k.Height, v.Height)
	}
	return fyne.NewSize(kw+vw+theme.Padding(), h)
}

func (layout2Columns) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	kw := float32(0)
	for i := 0; i+1 < len(objs); i += 2 {
		kw = max(kw, objs[i].MinSize().Width)
	}
	y := float32(0)
	for i := 0; i+1 < len(objs); i += 2 {
		vw := max(0, size.Width-kw-theme.Padding())
		h := max(objs[i].MinSize().Height, objs[i+1].MinSize().Height)
		objs[i].Move(fyne.NewPos(0, y))
		objs[i].Resize(fyne.NewSize(kw, h))
		objs[i+1].Move(fyne.NewPos(kw+theme.Padding(), y))
		objs[i+1].Resize(fyne.NewSize(vw, h))
		y += h
	}
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

func firstExisting(paths ...string) string {
	for _, p := range paths {
		if p != "" && fileExists(p) {
			return p
		}
	}
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// breakLines breaks text at spaces into lines of at most width runes (a longer word stays whole).
func breakLines(text string, width int) string {
	var out, line strings.Builder
	n := 0
	for _, word := range strings.Fields(text) {
		wl := len([]rune(word))
		if n > 0 && n+1+wl > width {
			out.WriteString(line.String())
			out.WriteByte('\n')
			line.Reset()
			n = 0
		}
		if n > 0 {
			line.WriteByte(' ')
			n++
		}
		line.WriteString(word)
		n += wl
	}
	out.WriteString(line.String())
	return out.String()
}
