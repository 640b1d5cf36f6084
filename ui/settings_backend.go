// settings_backend.go: one kind's backend form on the Settings tab — the backend choice, the
// fields that backend uses, reading them back over what was loaded, and its Test button. It must
// not know the rules a backend's fields follow: the worker checks them.

package ui

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"studioworker/app"
	"studioworker/protocol"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
)

// Backend choices as the settings page shows them, and the backend names behind them.
const backendOff = "Off (not offered)"

var backendChoices = []struct{ label, name string }{
	{backendOff, ""},
	{"Synthetic (demo, no GPU work)", app.BackendSynthetic},
	{"OpenAI-compatible server", app.BackendOpenAI},
	{"ComfyUI", app.BackendComfyUI},
	{"Command line", app.BackendExec},
}

func backendLabels() []string {
	out := make([]string, len(backendChoices))
	for i, c := range backendChoices {
		out[i] = c.label
	}
	return out
}

func backendLabel(name string) string {
	for _, c := range backendChoices {
		if c.name == name {
			return c.label
		}
	}
	return name // a backend this build does not list: show it rather than lose it
}

func backendName(label string) string {
	for _, c := range backendChoices {
		if c.label == label {
			return c.name
		}
	}
	return label
}

// backendForm is one kind's backend settings.
type backendForm struct {
	kind                           protocol.Kind
	backend                        *widget.Select
	url, command, models, workflow *widget.Entry
	apiKey                         *widget.Entry
	urlRow, cmdRow, keyRow, wfRow  fyne.CanvasObject
	test                           *widget.Button
	result                         *widget.RichText
	err                            *widget.Label
	item                           *widget.AccordionItem
}

func (v *settingsView) newBackendForm(k protocol.Kind) *backendForm {
	f := &backendForm{kind: k, url: widget.NewEntry(), command: widget.NewEntry(), models: widget.NewEntry(),
		workflow: widget.NewEntry(), apiKey: widget.NewPasswordEntry(), result: subtle(""), err: errorLabel()}
	f.url.SetPlaceHolder("http://127.0.0.1:8080/v1")
	f.command.SetPlaceHolder("my-tool --prompt {prompt} --out {output}")
	f.models.SetPlaceHolder("Comma-separated; empty = ask the backend")
	f.workflow.SetPlaceHolder("Path of an API-format workflow JSON file")
	f.result.Wrapping = fyne.TextWrapWord
	f.test = widget.NewButtonWithIcon("Test", theme.SearchIcon(), func() { v.doTest(f) })
	f.backend = widget.NewSelect(backendLabels(), func(string) {
		f.showRows()
		if v.acc != nil {
			v.acc.Refresh() // the item's title names the backend
		}
	})
	f.urlRow = labelled("URL", f.url)
	f.keyRow = labelled("API key", f.apiKey)
	f.cmdRow = labelled("Command", f.command)
	f.wfRow = labelled("Workflow", f.workflow)
	body := container.NewVBox(
		labelled("Backend", f.backend),
		f.urlRow, f.keyRow, f.wfRow, f.cmdRow,
		labelled("Models", f.models),
		container.NewBorder(nil, nil, nil, f.test, f.result),
		f.err,
	)
	f.item = widget.NewAccordionItem(string(k), body)
	f.backend.SetSelected(backendOff)
	return f
}

func labelled(label string, obj fyne.CanvasObject) fyne.CanvasObject {
	l := widget.NewLabel(label)
	return container.NewBorder(nil, nil, container.New(&fixedWidth{width: 90}, l), nil, obj)
}

// showRows shows the fields the chosen backend uses.
func (f *backendForm) showRows() {
	b := backendName(f.backend.Selected)
	showIf(f.urlRow, b == app.BackendOpenAI || b == app.BackendComfyUI)
	showIf(f.keyRow, b == app.BackendOpenAI)
	showIf(f.wfRow, b == app.BackendComfyUI)
	showIf(f.cmdRow, b == app.BackendExec)
	if b == "" {
		f.test.Disable()
	} else {
		f.test.Enable()
	}
	title := string(f.kind) + " — " + f.backend.Selected
	if f.item.Title != title {
		f.item.Title = title
	}
}

// config returns the kind's backend settings from the form over the loaded ones, so fields the
// form does not show (mapping, limits, timeouts) are kept; ok is false when the kind is off.
func (f *backendForm) config(loaded app.BackendForm) (app.BackendForm, bool, error) {
	name := backendName(f.backend.Selected)
	if name == "" {
		return app.BackendForm{}, false, nil
	}
	bc := loaded
	bc.Backend = name
	bc.URL = strings.TrimSpace(f.url.Text)
	bc.Workflow = strings.TrimSpace(f.workflow.Text)
	bc.Models = splitList(f.models.Text)
	cmd, err := splitArgs(f.command.Text)
	if err != nil {
		return bc, true, fmt.Errorf("command: %w", err)
	}
	bc.Command = cmd
	if k := f.apiKey.Text; k != "" {
		bc.APIKey = k // a new key; left empty the worker keeps the one it has ("(set)")
	}
	return bc, true, nil
}

func (f *backendForm) fill(bc app.BackendForm, on bool) {
	f.backend.SetSelected(backendOff)
	if on {
		label := backendLabel(bc.Backend)
		if !slices.Contains(f.backend.Options, label) {
			f.backend.SetOptions(append(backendLabels(), label))
		}
		f.backend.SetSelected(label)
	}
	f.url.SetText(bc.URL)
	f.workflow.SetText(bc.Workflow)
	f.models.SetText(strings.Join(bc.Models, ", "))
	f.command.SetText(joinArgs(bc.Command))
	f.apiKey.SetText("")
	f.apiKey.SetPlaceHolder("")
	if bc.APIKey != "" {
		f.apiKey.SetPlaceHolder("(set — leave empty to keep it)")
	}
	setSubtle(f.result, "")
	setError(f.err, "")
}

func (v *settingsView) doTest(f *backendForm) {
	bc, on, err := f.config(v.loaded.Engines[f.kind])
	if !on {
		return
	}
	if err != nil {
		setError(f.err, err.Error())
		return
	}
	f.test.Disable()
	setSubtle(f.result, "Asking the backend…")
	var found []string
	v.act.run("Test the "+string(f.kind)+" backend", func(ctx context.Context) error {
		models, err := v.act.controller().TestBackend(ctx, f.kind, bc)
		found = models
		return err
	}, func(err error) {
		f.test.Enable()
		switch {
		case err != nil:
			setSubtle(f.result, "")
			var ve *app.ValidationError
			if errors.As(err, &ve) && len(ve.Fields) == 1 {
				for _, why := range ve.Fields {
					setError(f.err, why) // the worker's sentence, next to this backend
				}
			} else {
				setError(f.err, "Test failed: "+err.Error())
			}
		case len(found) == 0:
			setError(f.err, "")
			setSubtle(f.result, "It answered, but lists no models.")
		default:
			setError(f.err, "")
			setSubtle(f.result, "It answered. Models: "+strings.Join(found, ", "))
		}
	})
}
