// firstrun.go: the first-run page — what Studio Worker does, the Studio's address and pairing
// code, the backends found on this machine, and the demo. It must not know how detection or
// registration work: the Controller does them.

package ui

import (
	"context"
	"fmt"
	"image/color"
	"maps"
	"slices"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"studioworker/app"
)

// The first-run page: what Studio Worker does, in plain words; the Studio's address and pairing
// code with Register; the backends found on this machine, each with a tick; and a demo that needs
// nothing but this app. It replaces the dashboard while the worker is not registered, and nothing
// on it sends anything to a Studio before Register.

// firstRunActions is what the first-run page needs from the window.
type firstRunActions interface {
	run(what string, call func(context.Context) error, done func(error))
	controller() app.Controller
	skipFirstRun()
}

const firstRunIntro = "Studio Worker lends this computer's graphics card to your Studio. When the Studio has a job — a " +
	"text answer, an image, speech, a transcript, a short video — it offers it to this computer; Studio Worker runs it " +
	"with the AI programs you already have here (Ollama, ComfyUI, espeak-ng, …) and sends the result back.\n\n" +
	"You stay in charge: pause it at any time, choose whether it takes jobs by itself, and it steps aside while your " +
	"own programs (a game, an editor) need the GPU. Nothing is sent to a Studio until you register."

// firstRun is the first-run page.
type firstRun struct {
	act firstRunActions

	serverURL, name, pairing *widget.Entry
	errs                     map[string]*widget.Label // by the field's key in app.ValidationError
	register                 *widget.Button
	status                   *widget.RichText

	found      *fyne.Container // one row per detected backend
	rows       []*detectedRow
	findStatus *widget.RichText
	rescan     *widget.Button
	detecting  bool
	detected   bool // a detection has finished

	demo       *widget.Button
	demoStatus *widget.RichText

	content fyne.CanvasObject
}

// detectedRow is one backend found, with its tick.
type detectedRow struct {
	det   app.Detected
	check *widget.Check
}

func newFirstRun(act firstRunActions) *firstRun {
	p := &firstRun{act: act, errs: map[string]*widget.Label{}}
	field := func(key string, obj fyne.CanvasObject) fyne.CanvasObject {
		e := errorLabel()
		p.errs[key] = e
		return container.NewVBox(obj, e)
	}

	intro := widget.NewLabel(firstRunIntro)
	intro.Wrapping = fyne.TextWrapWord

	p.serverURL = widget.NewEntry()
	p.serverURL.SetPlaceHolder("https://studio.example.com")
	p.name = widget.NewEntry()
	p.name.SetPlaceHolder("This computer's name in the Studio (optional)")
	p.pairing = widget.NewEntry()
	p.pairing.SetPlaceHolder("The one-time code from your Studio")
	p.register = widget.NewButtonWithIcon("Register", theme.LoginIcon(), p.doRegister)
	p.register.Importance = widget.HighImportance
	p.status = subtle("")
	p.status.Wrapping = fyne.TextWrapWord
	studio := container.New(layout.NewFormLayout(),
		widget.NewLabel("Studio address"), field("server_url", p.serverURL),
		widget.NewLabel("Pairing code"), field("pairing_code", p.pairing),
		widget.NewLabel("Worker name"), field("name", p.name),
		widget.NewLabel(""), container.NewBorder(nil, nil, nil, p.register, p.status),
	)

	p.found = container.NewVBox()
	p.findStatus = subtle("Looking for backends…")
	p.findStatus.Wrapping = fyne.TextWrapWord
	p.rescan = widget.NewButtonWithIcon("Look again", theme.ViewRefreshIcon(), p.detect)
	enginesErr := errorLabel()
	p.errs["engines"] = enginesErr
	hint := subtle("Studio Worker looked at the usual local ports and programs (nothing outside this computer). Ticked ones are used when you register; change them any time in Settings.")
	hint.Wrapping = fyne.TextWrapWord
	backends := container.NewVBox(
		hint,
		p.found, enginesErr,
		container.NewBorder(nil, nil, nil, p.rescan, p.findStatus),
	)

	p.demo = widget.NewButtonWithIcon("Try it with a local demo hub", theme.MediaPlayIcon(), p.doDemo)
	p.demoStatus = subtle("Runs a small Studio hub inside this app and sends this worker a dozen test jobs: no account, no network, no GPU needed. Your settings are not changed.")
	p.demoStatus.Wrapping = fyne.TextWrapWord
	skip := widget.NewButton("Skip to the dashboard", act.skipFirstRun)
	skip.Importance = widget.LowImportance

	body := container.NewVBox(
		heading("Welcome to Studio Worker"),
		intro,
		panel(heading("Connect to your Studio"), studio),
		panel(heading("Backends found on this machine"), backends),
		panel(heading("Not ready to connect?"), container.NewBorder(nil, nil, nil, p.demo, p.demoStatus)),
		container.NewHBox(layout.NewSpacer(), skip),
	)
	p.content = container.NewVScroll(container.NewPadded(body))
	return p
}

