// settings.go: the Settings tab — its fields, loading them from the worker, reading them back,
// saving, and each error next to its field. One kind's backend form is settings_backend.go's,
// following the config is settings_sync.go's. It must not know how the worker checks or stores
// the settings.

package ui

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"studioworker/app"
	"studioworker/protocol"
)

// settingsActions is what the settings page needs from the window.
type settingsActions interface {
	run(what string, call func(context.Context) error, done func(error))
	controller() app.Controller
}

// settingsView is the Settings tab. Nothing is saved until the whole form is valid: numbers are
// checked here, the rest by the worker, and every message shows next to its field.
type settingsView struct {
	act settingsActions

	loaded     app.Settings // what the worker gave, so fields the form does not show are kept
	haveLoaded bool
	rev        uint64 // the latest State.ConfigRev seen (settings_sync.go)
	saving     bool   // a Save is in flight: its end reloads the form
	stale      bool   // the config changed elsewhere while the form held edits: Save is off

	status  *widget.RichText
	general *widget.Label
	errs    map[string]*widget.Label

	serverURL, name, pairing *widget.Entry
	insecure                 *widget.Check
	register                 *widget.Button
	regStatus                *widget.RichText

	kinds      map[protocol.Kind]*backendForm
	acc        *widget.Accordion
	enginesErr *widget.Label

	vramCap     *widget.Slider
	vramCapText *widget.Label
	maxJobs     *widget.Entry

	yieldOn, yieldCancel           *widget.Check
	yieldMB, yieldResume, yieldIgn *widget.Entry

	service       *widget.Check
	serviceStatus *widget.RichText
	serviceBusy   bool          // a click is being carried out: a State may still say what was before it
	latestStart   app.AutoStart // what the OS holds, as the latest State says
	shownStart    app.AutoStart // what the check and the line show of it

	save, reload *widget.Button
	content      fyne.CanvasObject
}

func errorLabel() *widget.Label {
	l := widget.NewLabel("")
	l.Importance = widget.DangerImportance
	l.Wrapping = fyne.TextWrapWord
	l.Hide()
	return l
}

func setError(l *widget.Label, msg string) {
	l.SetText(msg)
	showIf(l, msg != "")
}

