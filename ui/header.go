// header.go: the band above the tabs — the connection, what the worker does, Pause or Resume,
// Quit after this job, auto-accept, and the error banner and note. It must not know the tabs.

package ui

import (
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"studioworker/app"
)

// headerActions is what the header's controls do.
type headerActions interface {
	togglePause()
	quitAfterJobs()
	quitAfterState() quitAfter
	setAutoAccept(on bool)
	reconnect()
	registerAgain()
}

// header is always visible above the tabs: the connection, what the worker does, and the controls
// that make it stop.
type header struct {
	dot       *canvas.Circle
	title     *widget.Label
	mode      *widget.Label
	vram      *widget.Label // which jobs cannot reach this computer for want of VRAM, when that is so
	detail    *widget.RichText
	fix       *widget.Button
	fixBox    *fyne.Container
	fixAction string
	pause     *widget.Button
	drain     *widget.Button // "Quit after this job" (quitafter.go)
	auto      *widget.Check
	act       headerActions
	banner    *widget.Label
	bannerBox *fyne.Container
	note      *widget.Label
	noteBox   *fyne.Container
	content   fyne.CanvasObject
}

func newHeader(act headerActions) *header {
	h := &header{dot: canvas.NewCircle(theme.Color(theme.ColorNameDisabled)), act: act}
	h.title = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	h.title.SizeName = theme.SizeNameSubHeadingText
	h.title.Truncation = fyne.TextTruncateEllipsis
	h.mode = widget.NewLabel("")
	h.mode.Truncation = fyne.TextTruncateEllipsis
	h.vram = widget.NewLabel("")
	h.vram.Importance = widget.WarningImportance
	h.vram.Wrapping = fyne.TextWrapWord
	h.vram.Hide()
	h.detail = subtle("")
	h.detail.Wrapping = fyne.TextWrapWord
	h.detail.Hide()
	h.fix = widget.NewButton("", func() {
		switch h.fixAction {
		case "register":
			act.registerAgain()
		case "reconnect":
			act.reconnect()
		}
	})
	h.fix.Importance = widget.HighImportance
	h.fixBox = container.NewHBox(h.fix)
	h.fixBox.Hide()

	h.pause = widget.NewButtonWithIcon(labelPause, theme.MediaPauseIcon(), act.togglePause)
	h.drain = widget.NewButtonWithIcon(labelQuitAfter, theme.LogoutIcon(), act.quitAfterJobs)
	h.auto = widget.NewCheck(labelAutoAccept, act.setAutoAccept)

	h.banner = widget.NewLabel("")
	h.banner.Importance = widget.DangerImportance
	h.banner.Wrapping = fyne.TextWrapWord
	h.bannerBox = container.NewBorder(nil, nil, widget.NewIcon(theme.NewErrorThemedResource(theme.ErrorIcon())),
		widget.NewButtonWithIcon("", theme.CancelIcon(), h.clearError), h.banner)
	h.bannerBox.Hide()
	h.note = widget.NewLabel("")
	h.note.Wrapping = fyne.TextWrapWord
	h.noteBox = container.NewBorder(nil, nil, widget.NewIcon(theme.InfoIcon()), nil, h.note)
	h.noteBox.Hide()

	dot := container.New(&alignedTo{ref: h.title}, container.NewGridWrap(fyne.NewSize(14, 14), h.dot))
	right := container.NewVBox(container.NewHBox(h.pause, h.drain), container.NewHBox(layout.NewSpacer(), h.auto))
	left := container.NewBorder(nil, nil, container.NewVBox(dot), nil, container.NewVBox(h.title, h.mode, h.vram, h.detail, h.fixBox))
	h.content = container.NewVBox(
		container.NewPadded(container.NewBorder(nil, nil, nil, right, left)),
		h.bannerBox, h.noteBox,
	)
	return h
}

func (h *header) update(s app.State, now time.Time) {
	h.updateConn(s, now)
	mode, _ := describeMode(s)
	setLabel(h.mode, mode)
	note := vramNote(s)
	if note != h.vram.Text {
		setLabel(h.vram, note)
	}
	showIf(h.vram, note != "")
	label, icon, importance := labelPause, theme.MediaPauseIcon(), widget.MediumImportance
	if s.Paused || s.Draining {
		// Paused: Resume is what the user came for.
		label, icon, importance = labelResume, theme.MediaPlayIcon(), widget.HighImportance
	}
	if h.pause.Text != label || h.pause.Importance != importance {
		h.pause.Text, h.pause.Icon, h.pause.Importance = label, icon, importance
		h.pause.Refresh() // only on a change: every State comes through here
	}
	switch it := quitAfterItem(s, h.act.quitAfterState()); {
	case h.act.quitAfterState() == quitAfterOff:
		h.drain.Hide() // the window does not own the worker: quitting it leaves the worker running
	case it.Disabled:
		h.drain.Show()
		setButtonText(h.drain, it.Label)
		h.drain.Disable()
	default:
		h.drain.Show()
		setButtonText(h.drain, it.Label)
		h.drain.Enable()
	}
	setChecked(h.auto, s.AutoAccept)
}

// updateConn shows the connection; it runs every tick for the reconnect countdown.
func (h *header) updateConn(s app.State, now time.Time) {
	cv := describeConn(s, now)
	setLabel(h.title, cv.Title)
	if c := toneColor(cv.Tone); c != h.dot.FillColor {
		h.dot.FillColor = c
		h.dot.Refresh()
	}
	setSubtle(h.detail, cv.Detail)
	showIf(h.detail, cv.Detail != "")
	h.fixAction = cv.Action
	switch cv.Action {
	case "register":
		if s.Conn.State == connAuthFailed {
			setButtonText(h.fix, "Register again")
		} else {
			setButtonText(h.fix, "Register…")
		}
	case "reconnect":
		setButtonText(h.fix, "Reconnect now")
	}
	showIf(h.fixBox, cv.Action != "")
}

func (h *header) showError(msg string) {
	setLabel(h.banner, msg)
	h.bannerBox.Show()
}

func (h *header) clearError() {
	if h.bannerBox.Visible() {
		setLabel(h.banner, "")
		h.bannerBox.Hide()
	}
}

func (h *header) showNote(msg string) {
	setLabel(h.note, msg)
	h.noteBox.Show()
}

// hideNote takes the note away if it still says msg (a later note stays).
func (h *header) hideNote(msg string) {
	if h.note.Text == msg {
		h.noteBox.Hide()
	}
}

// alignedTo is as tall as ref and centres its objects in that height: the dot sits on the
// title's line however the lines below it grow.
type alignedTo struct{ ref fyne.CanvasObject }

func (a *alignedTo) MinSize(objs []fyne.CanvasObject) fyne.Size {
	var w float32
	for _, o := range objs {
		w = max(w, o.MinSize().Width)
	}
	return fyne.NewSize(w+theme.Padding(), a.ref.MinSize().Height)
}

func (a *alignedTo) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	for _, o := range objs {
		m := o.MinSize()
		o.Resize(m)
		o.Move(fyne.NewPos(theme.Padding(), (size.Height-m.Height)/2))
	}
}