// detect asks the worker what backends are on its machine.
func (p *firstRun) detect() {
	if p.detecting {
		return
	}
	p.detecting = true
	p.rescan.Disable()
	setSubtle(p.findStatus, "Looking for backends…")
	var found []app.Detected
	p.act.run("Find backends", func(ctx context.Context) error {
		f, err := p.act.controller().DetectBackends(ctx)
		found = f
		return err
	}, func(err error) {
		p.detecting, p.detected = false, true
		p.rescan.Enable()
		if err != nil {
			setSubtle(p.findStatus, "Could not look for backends: "+err.Error())
			return
		}
		p.showFound(found)
	})
}

// showFound lists what was found; the first usable backend of each kind is ticked, and a tick
// is kept across a "Look again" for a backend still there.
func (p *firstRun) showFound(found []app.Detected) {
	was := map[string]bool{}
	for _, r := range p.rows {
		was[rowKey(r.det)] = r.check.Checked
	}
	p.rows = nil
	objs := make([]fyne.CanvasObject, 0, len(found))
	ticked := map[string]bool{}
	for _, d := range found {
		r := &detectedRow{det: d}
		r.check = widget.NewCheck(detectedLabel(d), nil)
		on, seen := was[rowKey(d)]
		if !seen {
			on = d.Ready && !ticked[string(d.Kind)]
		}
		on = on && d.Ready && !ticked[string(d.Kind)]
		r.check.SetChecked(on)
		if on {
			ticked[string(d.Kind)] = true
		}
		if !d.Ready {
			r.check.Disable()
		}
		r.check.OnChanged = func(on bool) { p.ticked(r, on) }
		row := []fyne.CanvasObject{r.check}
		if detail := detectedDetail(d); detail != "" {
			t := subtle(detail)
			t.Wrapping = fyne.TextWrapWord
			indent := container.New(&fixedWidth{width: 28}, canvas.NewRectangle(color.Transparent)) // under the label, past the box
			row = append(row, container.NewBorder(nil, nil, indent, nil, t))
		}
		objs = append(objs, container.NewVBox(row...))
		p.rows = append(p.rows, r)
	}
	p.found.Objects = objs
	p.found.Refresh()
	if len(found) == 0 {
		setSubtle(p.findStatus, "None found. Start Ollama, llama.cpp's server, LocalAI or ComfyUI and look again — or register now: "+
			"until you set backends in Settings, the worker offers only its built-in test backend.")
		return
	}
	setSubtle(p.findStatus, fmt.Sprintf("Found %d.", len(found)))
}

// ticked keeps one tick per kind: a kind runs on one backend.
func (p *firstRun) ticked(r *detectedRow, on bool) {
	if !on {
		return
	}
	for _, o := range p.rows {
		if o != r && o.det.Kind == r.det.Kind && o.check.Checked {
			o.check.SetChecked(false)
		}
	}
}

func rowKey(d app.Detected) string { return string(d.Kind) + "|" + d.Name + "|" + d.Where }

func detectedLabel(d app.Detected) string {
	return fmt.Sprintf("%s for %s — %s", d.Name, kindWords(string(d.Kind)), d.Where)
}

func detectedDetail(d app.Detected) string {
	var parts []string
	if len(d.Models) > 0 {
		models := d.Models
		more := ""
		if len(models) > 4 {
			models, more = models[:4], fmt.Sprintf(" and %d more", len(d.Models)-4)
		}
		parts = append(parts, "Models: "+strings.Join(models, ", ")+more+".")
	}
	if d.Note != "" {
		parts = append(parts, d.Note)
	}
	return strings.Join(parts, " ")
}

