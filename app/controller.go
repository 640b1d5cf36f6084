// controller.go: what a window or the CLI can ask of a worker (Controller, Source) and the forms
// they send (RegisterRequest, Settings), in app's own types only, so the window needs neither engine
// nor hub. It must not know whether the worker is in this process or behind the control socket.

package app

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"studioworker/engine"
	"studioworker/protocol"
)

// Controller is every way a person steers the worker. The window, the tray, the CLI and the
// control socket all go through it; Worker implements it in-process and Client over the control
// socket.
type Controller interface {
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	// Drain finishes the running jobs, takes no new ones, then pauses.
	Drain(ctx context.Context) error
	SetAutoAccept(ctx context.Context, on bool) error
	// AcceptOffer and DeclineOffer answer an offer that waits for the user.
	AcceptOffer(ctx context.Context, jobID string) error
	DeclineOffer(ctx context.Context, jobID string) error
	// CancelJob stops a running job; the hub gets a retryable fail so another worker runs it.
	CancelJob(ctx context.Context, jobID string) error
	// Reconnect drops the connection and dials again at once.
	Reconnect(ctx context.Context) error
	// Register pairs the worker with a Studio and connects.
	Register(ctx context.Context, req RegisterRequest) error
	// Settings returns the editable settings (secrets redacted).
	Settings(ctx context.Context) (Settings, error)
	// SaveSettings validates, persists and applies settings; a *ValidationError names each bad field.
	SaveSettings(ctx context.Context, s Settings) error
	// TestBackend asks a backend what it serves, for the settings page's Test button.
	TestBackend(ctx context.Context, kind protocol.Kind, b BackendForm) ([]string, error)
	// SetService turns "start with this computer" on (true) or off (false) the way this OS does
	// it for the window and the tray (autostart.go: a logon entry on Windows, a user unit or a
	// LaunchAgent elsewhere) and says in words what it did; State.AutoStart then shows what the
	// OS holds. The name stays from when it always installed a service: the control socket uses it.
	SetService(ctx context.Context, install bool) (string, error)
	// DetectBackends finds the inference backends on this machine, for the first-run page. It
	// talks to 127.0.0.1 and looks at PATH, nothing else.
	DetectBackends(ctx context.Context) ([]Detected, error)
	// StartDemo registers the worker, in memory only, with a reference hub in this process and
	// submits the demo jobs; StopDemo ends it and the worker waits to be registered again.
	StartDemo(ctx context.Context) error
	StopDemo(ctx context.Context) error
}

// Source is where a view gets the state from: the Observers in-process, the control socket's
// event stream when attached to a worker that runs elsewhere.
type Source interface {
	Subscribe() (State, *Subscription)
}

// RegisterRequest pairs a worker with a Studio.
type RegisterRequest struct {
	ServerURL   string `json:"server_url"`
	PairingCode string `json:"pairing_code"`
	Name        string `json:"name"`
	// Engines, when set, become the engines config with the registration (the backends ticked
	// on the first-run page); they are checked before anything is sent. A pointer keeps the
	// request comparable; nil keeps the engines as they are.
	Engines *BackendForms `json:"engines,omitempty"`
	// AllowInsecure, when set, is the Settings form's "Allow http://" box, which Register uses
	// and saves; nil keeps the configured one (the first-run page has no such box).
	AllowInsecure *bool `json:"allow_insecure,omitempty"`
}

// Settings is the part of the Config a person edits in the window.
type Settings struct {
	ServerURL         string       `json:"server_url"`
	Name              string       `json:"name"`
	VRAMThresholdGB   float64      `json:"vram_threshold_gb"`
	MaxConcurrentJobs int          `json:"max_concurrent_jobs"`
	AllowInsecure     bool         `json:"allow_insecure"`
	Engines           BackendForms `json:"engines"`
	Yield             YieldConfig  `json:"yield"`
	// Whether the worker starts with this computer is not a setting saved here: SetService
	// changes it in the OS at once, and State.AutoStart reports what the OS holds.
}

// SettingsOf extracts the editable settings of a config.
func SettingsOf(c Config) Settings {
	r := c.Redacted()
	return Settings{
		ServerURL: r.ServerURL, Name: r.Name, VRAMThresholdGB: r.VRAMThresholdGB,
		MaxConcurrentJobs: r.MaxConcurrentJobs, AllowInsecure: r.AllowInsecure,
		Engines: backendFormsOf(r.Engines), Yield: r.GPU.Yield,
	}
}

// apply puts settings into a config, keeping secrets that come back redacted.
func (s Settings) apply(c Config) Config {
	c.ServerURL, c.Name = s.ServerURL, s.Name
	c.VRAMThresholdGB, c.MaxConcurrentJobs = s.VRAMThresholdGB, s.MaxConcurrentJobs
	c.AllowInsecure = s.AllowInsecure
	c.GPU.Yield = s.Yield
	engines := make(engine.Config, len(s.Engines))
	for k, f := range s.Engines {
		b := f.config()
		if b.APIKey == "(set)" {
			b.APIKey = c.Engines[k].APIKey
		}
		engines[k] = b
	}
	c.Engines = engines
	return c
}

// ValidationError maps a settings field (its JSON key, e.g. "server_url" or "engines.image") to
// what is wrong with it, so a form shows each message next to its field.
type ValidationError struct {
	Fields map[string]string `json:"fields"`
}

func (e *ValidationError) Error() string {
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ": " + e.Fields[k]
	}
	return "invalid settings: " + strings.Join(parts, "; ")
}

// validationOf turns a config validation error into per-field messages.
func validationOf(err error) *ValidationError {
	var ce *ConfigError
	if errors.As(err, &ce) {
		key := ce.Key
		if key == "" {
			key = "settings"
		}
		if key == "gpu.yield.threshold_mb" || key == "gpu.yield.resume_after_s" {
			key = strings.TrimPrefix(key, "gpu.")
		}
		return &ValidationError{Fields: map[string]string{key: ce.Msg}}
	}
	return &ValidationError{Fields: map[string]string{"settings": err.Error()}}
}

// Errors the controller returns.
var (
	ErrNoSuchOffer = errors.New("no offer with that id is waiting")
	ErrNoSuchJob   = errors.New("no job with that id is running")
	ErrNotRunning  = errors.New("the worker is not connected to a Studio")
)

func noSuch(err error, id string) error { return fmt.Errorf("%w: %s", err, id) }