func newSettingsView(act settingsActions) *settingsView {
	v := &settingsView{act: act, errs: map[string]*widget.Label{}, kinds: map[protocol.Kind]*backendForm{}}
	field := func(key string, obj fyne.CanvasObject, hint string) fyne.CanvasObject {
		e := errorLabel()
		v.errs[key] = e
		parts := []fyne.CanvasObject{obj}
		if hint != "" {
			h := subtle(hint)
			h.Wrapping = fyne.TextWrapWord
			parts = append(parts, h)
		}
		return container.NewVBox(append(parts, e)...)
	}
	v.status = subtle("Loading the settings…")
	v.general = errorLabel()

	// The Studio: where to connect, and pairing.
	v.serverURL = widget.NewEntry()
	v.serverURL.SetPlaceHolder("https://studio.example.com")
	v.name = widget.NewEntry()
	v.name.SetPlaceHolder("This computer's name in the Studio")
	v.pairing = widget.NewEntry()
	v.pairing.SetPlaceHolder("Pairing code from the Studio")
	v.insecure = widget.NewCheck("Allow http:// (only for a Studio on this network)", nil)
	v.regStatus = subtle("")
	v.regStatus.Wrapping = fyne.TextWrapWord
	v.register = widget.NewButtonWithIcon("Register", theme.LoginIcon(), v.doRegister)
	v.register.Importance = widget.HighImportance
	studio := container.New(layout.NewFormLayout(),
		widget.NewLabel("Studio address"), field("server_url", v.serverURL, ""),
		widget.NewLabel("Worker name"), field("name", v.name, ""),
		widget.NewLabel(""), v.insecure,
		widget.NewLabel("Pairing code"), field("pairing_code", container.NewBorder(nil, nil, nil, v.register, v.pairing),
			"Registering pairs this worker with the Studio and connects at once."),
		widget.NewLabel(""), v.regStatus,
	)

	// Backends, one per kind.
	v.enginesErr = errorLabel()
	v.acc = widget.NewAccordion()
	v.acc.MultiOpen = true // errors in two backends must both be visible
	for _, k := range protocol.Kinds() {
		f := v.newBackendForm(k)
		v.kinds[k] = f
		v.acc.Append(f.item)
	}
	backends := container.NewVBox(
		subtle("Which program runs each kind of job. Test asks the backend what it serves."),
		v.enginesErr, v.acc)

	// The GPU and jobs.
	v.vramCapText = widget.NewLabel("")
	v.vramCap = widget.NewSlider(0, 48)
	v.vramCap.Step = 0.5
	v.vramCap.OnChanged = func(float64) { v.showCap() }
	v.maxJobs = widget.NewEntry()
	gpu := container.New(layout.NewFormLayout(),
		widget.NewLabel("VRAM cap"), field("vram_threshold_gb", container.NewBorder(nil, nil, nil, v.vramCapText, v.vramCap),
			"Jobs that need more than this are declined. 0 = no cap."),
		widget.NewLabel("Jobs at once"), field("max_concurrent_jobs", v.maxJobs, "0 = one per GPU."),
	)

	// Yielding to the user's own programs.
	v.yieldOn = widget.NewCheck("Step aside when my own programs use the GPU", nil)
	v.yieldMB = widget.NewEntry()
	v.yieldResume = widget.NewEntry()
	v.yieldIgn = widget.NewEntry()
	v.yieldIgn.SetPlaceHolder("e.g. obs, discord")
	v.yieldCancel = widget.NewCheck("Also stop the running job (the Studio gives it to another worker)", nil)
	yield := container.New(layout.NewFormLayout(),
		widget.NewLabel(""), field("yield", v.yieldOn, ""),
		widget.NewLabel("Above (MB)"), field("yield.threshold_mb", v.yieldMB, "VRAM another program must use before the worker steps aside."),
		widget.NewLabel("Resume after (s)"), field("yield.resume_after_s", v.yieldResume, "How long the GPU must be free again."),
		widget.NewLabel("Ignore"), field("yield.ignore", v.yieldIgn, "Programs never stepped aside for, comma-separated."),
		widget.NewLabel(""), v.yieldCancel,
	)

	// Starting with this computer: the check and the line under it show what the OS holds
	// (State.AutoStart), not a setting of ours, because the OS is where it can be changed.
	v.serviceStatus = subtle("")
	v.serviceStatus.Wrapping = fyne.TextWrapWord
	v.service = widget.NewCheck("Start with this computer (when I log in)", nil)
	v.service.OnChanged = v.doService
	service := container.NewVBox(field("auto_start", v.service, ""), v.serviceStatus)

	v.save = widget.NewButtonWithIcon("Save", theme.DocumentSaveIcon(), v.doSave)
	v.save.Importance = widget.HighImportance
	v.reload = widget.NewButtonWithIcon("Reload", theme.ViewRefreshIcon(), v.load)
	v.save.Disable()

	body := container.NewVBox(
		panel(heading("Studio"), studio),
		panel(heading("Backends"), backends),
		panel(heading("GPU and jobs"), gpu),
		panel(heading("Your own programs"), yield),
		panel(heading("Start with this computer"), service),
	)
	bottom := container.NewBorder(widget.NewSeparator(), nil, nil, container.NewHBox(v.reload, v.save),
		container.NewVBox(v.status, v.general))
	v.content = container.NewBorder(nil, bottom, nil, nil, container.NewVScroll(container.NewPadded(body)))
	return v
}

// load asks the worker for its settings and fills the form.
func (v *settingsView) load() {
	setSubtle(v.status, "Loading the settings…")
	v.reloadThen(func() { setSubtle(v.status, "") })
}

// reloadThen fills the form with the worker's settings, then runs done on the UI thread; the
// status line changes only on an error (or in done).
func (v *settingsView) reloadThen(done func()) {
	var got app.Settings
	v.act.run("Load the settings", func(ctx context.Context) error {
		s, err := v.act.controller().Settings(ctx)
		got = s
		return err
	}, func(err error) {
		if err != nil {
			setSubtle(v.status, "Could not load the settings: "+err.Error())
			return
		}
		v.fill(got)
		if done != nil {
			done()
		}
	})
}

