// commands.go is what the creator (the window, the tray, the CLI over the control channel) asks
// of the worker: pause, resume, drain, auto-accept, answers to offers, cancel, reconnect,
// register, settings, autostart — and the config saves they cause, which take turns.

package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"

	"studioworker/engine"
	"studioworker/gpu"
	"studioworker/protocol"
	"studioworker/session"
)

// Pause stops taking offers; running jobs finish. It is remembered across restarts.
func (w *Worker) Pause(ctx context.Context) error {
	return w.changeConfig(func(c *Config) { c.Paused = true; w.drainReq = false }, "paused by you")
}

// Resume takes offers again.
func (w *Worker) Resume(ctx context.Context) error {
	return w.changeConfig(func(c *Config) { c.Paused = false; w.drainReq = false }, "resumed by you")
}

// Drain finishes the running jobs, takes no new ones, then pauses.
func (w *Worker) Drain(ctx context.Context) error {
	w.mu.Lock()
	idle := len(w.slots) == 0
	w.mu.Unlock()
	if idle {
		return w.Pause(ctx)
	}
	w.mu.Lock()
	w.drainReq = true
	w.mu.Unlock()
	w.log.Info("finishing the running job, then pausing", "source", "worker")
	w.publishMode()
	return nil
}

// SetAutoAccept turns auto-accept on or off; turning it on answers the offers waiting for the user.
func (w *Worker) SetAutoAccept(ctx context.Context, on bool) error {
	err := w.changeConfig(func(c *Config) { c.AutoAccept = on }, map[bool]string{true: "auto-accept on", false: "auto-accept off"}[on])
	if err != nil {
		return err
	}
	if on {
		w.mu.Lock()
		for _, p := range w.pending {
			select {
			case p.decide <- true:
			default:
			}
		}
		w.mu.Unlock()
	}
	w.rebuildCaps()
	return nil
}

// changeConfig applies a change under the lock, persists it and republishes the mode.
func (w *Worker) changeConfig(fn func(*Config), what string) error {
	w.mu.Lock()
	fn(&w.cfg)
	w.mu.Unlock()
	w.log.Info(what, "source", "worker")
	w.publishMode()
	return w.persist()
}

// persist saves the config as it is now. Saves take turns, and each reads the config when its
// turn comes, so the file always ends as the newest config: two changes racing cannot leave the
// older one on disk. A config that encodes as the last one saved is not written again; every one
// that is moves State.ConfigRev, in turn, so a window knows to reload its Settings form.
func (w *Worker) persist() error {
	w.saving.Lock()
	defer w.saving.Unlock()
	cfg := w.withoutDemo(w.Config())
	data, err := encodeConfig(cfg)
	if err != nil {
		return fmt.Errorf("save settings: %w", err)
	}
	if w.saved != nil && bytes.Equal(w.saved, data) {
		return nil
	}
	if w.opts.ConfigPath != "" {
		if err := SaveConfig(w.opts.ConfigPath, cfg); err != nil {
			w.log.Error("could not save the settings", "source", "worker", "err", err)
			return fmt.Errorf("save settings: %w", err)
		}
	}
	w.saved = data
	w.update(func(s *State) { s.ConfigRev++ })
	return nil
}

// sameOnDisk reports whether two configs would be written as the same file.
func sameOnDisk(a, b Config) bool {
	da, errA := encodeConfig(a)
	db, errB := encodeConfig(b)
	return errA == nil && errB == nil && bytes.Equal(da, db)
}

// AcceptOffer answers an offer that waits for the user.
func (w *Worker) AcceptOffer(ctx context.Context, jobID string) error { return w.decide(jobID, true) }

// DeclineOffer answers an offer that waits for the user.
func (w *Worker) DeclineOffer(ctx context.Context, jobID string) error { return w.decide(jobID, false) }

func (w *Worker) decide(jobID string, yes bool) error {
	w.mu.Lock()
	p, ok := w.pending[jobID]
	w.mu.Unlock()
	if !ok {
		return noSuch(ErrNoSuchOffer, jobID)
	}
	select {
	case p.decide <- yes:
	default: // already answered
	}
	return nil
}

// CancelJob stops a running job; the hub gets a retryable fail and offers it elsewhere.
func (w *Worker) CancelJob(ctx context.Context, jobID string) error {
	s := w.session()
	if s == nil || !s.CancelJob(jobID) {
		return noSuch(ErrNoSuchJob, jobID)
	}
	w.mu.Lock()
	w.noteCancelled(jobID, w.now())
	w.mu.Unlock()
	w.log.Info("job cancelled by you: the Studio gives it to another worker, and this one declines it if offered again", "source", "worker", "job_id", jobID)
	return nil
}

// Reconnect drops the connection and dials again at once (or retries after a rejection).
func (w *Worker) Reconnect(ctx context.Context) error {
	if s := w.session(); s != nil {
		s.Reconnect()
		return nil
	}
	w.requestRestart()
	return nil
}

