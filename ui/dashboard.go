// dashboard.go: the Dashboard tab — warnings, the GPU cards, the running jobs with Cancel, the
// offers with Accept and Decline, and the Recent panel's frame (history.go fills it). Rows are kept
// by id across states. It must not know how the worker decides or runs a job.

package ui

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"studioworker/app"
	"studioworker/protocol"
)

// maxRecentShown is how many finished jobs the dashboard lists; the State keeps more.
const maxRecentShown = 8

// jobActions is what the dashboard's buttons do; the Window runs them on a goroutine.
type jobActions interface {
	cancelJob(id string)
	acceptOffer(id string)
	declineOffer(id string)
	showJob(j app.RecentJob) // a recent job's details (history.go)
}

// dashboard shows the GPUs, the running jobs, the pending offers and the recent jobs. Rows are
// kept by id across states, so a button keeps its hover and a thumbnail is decoded once.
type dashboard struct {
	act jobActions

	warnings *fyne.Container
	gpus     keyedRows[*gpuCard]
	gpuBox   *fyne.Container

	runningEmpty *widget.RichText
	running      keyedRows[*runningRow]

	offersHeading *widget.Label
	offersEmpty   *widget.RichText
	offers        keyedRows[*offerRow]

	recentHeading *widget.Label
	tally         *widget.Label // today and this week (history.go)
	recentEmpty   *widget.RichText
	recent        keyedRows[*recentRow]

	content fyne.CanvasObject
}

func newDashboard(act jobActions) *dashboard {
	d := &dashboard{act: act}
	d.warnings = container.NewVBox()
	d.gpuBox = container.NewVBox()
	d.gpus.box = d.gpuBox
	d.running.box = container.NewVBox()
	d.offers.box = container.NewVBox()
	d.recent.box = container.NewVBox()
	d.runningEmpty = subtle("Nothing running.")
	d.offersHeading = heading("Offers")
	d.offersEmpty = subtle("No offers waiting.")
	d.recentHeading = heading("Recent jobs")
	d.recentEmpty = subtle("No jobs finished yet.")
	d.tally = widget.NewLabel("")
	d.tally.Wrapping = fyne.TextWrapWord

	body := container.NewVBox(
		d.warnings,
		d.gpuBox,
		panel(heading("Running"), d.runningEmpty, d.running.box),
		panel(d.offersHeading, d.offersEmpty, d.offers.box),
		panel(d.recentHeading, d.tally, d.recentEmpty, d.recent.box),
	)
	d.content = container.NewVScroll(container.NewPadded(body))
	return d
}

// update shows a state; now drives the elapsed times and countdowns.
func (d *dashboard) update(s app.State, now time.Time) {
	d.updateWarnings(s)
	d.updateGPUs(s)

	ids := make([]string, len(s.Running))
	for i, j := range s.Running {
		ids[i] = j.JobID
	}
	d.running.sync(ids, func(id string) *runningRow { return newRunningRow(id, d.act) })
	for _, j := range s.Running {
		d.running.get(j.JobID).set(j, now)
	}
	showIf(d.runningEmpty, len(s.Running) == 0)
	switch {
	case s.Mode == protocol.StatePaused:
		setSubtle(d.runningEmpty, "Nothing running: paused.")
	case s.Mode == protocol.StateYielding:
		setSubtle(d.runningEmpty, "Nothing running: your programs have the GPU.")
	case s.Conn.State != connConnected:
		setSubtle(d.runningEmpty, "Nothing running.")
	default:
		setSubtle(d.runningEmpty, "Nothing running — waiting for the Studio to offer a job.")
	}

	ids = make([]string, len(s.Offers))
	for i, o := range s.Offers {
		ids[i] = o.JobID
	}
	waiting := waitingOffers(s)
	d.offers.sync(ids, func(id string) *offerRow { return newOfferRow(id, d.act) })
	for _, o := range s.Offers {
		d.offers.get(o.JobID).set(o, now)
	}
	showIf(d.offersEmpty, len(s.Offers) == 0)
	switch {
	case waiting > 0:
		setLabel(d.offersHeading, fmt.Sprintf("Offers waiting for you (%d) — auto-accept is off", waiting))
	case s.AutoAccept:
		setLabel(d.offersHeading, "Offers — accepted automatically when they fit")
	default:
		setLabel(d.offersHeading, "Offers — auto-accept is off: you choose each one")
	}

	recent := s.Recent[:min(len(s.Recent), maxRecentShown)]
	ids = make([]string, len(recent))
	for i, r := range recent {
		ids[i] = r.JobID + "/" + r.Ended.String() // a job id may end twice (cancelled, then retried)
	}
	d.recent.sync(ids, func(string) *recentRow { return newRecentRow(d.act) })
	for i, r := range recent {
		d.recent.get(ids[i]).set(r, now.Location())
	}
	showIf(d.recentEmpty, len(recent) == 0)
	c := s.Counters
	setLabel(d.recentHeading, fmt.Sprintf("Recent jobs — %d done, %d failed, %d cancelled since start", c.Done, c.Failed, c.Cancelled))
	setLabel(d.tally, tallyLine(s.Days, now))
}