func (v *settingsView) fill(s app.Settings) {
	v.loaded, v.haveLoaded = s, true
	v.serverURL.SetText(s.ServerURL)
	v.name.SetText(s.Name)
	setChecked(v.insecure, s.AllowInsecure)
	for _, k := range protocol.Kinds() {
		bc, on := s.Engines[k]
		v.kinds[k].fill(bc, on)
	}
	if s.VRAMThresholdGB > v.vramCap.Max {
		v.vramCap.Max = math.Ceil(s.VRAMThresholdGB)
	}
	setSlider(v.vramCap, s.VRAMThresholdGB)
	v.showCap()
	v.maxJobs.SetText(strconv.Itoa(s.MaxConcurrentJobs))
	setChecked(v.yieldOn, s.Yield.Enabled)
	v.yieldMB.SetText(strconv.FormatInt(s.Yield.ThresholdMB, 10))
	v.yieldResume.SetText(strconv.FormatFloat(s.Yield.ResumeAfterS, 'f', -1, 64))
	v.yieldIgn.SetText(strings.Join(s.Yield.Ignore, ", "))
	setChecked(v.yieldCancel, s.Yield.CancelRunning)
	v.showErrors(nil)
	v.stale = false
	v.save.Enable()
}

// updateFromState follows what the worker reports: the GPUs' size for the cap slider, and what
// starts the worker with this computer.
func (v *settingsView) updateFromState(s app.State) {
	var most int64
	for _, c := range s.GPU.Cards {
		most = max(most, c.TotalMB)
	}
	if most > 0 {
		top := math.Ceil(float64(most) / 1024)
		if top < v.vramCap.Value {
			top = math.Ceil(v.vramCap.Value)
		}
		if top != v.vramCap.Max {
			v.vramCap.Max = top
			v.vramCap.Refresh()
			v.showCap()
		}
	}
	v.latestStart = s.AutoStart
	if !v.serviceBusy { // a State sent before the click's change would undo it on screen
		v.showAutoStart(false)
	}
}

// showAutoStart puts what the OS holds, as the latest State says, into the check and the line
// under it; force shows it even when it seems shown already (after a click changed the check).
func (v *settingsView) showAutoStart(force bool) {
	a := v.latestStart
	if !force && a == v.shownStart {
		return
	}
	v.shownStart = a
	setChecked(v.service, a.On)
	line := a.Text
	if a.Where != "" {
		line += "\n" + a.Where
	}
	setSubtle(v.serviceStatus, line)
}

func (v *settingsView) showCap() {
	if v.vramCap.Value <= 0 {
		v.vramCapText.SetText("No cap")
		return
	}
	v.vramCapText.SetText(fmt.Sprintf("%.1f of %.0f GB", v.vramCap.Value, v.vramCap.Max))
}

// collect reads the form into settings over the loaded ones; bad is what is wrong, by field key.
func (v *settingsView) collect() (app.Settings, map[string]string) {
	s := v.loaded
	bad := map[string]string{}
	s.ServerURL = strings.TrimSpace(v.serverURL.Text)
	s.Name = strings.TrimSpace(v.name.Text)
	s.AllowInsecure = v.insecure.Checked
	s.VRAMThresholdGB = v.vramCap.Value
	if n, err := strconv.Atoi(strings.TrimSpace(v.maxJobs.Text)); err != nil || n < 0 || n > 64 {
		bad["max_concurrent_jobs"] = "must be a whole number from 0 (one per GPU) to 64"
	} else {
		s.MaxConcurrentJobs = n
	}
	s.Yield.Enabled = v.yieldOn.Checked
	s.Yield.CancelRunning = v.yieldCancel.Checked
	if n, err := strconv.ParseInt(strings.TrimSpace(v.yieldMB.Text), 10, 64); err != nil || n < 0 {
		bad["yield.threshold_mb"] = "must be a whole number of MB, 0 or more"
	} else {
		s.Yield.ThresholdMB = n
	}
	if f, err := strconv.ParseFloat(strings.TrimSpace(v.yieldResume.Text), 64); err != nil || f < 0 || math.IsInf(f, 0) {
		bad["yield.resume_after_s"] = "must be a number of seconds, 0 or more"
	} else {
		s.Yield.ResumeAfterS = f
	}
	s.Yield.Ignore = splitList(v.yieldIgn.Text)
	engines := make(app.BackendForms, len(v.loaded.Engines))
	for _, k := range protocol.Kinds() {
		bc, on, err := v.kinds[k].config(v.loaded.Engines[k])
		if err != nil {
			bad["engines."+string(k)] = err.Error()
		}
		if on {
			engines[k] = bc
		}
	}
	// Kinds this build does not list stay as they were.
	for k, bc := range v.loaded.Engines {
		if _, listed := v.kinds[k]; !listed {
			engines[k] = bc
		}
	}
	s.Engines = engines
	return s, bad
}