// Register pairs the worker with a Studio, saves the credentials and (re)connects.
func (w *Worker) Register(ctx context.Context, req RegisterRequest) error {
	w.endDemo() // registering for real ends a demo
	cfg := w.Config()
	if req.ServerURL == "" {
		req.ServerURL = cfg.ServerURL
	}
	if req.Name == "" {
		req.Name = cfg.Name
	}
	if req.Name == "" {
		req.Name, _ = os.Hostname()
	}
	insecure := cfg.AllowInsecure
	if req.AllowInsecure != nil { // the Settings form's box, ticked but not saved yet
		insecure = *req.AllowInsecure
	}
	if err := session.CheckServerURL(req.ServerURL, insecure); err != nil {
		field, why := registerProblem(err, req.ServerURL)
		return &ValidationError{Fields: map[string]string{field: why}}
	}
	if req.PairingCode == "" {
		return &ValidationError{Fields: map[string]string{"pairing_code": "enter the pairing code from your Studio"}}
	}
	engines, err := w.registerEngines(req.Engines) // checked before anything is sent
	if err != nil {
		return err
	}
	resp, err := session.Register(ctx, w.client, req.ServerURL, insecure, req.Name, req.PairingCode)
	if err != nil {
		w.log.Warn("registration failed", "source", "worker", "server", hostOf(req.ServerURL), "err", err)
		field, why := registerProblem(err, req.ServerURL)
		return &ValidationError{Fields: map[string]string{field: why}}
	}
	if engines != nil {
		if err := w.swapEngines(engines); err != nil {
			return &ValidationError{Fields: map[string]string{"engines": err.Error()}}
		}
		w.rebuildCaps() // the new router may never report a change: it starts knowing its programs
	}
	w.mu.Lock()
	w.cfg.ServerURL, w.cfg.Name = req.ServerURL, req.Name
	w.cfg.AllowInsecure = insecure
	w.cfg.WorkerID, w.cfg.AuthToken = resp.WorkerID, resp.AuthToken
	if engines != nil {
		w.cfg.Engines = engines
	}
	w.mu.Unlock()
	if err := w.persist(); err != nil {
		return err
	}
	w.log.Info("registered with the Studio", "source", "worker", "server", hostOf(req.ServerURL), "worker_id", resp.WorkerID)
	w.setConn(ConnInfo{State: string(session.ConnConnecting)})
	w.requestRestart()
	return nil
}

// Settings returns the editable settings.
func (w *Worker) Settings(ctx context.Context) (Settings, error) {
	// The settings page loading (or its Reload) is when a person looks: read the OS again, for a
	// change made meanwhile by `studio-worker autostart` or by hand.
	w.refreshAutoStart()
	return SettingsOf(w.Config()), nil
}

// SaveSettings validates, persists and applies settings. Settings equal to the current ones
// change nothing: no write, no new ConfigRev, no reconnect.
func (w *Worker) SaveSettings(ctx context.Context, s Settings) error {
	old := w.Config()
	next := s.apply(old)
	if sameOnDisk(old, next) {
		// Nothing edited (a form saved as it was loaded): nothing is written, nothing restarts.
		return nil
	}
	if err := next.Validate(); err != nil {
		return validationOf(err)
	}
	if !reflect.DeepEqual(old.Engines, next.Engines) {
		if err := w.swapEngines(next.Engines); err != nil {
			return &ValidationError{Fields: map[string]string{"engines": err.Error()}}
		}
	}
	w.mu.Lock()
	// Applied to the config as it is now, not to the copy read above: a Pause or an auto-accept
	// toggle made meanwhile is not the form's to undo.
	w.cfg = s.apply(w.cfg)
	w.yielder = gpu.NewYielder(yieldPolicy(w.cfg.GPU.Yield))
	w.mu.Unlock()
	if err := w.persist(); err != nil {
		return err
	}
	w.rebuildCaps()
	w.publishMode()
	w.update(func(st *State) {
		st.GPU.CapGB = next.VRAMThresholdGB
		st.ServerURL = next.ServerURL
		st.Name = next.Name
	})
	if old.ServerURL != next.ServerURL || old.AllowInsecure != next.AllowInsecure {
		w.requestRestart()
	}
	w.log.Info("settings saved", "source", "worker")
	return nil
}

// TestBackend asks a backend what it serves.
func (w *Worker) TestBackend(ctx context.Context, kind protocol.Kind, f BackendForm) ([]string, error) {
	b := f.config()
	if b.APIKey == "(set)" {
		b.APIKey = w.Config().Engines[kind].APIKey
	}
	models, err := engine.ProbeBackend(ctx, kind, b, w.client)
	if err != nil {
		return nil, &ValidationError{Fields: map[string]string{"engines." + string(kind): backendProblem(err, f)}}
	}
	return models, nil
}

// SetService turns "start with this computer" on or off through this OS's autostarter, then
// publishes what the OS holds, whether or not the change worked.
func (w *Worker) SetService(ctx context.Context, install bool) (string, error) {
	as := w.opts.autostart
	if as == nil {
		return "", errors.New("start with this computer: this worker has no config file to start with: save the settings or register first")
	}
	set := as.Disable
	if install {
		set = as.Enable
	}
	done, err := set()
	w.refreshAutoStart()
	if err != nil {
		return "", err
	}
	w.log.Info("start with this computer: "+done, "source", "worker")
	return done, nil
}

// refreshAutoStart reads what starts the worker with this computer into the State, and into the
// capabilities when that changes. A read that fails says so in the State's words.
func (w *Worker) refreshAutoStart() {
	as := w.opts.autostart
	if as == nil {
		return
	}
	w.autoRead.Lock()
	defer w.autoRead.Unlock()
	st, err := as.Status()
	if err != nil {
		st = AutoStart{Text: "Could not tell what starts the worker with this computer: " + err.Error()}
	}
	w.mu.Lock()
	changed := w.autoStarts != st.Starts()
	w.autoStarts = st.Starts()
	w.mu.Unlock()
	w.update(func(s *State) { s.AutoStart = st })
	if changed {
		w.rebuildCaps()
	}
}