// tick refreshes what moves with the clock alone.
func (d *dashboard) tick(now time.Time) {
	for _, r := range d.running.byID {
		r.tick(now)
	}
	for _, o := range d.offers.byID {
		o.tick(now)
	}
}

func (d *dashboard) updateWarnings(s app.State) {
	var lines []string
	if s.GPU.Problem != "" && len(s.GPU.Cards) > 0 {
		lines = append(lines, s.GPU.Problem)
	}
	kinds := make([]string, 0, len(s.EngineDown))
	for k := range s.EngineDown {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		lines = append(lines, backendDownLine(s, k))
	}
	objs := make([]fyne.CanvasObject, len(lines))
	for i, l := range lines {
		lbl := widget.NewLabel(l)
		lbl.Importance = widget.WarningImportance
		lbl.Wrapping = fyne.TextWrapWord
		objs[i] = container.NewBorder(nil, nil, widget.NewIcon(theme.WarningIcon()), nil, lbl)
	}
	if !sameLabels(d.warnings.Objects, lines) {
		d.warnings.Objects = objs
		d.warnings.Refresh()
	}
}

// sameLabels reports whether the warning rows already show lines, to avoid re-laying them out on
// every GPU sample.
func sameLabels(objs []fyne.CanvasObject, lines []string) bool {
	if len(objs) != len(lines) {
		return false
	}
	for i, o := range objs {
		b, ok := o.(*fyne.Container)
		if !ok || len(b.Objects) == 0 {
			return false
		}
		l, ok := b.Objects[0].(*widget.Label)
		if !ok || l.Text != lines[i] {
			return false
		}
	}
	return true
}

func (d *dashboard) updateGPUs(s app.State) {
	g := s.GPU
	if len(g.Cards) == 0 {
		// Never a blank bar: say why there is nothing to show.
		d.gpus.sync([]string{"none"}, func(string) *gpuCard { return newGPUCard() })
		// One claim in the title, the reason under it: "No NVIDIA GPU found" over "No NVIDIA
		// driver found" read as two different troubles (finding 8).
		why := g.Problem
		if why == "" && g.Source == "nvml" {
			why = "The NVIDIA driver runs but reports no GPU: VRAM checks are off."
		}
		d.gpus.get("none").setNone("No GPU seen", orDefault(why, "No NVIDIA driver found: VRAM checks are off."))
		return
	}
	ids := make([]string, len(g.Cards))
	for i, c := range g.Cards {
		ids[i] = fmt.Sprint(c.Index)
	}
	d.gpus.sync(ids, func(string) *gpuCard { return newGPUCard() })
	for i, c := range g.Cards {
		d.gpus.get(ids[i]).set(c, g)
	}
}

// gpuCard is one GPU: its name and reading, the VRAM bar with the cap, and the sparkline.
type gpuCard struct {
	title   *widget.Label
	reading *widget.Label
	body    *fyne.Container
	bar     *vramBar
	barName *widget.Label // "VRAM", or "Unified memory" for a GPU without VRAM of its own
	barText *widget.Label
	spark   *sparkline
	legend  *widget.RichText // the bar's colour in the sparkline's legend, named the same way
	note    *widget.Label
	held    *widget.RichText // what the backends say of this card's VRAM (backendVRAMLine)
	card    *widget.Card
}