// showErrors puts each message next to its field; keys without a field go to the general line.
func (v *settingsView) showErrors(fields map[string]string) {
	for _, l := range v.errs {
		setError(l, "")
	}
	for _, f := range v.kinds {
		setError(f.err, "")
	}
	setError(v.enginesErr, "")
	var general []string
	perKind := map[protocol.Kind][]string{}
	keys := slices.Sorted(maps.Keys(fields))
	for _, key := range keys {
		msg := fields[key]
		if l, ok := v.errs[key]; ok {
			setError(l, msg)
			continue
		}
		if key == "engines" || strings.HasPrefix(key, "engines.") {
			// The worker reports engine problems as "engines.<kind>.<field>: message" lines.
			for _, line := range strings.Split(strings.TrimPrefix(key+": "+msg, "engines: "), "\n") {
				if k, rest, ok := kindOf(line); ok {
					perKind[k] = append(perKind[k], rest)
				} else {
					setError(v.enginesErr, strings.TrimSpace(v.enginesErr.Text+"\n"+line))
				}
			}
			continue
		}
		general = append(general, key+": "+msg)
	}
	for i, k := range protocol.Kinds() {
		if msgs := perKind[k]; len(msgs) > 0 {
			setError(v.kinds[k].err, strings.Join(msgs, "\n"))
			v.acc.Open(i) // a message inside a closed section would go unseen
		}
	}
	setError(v.general, strings.Join(general, "\n"))
}

// kindOf splits "engines.image.url: message" into image and "url: message".
func kindOf(line string) (protocol.Kind, string, bool) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "engines.")
	if !ok {
		return "", "", false
	}
	end := strings.IndexAny(rest, ".:")
	if end <= 0 {
		return "", "", false
	}
	k := protocol.Kind(rest[:end])
	if !k.Valid() {
		return "", "", false
	}
	return k, strings.TrimLeft(rest[end:], ".: "), true
}

func (v *settingsView) doSave() {
	s, bad := v.collect()
	v.showErrors(bad)
	if len(bad) > 0 {
		setSubtle(v.status, "Not saved: fix the fields marked in red.")
		return
	}
	if v.stale {
		return // followRev said why on the status line
	}
	v.save.Disable()
	v.saving = true
	setSubtle(v.status, "Saving…")
	v.act.run("Save the settings", func(ctx context.Context) error {
		return v.act.controller().SaveSettings(ctx, s)
	}, func(err error) {
		v.saving = false
		v.save.Enable()
		var ve *app.ValidationError
		switch {
		case errors.As(err, &ve):
			v.showErrors(ve.Fields)
			setSubtle(v.status, "Not saved: fix the fields marked in red.")
		case err != nil:
			setSubtle(v.status, "Not saved: "+err.Error())
		default:
			v.loaded = s
			// What the worker holds now (it may have normalised a field) is what the form shows.
			v.reloadThen(func() { setSubtle(v.status, "Saved.") })
		}
	})
}

func (v *settingsView) doService(on bool) {
	v.service.Disable()
	v.serviceBusy = true
	verb := "Setting up the start at login…"
	if !on {
		verb = "Removing the start at login…"
	}
	setSubtle(v.serviceStatus, verb)
	var status string
	v.act.run("Start with this computer", func(ctx context.Context) error {
		st, err := v.act.controller().SetService(ctx, on)
		status = st
		return err
	}, func(err error) {
		v.service.Enable()
		v.serviceBusy = false
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		setError(v.errs["auto_start"], msg)
		if v.latestStart.Text != "" {
			// The worker publishes what the OS holds after every attempt, before it answers; a
			// State still on its way corrects this at once.
			v.showAutoStart(true)
			return
		}
		// A worker that does not report it: show the answer instead.
		if err != nil {
			setChecked(v.service, !on) // it did not happen
			status = ""
		}
		setSubtle(v.serviceStatus, status)
	})
}

// focusPairing brings the pairing code forward, for "register again".
func (v *settingsView) focusPairing(c fyne.Canvas) {
	if c != nil {
		c.Focus(v.pairing)
	}
}

// setChecked changes a check without running its OnChanged: state flows into widgets, and only a
// person's click flows out to the Controller.
func setChecked(c *widget.Check, on bool) {
	fn := c.OnChanged
	c.OnChanged = nil
	c.SetChecked(on)
	c.OnChanged = fn
}

func setSlider(s *widget.Slider, v float64) {
	fn, end := s.OnChanged, s.OnChangeEnded
	s.OnChanged, s.OnChangeEnded = nil, nil
	s.SetValue(v)
	s.OnChanged, s.OnChangeEnded = fn, end
}