// kindWords names a kind of job for a person.
func kindWords(kind string) string {
	switch kind {
	case "llm":
		return "text (LLM)"
	case "image":
		return "images"
	case "tts":
		return "text to speech"
	case "stt":
		return "speech to text"
	case "video":
		return "video"
	}
	return kind
}

// engines are the ticked backends; nil when none is ticked (the engines stay as they are).
func (p *firstRun) engines() *app.BackendForms {
	c := app.BackendForms{}
	for _, r := range p.rows {
		if r.check.Checked && r.det.Ready {
			c[r.det.Kind] = r.det.Backend
		}
	}
	if len(c) == 0 {
		return nil
	}
	return &c
}

func (p *firstRun) showErrors(fields map[string]string) {
	for _, l := range p.errs {
		setError(l, "")
	}
	var general []string
	for _, key := range slices.Sorted(maps.Keys(fields)) {
		if l, ok := p.errs[key]; ok {
			setError(l, fields[key])
			continue
		}
		general = append(general, key+": "+fields[key])
	}
	if len(general) > 0 {
		setSubtle(p.status, "Not registered: "+strings.Join(general, "; "))
	}
}

func (p *firstRun) doRegister() {
	req := app.RegisterRequest{ServerURL: strings.TrimSpace(p.serverURL.Text), PairingCode: strings.TrimSpace(p.pairing.Text),
		Name: strings.TrimSpace(p.name.Text), Engines: p.engines()}
	submitRegistration(p.act, req, registerForm{button: p.register, status: p.status, pairing: p.pairing, showErrors: p.showErrors})
}

func (p *firstRun) doDemo() {
	p.demo.Disable()
	setSubtle(p.demoStatus, "Starting the demo hub…")
	p.act.run("Start the demo", p.act.controller().StartDemo, func(err error) {
		p.demo.Enable()
		if err != nil {
			setSubtle(p.demoStatus, "The demo did not start: "+err.Error())
			return
		}
		setSubtle(p.demoStatus, "The demo is running.")
	})
}

// demoBar sits above the dashboard while a demo runs: what it is, and the way back.
type demoBar struct {
	content fyne.CanvasObject
	end     *widget.Button
}

func newDemoBar(act firstRunActions) *demoBar {
	b := &demoBar{}
	b.end = widget.NewButtonWithIcon("End the demo", theme.MediaStopIcon(), func() {
		b.end.Disable()
		act.run("End the demo", act.controller().StopDemo, func(error) { b.end.Enable() })
	})
	b.end.Importance = widget.HighImportance
	text := widget.NewLabel("Demo: a Studio hub inside this app is sending test jobs to this worker. Nothing leaves this computer, and your settings are kept as they were.")
	text.Wrapping = fyne.TextWrapWord
	b.content = container.NewPadded(container.NewBorder(nil, nil, widget.NewIcon(theme.InfoIcon()), b.end, text))
	return b
}

// The window's pages.
const (
	pageFirstRun = "first-run"
	pageMain     = "main"
	pageDemo     = "demo"
)

// mainContent is the header above the tabs, with the demo bar between them during a demo.
func (w *Window) mainContent(demo bool) fyne.CanvasObject {
	top := w.header.content
	if demo {
		top = container.NewVBox(w.header.content, w.demoBar.content)
	}
	return container.NewBorder(top, nil, nil, nil, w.tabs)
}

// showPage shows the first-run page instead of the dashboard while the worker is not registered
// (and the user has not skipped it), and the demo bar while a demo runs. The content is swapped
// only when the page changes.
func (w *Window) showPage(s app.State) {
	page := pageMain
	switch {
	case s.Demo:
		page = pageDemo
	case !s.Registered && !w.skipped:
		page = pageFirstRun
	}
	if page == w.page {
		return
	}
	w.page = page
	switch page {
	case pageFirstRun:
		w.win.SetContent(w.first.content)
		if !w.first.detected {
			w.first.detect()
		}
	default:
		w.win.SetContent(w.mainContent(page == pageDemo))
	}
}

// skipFirstRun shows the dashboard (and the settings, the logs) before registering.
func (w *Window) skipFirstRun() {
	w.skipped = true
	w.showPage(w.state)
}