func newGPUCard() *gpuCard {
	c := &gpuCard{title: boldLabel(""), reading: widget.NewLabel(""), bar: newVRAMBar(), barName: widget.NewLabel("VRAM"),
		barText: widget.NewLabel(""), spark: newSparkline(), legend: smallLabel("VRAM"), note: widget.NewLabel(""), held: subtle("")}
	c.title.Truncation = fyne.TextTruncateEllipsis
	c.note.Importance = widget.WarningImportance
	c.note.Wrapping = fyne.TextWrapWord
	c.note.Hide()
	legend := container.NewHBox(
		container.NewCenter(legendSwatch(theme.Color(theme.ColorNamePrimary))), c.legend,
		container.NewCenter(legendSwatch(theme.Color(theme.ColorNameSuccess))), smallLabel("utilization · last 5 minutes"),
	)
	c.held.Hide()
	c.body = container.NewVBox(
		container.NewBorder(nil, nil, c.barName, c.barText, container.New(fillCenterV{}, c.bar)),
		c.held,
		c.spark,
		legend,
	)
	c.card = widget.NewCard("", "", container.NewVBox(
		container.NewBorder(nil, nil, widget.NewIcon(theme.ComputerIcon()), c.reading, c.title),
		c.note,
		c.body,
	))
	return c
}

func (c *gpuCard) object() fyne.CanvasObject { return c.card }

// setNone shows that there is no GPU to show, and why: never a blank bar.
func (c *gpuCard) setNone(title, why string) {
	setLabel(c.title, title)
	setLabel(c.reading, "")
	setLabel(c.note, why)
	c.note.Show()
	c.body.Hide()
}

func (c *gpuCard) set(g app.GPUCard, st app.GPUState) {
	title := fmt.Sprintf("GPU %d · %s", g.Index, orDefault(g.Name, "unknown GPU"))
	if st.Simulated {
		title += " (simulated)"
	}
	setLabel(c.title, title)
	setLabel(c.reading, gpuReading(g))
	// Apple silicon has no VRAM: its bar is the share of the Mac's memory that jobs may use, and
	// calling that VRAM would have a creator look for a graphics card that is not there.
	barName, legend := "VRAM", "VRAM"
	if g.UnifiedMemory {
		barName, legend = "Unified memory", "unified memory"
	}
	setLabel(c.barName, barName)
	setSubtle(c.legend, legend)
	capMB := int64(st.CapGB * 1024)
	c.bar.set(g.UsedMB, g.TotalMB, capMB)
	text := gb(g.UsedMB) + " / " + gb(g.TotalMB) + " GB"
	if capMB > 0 {
		text += fmt.Sprintf(" · cap %s GB", strings.TrimSuffix(fmt.Sprintf("%.1f", st.CapGB), ".0"))
	} else {
		text += " · no cap"
	}
	setLabel(c.barText, text)
	line := backendVRAMLine(st.Backends, g.Index, len(st.Cards))
	setSubtle(c.held, line)
	showIf(c.held, line != "")
	c.spark.set(g.History, g.TotalMB)
	switch {
	case st.Simulated:
		setLabel(c.note, "Simulated GPU: these figures are made up for the demo; no real GPU is used.")
		c.note.Show()
	case g.UnifiedMemory && g.TotalMB <= 0:
		setLabel(c.note, "The unified memory reserve leaves nothing of this Mac's memory for jobs (gpu.unified_memory_reserve_mb).")
		c.note.Show()
	case g.TotalMB <= 0:
		setLabel(c.note, "This GPU reports no memory figures: VRAM checks are off for it.")
		c.note.Show()
	case g.ProcessMemoryUnknown:
		setLabel(c.note, "The driver does not report each program's VRAM (Windows WDDM): the worker steps aside for any graphics program not on the ignore list.")
		c.note.Show()
	default:
		c.note.Hide()
	}
	c.body.Show()
}

