// backendform.go is the window's side of one backend's settings: BackendForm, the fields a person
// edits, the backend names a form offers, and the one conversion to and from engine.BackendConfig,
// so that nothing that steers the worker (the window, the control channel) needs package engine.
// It must not know how a backend runs or what makes a field valid (engine owns both), nor how a
// form is drawn (ui does).

package app

import (
	"bytes"
	"encoding/json"
	"log/slog"

	"studioworker/engine"
	"studioworker/protocol"
)

// Backend names, the values of BackendForm.Backend (the config file's "backend").
const (
	BackendSynthetic = engine.BackendSynthetic
	BackendOpenAI    = engine.BackendOpenAI
	BackendComfyUI   = engine.BackendComfyUI
	BackendExec      = engine.BackendExec
)

// BackendForm is one kind's backend settings as the window edits them. The fields it does not
// show (a ComfyUI mapping, limits, timeouts, …) ride along unchanged inside it, so a form read
// from the worker and written back loses nothing. Its JSON is the config file's, as the control
// channel has always carried it.
type BackendForm struct {
	// Backend is one of the Backend names.
	Backend string
	// URL is an OpenAI-compatible server's base URL (with /v1) or ComfyUI's.
	URL string
	// APIKey is the OpenAI-compatible server's key; "(set)" from the worker means it has one,
	// and sent back as it is keeps it.
	APIKey string
	// Workflow is the path of a ComfyUI API-format workflow file.
	Workflow string
	// Models are the models offered; empty = ask the backend.
	Models []string
	// Command is the command line backend's program and arguments.
	Command []string

	rest engine.BackendConfig // every other field, with the ones above left zero
}

// BackendForms is a form per kind; a kind absent is not offered.
type BackendForms map[protocol.Kind]BackendForm

// backendFormOf is the form of a backend config.
func backendFormOf(bc engine.BackendConfig) BackendForm {
	f := BackendForm{Backend: bc.Backend, URL: bc.URL, APIKey: bc.APIKey, Workflow: bc.Workflow, Models: bc.Models, Command: bc.Command}
	bc.Backend, bc.URL, bc.APIKey, bc.Workflow, bc.Models, bc.Command = "", "", "", "", nil, nil
	f.rest = bc
	return f
}

// config is the backend config the form stands for.
func (f BackendForm) config() engine.BackendConfig {
	bc := f.rest
	bc.Backend, bc.URL, bc.APIKey, bc.Workflow, bc.Models, bc.Command = f.Backend, f.URL, f.APIKey, f.Workflow, f.Models, f.Command
	return bc
}

// MarshalJSON writes the form as the backend config it stands for.
func (f BackendForm) MarshalJSON() ([]byte, error) { return json.Marshal(f.config()) }

// UnmarshalJSON reads a backend config; a key it does not know is an error, as everywhere on the
// control channel.
func (f *BackendForm) UnmarshalJSON(data []byte) error {
	var bc engine.BackendConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&bc); err != nil {
		return err
	}
	*f = backendFormOf(bc)
	return nil
}

// LogValue keeps the API key out of logs.
func (f BackendForm) LogValue() slog.Value { return f.config().LogValue() }

// backendFormsOf is the forms of an engines config; nil stays nil.
func backendFormsOf(c engine.Config) BackendForms {
	if c == nil {
		return nil
	}
	out := make(BackendForms, len(c))
	for k, bc := range c {
		out[k] = backendFormOf(bc)
	}
	return out
}

// config is the engines config the forms stand for; nil stays nil.
func (fs BackendForms) config() engine.Config {
	if fs == nil {
		return nil
	}
	out := make(engine.Config, len(fs))
	for k, f := range fs {
		out[k] = f.config()
	}
	return out
}