// runningRow is a running job: what, how long, how far, and Cancel.
type runningRow struct {
	started time.Time
	title   *widget.Label
	sub     *widget.RichText
	elapsed *widget.Label
	icon    *widget.Icon
	bar     *widget.ProgressBar
	cancel  *widget.Button
	obj     fyne.CanvasObject
}

func newRunningRow(id string, act jobActions) *runningRow {
	r := &runningRow{title: boldLabel(""), sub: subtle(""), elapsed: widget.NewLabel(""), icon: widget.NewIcon(theme.FileIcon()),
		bar: widget.NewProgressBar()}
	r.sub.Truncation = fyne.TextTruncateEllipsis
	r.cancel = widget.NewButtonWithIcon("Cancel", theme.CancelIcon(), func() { act.cancelJob(id) })
	right := container.NewCenter(container.NewHBox(r.elapsed, container.New(&fixedWidth{width: 200}, r.bar), r.cancel))
	r.obj = container.NewBorder(nil, nil, r.icon, right, container.NewVBox(r.title, r.sub))
	return r
}

func (r *runningRow) object() fyne.CanvasObject { return r.obj }

func (r *runningRow) set(j app.RunningJob, now time.Time) {
	r.started = j.Started
	r.icon.SetResource(kindIcon(j.Kind))
	setLabel(r.title, jobLabel(j.Kind, j.Model))
	sub := "job " + shortID(j.JobID)
	if j.Message != "" {
		sub += " · " + j.Message
	}
	setSubtle(r.sub, sub)
	r.bar.SetValue(max(0, min(1, j.Fraction)))
	r.tick(now)
}

func (r *runningRow) tick(now time.Time) {
	if r.started.IsZero() {
		setLabel(r.elapsed, "")
		return
	}
	setLabel(r.elapsed, clock(now.Sub(r.started))+" elapsed")
}

// offerRow is an offer: what, how much VRAM, how long it waits, and Accept/Decline when it waits
// for the user.
type offerRow struct {
	expires   time.Time
	title     *widget.Label
	sub       *widget.RichText
	countdown *widget.Label
	icon      *widget.Icon
	accept    *widget.Button
	decline   *widget.Button
	deciding  *widget.RichText
	obj       fyne.CanvasObject
}

func newOfferRow(id string, act jobActions) *offerRow {
	r := &offerRow{title: boldLabel(""), sub: subtle(""), countdown: widget.NewLabel(""), icon: widget.NewIcon(theme.FileIcon()),
		deciding: subtle("deciding…")}
	r.accept = widget.NewButtonWithIcon("Accept", theme.ConfirmIcon(), func() { act.acceptOffer(id) })
	r.accept.Importance = widget.HighImportance
	r.decline = widget.NewButtonWithIcon("Decline", theme.CancelIcon(), func() { act.declineOffer(id) })
	right := container.NewCenter(container.NewHBox(r.countdown, r.deciding, r.accept, r.decline))
	r.obj = container.NewBorder(nil, nil, r.icon, right, container.NewVBox(r.title, r.sub))
	return r
}

func (r *offerRow) object() fyne.CanvasObject { return r.obj }

func (r *offerRow) set(o app.PendingOffer, now time.Time) {
	r.expires = o.ExpiresAt
	r.icon.SetResource(kindIcon(o.Kind))
	setLabel(r.title, jobLabel(o.Kind, o.Model))
	setSubtle(r.sub, vramNeed(o.VRAMGBEstimate)+" · job "+shortID(o.JobID))
	showIf(r.accept, o.WaitingForUser)
	showIf(r.decline, o.WaitingForUser)
	showIf(r.deciding, !o.WaitingForUser)
	r.tick(now)
}

func (r *offerRow) tick(now time.Time) { setLabel(r.countdown, expiresIn(r.expires, now)) }

// thumbnailable reports whether Fyne can decode the result file for a thumbnail.
func thumbnailable(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".png", ".jpg", ".jpeg":
		return true
	}
	return false
}

// kindIcon is the icon of a job kind.
func kindIcon(k protocol.Kind) fyne.Resource {
	switch k {
	case protocol.KindLLM:
		return theme.MailComposeIcon()
	case protocol.KindImage:
		return theme.MediaPhotoIcon()
	case protocol.KindTTS:
		return theme.VolumeUpIcon()
	case protocol.KindSTT:
		return theme.MediaRecordIcon()
	case protocol.KindVideo:
		return theme.MediaVideoIcon()
	}
	return theme.FileIcon()
}

// keyedRows keeps one row per id in a box, in the order of the ids, reusing rows across updates.
type keyedRows[R interface{ object() fyne.CanvasObject }] struct {
	box   *fyne.Container
	byID  map[string]R
	order []string
}

// sync makes the box show one row per id, creating the missing rows; the caller then sets them.
func (k *keyedRows[R]) sync(ids []string, create func(id string) R) {
	next := make(map[string]R, len(ids))
	objs := make([]fyne.CanvasObject, 0, len(ids))
	for _, id := range ids {
		r, ok := k.byID[id]
		if !ok {
			r = create(id)
		}
		next[id] = r
		objs = append(objs, r.object())
	}
	k.byID = next
	if !slices.Equal(ids, k.order) {
		k.order = slices.Clone(ids)
		k.box.Objects = objs
		k.box.Refresh()
	}
}

func (k *keyedRows[R]) get(id string) R { return k.byID[id] }

// fixedWidth lays out its objects at a fixed minimum width, full height, centred vertically.
type fixedWidth struct{ width float32 }

func (f *fixedWidth) MinSize(objs []fyne.CanvasObject) fyne.Size {
	s := fyne.NewSize(f.width, 0)
	for _, o := range objs {
		s = s.Max(fyne.NewSize(0, o.MinSize().Height))
	}
	return s
}

func (f *fixedWidth) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	for _, o := range objs {
		h := o.MinSize().Height
		o.Resize(fyne.NewSize(size.Width, h))
		o.Move(fyne.NewPos(0, (size.Height-h)/2))
	}
}

// fillCenterV stretches its objects across the width at their own height, centred vertically.
type fillCenterV struct{}

func (fillCenterV) MinSize(objs []fyne.CanvasObject) fyne.Size {
	var s fyne.Size
	for _, o := range objs {
		s = s.Max(o.MinSize())
	}
	return s
}

func (fillCenterV) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	for _, o := range objs {
		h := o.MinSize().Height
		o.Resize(fyne.NewSize(size.Width, h))
		o.Move(fyne.NewPos(0, (size.Height-h)/2))
	}
}

// panel groups a section on a card, so the dashboard reads as blocks.
func panel(objs ...fyne.CanvasObject) fyne.CanvasObject {
	return widget.NewCard("", "", container.NewVBox(objs...))
}

func smallLabel(text string) *widget.RichText {
	return widget.NewRichText(&widget.TextSegment{Text: text, Style: widget.RichTextStyle{
		Inline: true, ColorName: theme.ColorNamePlaceHolder, SizeName: theme.SizeNameCaptionText}})
}

func heading(text string) *widget.Label {
	l := widget.NewLabelWithStyle(text, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	l.SizeName = theme.SizeNameSubHeadingText
	return l
}

func boldLabel(text string) *widget.Label {
	return widget.NewLabelWithStyle(text, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
}

// subtle is secondary text: quieter than a label but still easy to read (a label's low importance
// is the disabled colour, too dim for text a person needs).
func subtle(text string) *widget.RichText {
	return widget.NewRichText(&widget.TextSegment{Text: text, Style: widget.RichTextStyle{
		Inline: true, ColorName: theme.ColorNamePlaceHolder, SizeName: theme.SizeNameText}})
}

func setSubtle(rt *widget.RichText, text string) {
	seg := rt.Segments[0].(*widget.TextSegment)
	if seg.Text != text {
		seg.Text = text
		rt.Refresh()
	}
}

// subtleText returns what a subtle text shows.
func subtleText(rt *widget.RichText) string { return rt.Segments[0].(*widget.TextSegment).Text }

// showIf shows or hides an object, touching it only on change.
func showIf(o fyne.CanvasObject, visible bool) {
	if visible && !o.Visible() {
		o.Show()
	} else if !visible && o.Visible() {
		o.Hide()
	}
}
