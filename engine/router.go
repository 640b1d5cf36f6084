// router.go: the engine router — one backend per kind from the config, their capabilities and
// health, and Run handed to the right one. It must not know the session.

package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"studioworker/protocol"
)

// Defaults of Options.
const (
	DefaultRefreshEvery = 60 * time.Second
	DefaultProbeTimeout = 5 * time.Second
)

// Capabilities are the kinds and models this worker can serve now, as discovered from the backends.
type Capabilities struct {
	// Engine is "synthetic" when every configured kind is synthetic, else the configured
	// backends in kind order, comma-separated ("openai,comfyui").
	Engine string
	// Models lists the models per kind, for the kinds whose backend answers.
	Models map[protocol.Kind][]string
	// VRAMGB is the configured VRAM figure per kind, for the kinds listed in Models.
	VRAMGB map[protocol.Kind]float64
	// Down lists the configured kinds dropped because their backend did not answer, with why.
	Down map[protocol.Kind]string
}

// Kinds returns the kinds that can be served now, in protocol order.
func (c Capabilities) Kinds() []protocol.Kind {
	var ks []protocol.Kind
	for _, k := range protocol.Kinds() {
		if _, ok := c.Models[k]; ok {
			ks = append(ks, k)
		}
	}
	return ks
}

// Apply fills the engine, kinds and models of the capabilities sent to the hub.
func (c Capabilities) Apply(p *protocol.Capabilities) {
	p.Engine = c.Engine
	p.TaskKinds = protocol.List[protocol.Kind]{}
	p.SupportedModels = protocol.List[string]{}
	p.SupportedModelsPerKind = protocol.ModelsPerKind{}
	for _, k := range c.Kinds() {
		p.TaskKinds = append(p.TaskKinds, k)
		p.SupportedModelsPerKind[k] = append(protocol.List[string]{}, c.Models[k]...)
		for _, m := range c.Models[k] {
			if !slices.Contains(p.SupportedModels, m) {
				p.SupportedModels = append(p.SupportedModels, m)
			}
		}
	}
}

func (c Capabilities) clone() Capabilities {
	out := Capabilities{Engine: c.Engine, Models: map[protocol.Kind][]string{}, VRAMGB: maps.Clone(c.VRAMGB), Down: maps.Clone(c.Down)}
	for k, ms := range c.Models {
		out.Models[k] = slices.Clone(ms)
	}
	if out.VRAMGB == nil {
		out.VRAMGB = map[protocol.Kind]float64{}
	}
	if out.Down == nil {
		out.Down = map[protocol.Kind]string{}
	}
	return out
}

// Options tune a Router; the zero value is usable.
type Options struct {
	Logger *slog.Logger
	// Client makes the backends' HTTP requests (no overall Timeout: answers stream).
	Client *http.Client
	// RefreshEvery is how often Start asks the backends again (default 60 s).
	RefreshEvery time.Duration
	// ProbeTimeout bounds one backend's answer to a refresh (default 5 s).
	ProbeTimeout time.Duration
}

// Router runs each job on the backend configured for its kind and keeps the capabilities.
type Router struct {
	backends     map[protocol.Kind]backend
	cfg          Config
	logger       *slog.Logger
	refreshEvery time.Duration
	probeTimeout time.Duration
	engine       string

	refreshMu sync.Mutex // one refresh at a time, so their results land in order

	mu       sync.Mutex
	caps     Capabilities
	known    map[protocol.Kind][]string // models last seen per kind, kept while a backend is down
	onChange []func(Capabilities)
	started  bool
	done     chan struct{}
	// wake tells the refresher that a job found a backend down, so probing starts now.
	wake chan struct{}
	// missing is the configured models each kind's backend lacked at the last refresh, as
	// logged; refreshes take turns (refreshMu), so it needs no lock of its own.
	missing map[protocol.Kind]string
}

// NewRouter builds the backends of cfg. A nil logger discards; a nil client is a plain one.
func NewRouter(cfg Config, logger *slog.Logger, client *http.Client) (*Router, error) {
	return New(cfg, Options{Logger: logger, Client: client})
}

// New builds the backends of cfg with options.
func New(cfg Config, opts Options) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.RefreshEvery <= 0 {
		opts.RefreshEvery = DefaultRefreshEvery
	}
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = DefaultProbeTimeout
	}
	r := &Router{
		backends:     map[protocol.Kind]backend{},
		cfg:          cfg,
		logger:       opts.Logger.With("source", "engine"),
		refreshEvery: opts.RefreshEvery,
		probeTimeout: opts.ProbeTimeout,
		known:        map[protocol.Kind][]string{},
		done:         make(chan struct{}),
		wake:         make(chan struct{}, 1),
		missing:      map[protocol.Kind]string{},
	}
	var names []string
	for _, k := range protocol.Kinds() {
		bc, ok := cfg[k]
		if !ok {
			continue
		}
		b, err := newBackend(k, bc, opts.Client, r.logger)
		if err != nil {
			return nil, err
		}
		r.backends[k] = b
		if !slices.Contains(names, bc.Backend) {
			names = append(names, bc.Backend)
		}
		if len(bc.Models) > 0 {
			r.known[k] = slices.Clone(bc.Models)
		}
	}
	r.engine = strings.Join(names, ",")
	// Until the first refresh, only what needs no network is known: the synthetic backend, and
	// whether an exec backend's program is installed.
	r.caps = Capabilities{Engine: r.engine, Models: map[protocol.Kind][]string{}, VRAMGB: map[protocol.Kind]float64{}, Down: map[protocol.Kind]string{}}
	for k, b := range r.backends {
		if e, ok := b.(*execBackend); ok && len(e.cfg.Probe) > 0 {
			// A probe runs a program, with the refresh's timeout: not here.
			r.caps.Down[k] = NotCheckedYet
			continue
		}
		switch b.(type) {
		case *synthetic, *execBackend:
			ms, err := b.models(context.Background())
			if err != nil {
				r.caps.Down[k] = err.Error()
				continue
			}
			r.caps.Models[k] = ms
			r.caps.VRAMGB[k] = cfg[k].VRAMGB
			r.known[k] = ms
		default:
			r.caps.Down[k] = NotCheckedYet
		}
	}
	return r, nil
}

func newBackend(kind protocol.Kind, bc BackendConfig, client *http.Client, logger *slog.Logger) (backend, error) {
	switch bc.Backend {
	case BackendSynthetic:
		return &synthetic{kind: kind, cfg: bc}, nil
	case BackendOpenAI:
		return &openAI{kind: kind, cfg: bc, client: client, logger: logger}, nil
	case BackendComfyUI:
		return newComfyUI(kind, bc, client, logger)
	case BackendExec:
		return &execBackend{kind: kind, cfg: bc, logger: logger}, nil
	}
	return nil, fmt.Errorf("engines.%s.backend: unknown backend %q", kind, bc.Backend)
}

// ProbeBackend asks one backend configuration which models it serves, for the UI's Test button.
// Without a deadline on ctx it waits DefaultProbeTimeout, as a check of the backends does: an exec
// probe that never ends must not hold the button.
func ProbeBackend(ctx context.Context, kind protocol.Kind, bc BackendConfig, client *http.Client) ([]string, error) {
	if err := (Config{kind: bc}).Validate(); err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultProbeTimeout)
		defer cancel()
	}
	if client == nil {
		client = &http.Client{}
	}
	b, err := newBackend(kind, bc, client, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	ms, err := b.models(ctx)
	if err != nil {
		return nil, err
	}
	if _, missing := matchModels(bc.Models, ms); len(missing) > 0 {
		// The Settings page shows this by the models field: a job for such a model would
		// otherwise run on whatever the backend has loaded.
		return ms, unsupported("models", "the backend does not have %s (it serves %s)", strings.Join(missing, ", "), strings.Join(ms, ", "))
	}
	return ms, nil
}

// Capabilities returns the capabilities found by the last refresh; it never waits on a backend.
func (r *Router) Capabilities() Capabilities {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.caps.clone()
}

// OnChange registers fn, called after a refresh that changed the capabilities (from the
// refreshing goroutine; fn must not block for long).
func (r *Router) OnChange(fn func(Capabilities)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onChange = append(r.onChange, fn)
}

// Refresh asks every backend now which models it serves and returns the new capabilities.
// A backend that does not answer within the probe timeout drops its kind until it answers again.
func (r *Router) Refresh(ctx context.Context) Capabilities { return r.refresh(ctx, false) }

// refresh asks every backend, or with downOnly those whose kind is down (the rest keep what the
// last refresh found), so that probing a dead backend every few seconds costs the live ones
// nothing.
func (r *Router) refresh(ctx context.Context, downOnly bool) Capabilities {
	r.refreshMu.Lock()
	defer r.refreshMu.Unlock()
	probe := r.backends
	base := Capabilities{Engine: r.engine, Models: map[protocol.Kind][]string{}, VRAMGB: map[protocol.Kind]float64{}, Down: map[protocol.Kind]string{}}
	if downOnly {
		base = r.Capabilities()
		probe = map[protocol.Kind]backend{}
		for k := range base.Down {
			if b, ok := r.backends[k]; ok {
				probe[k] = b
				delete(base.Down, k)
			}
		}
	}

	type answer struct {
		kind   protocol.Kind
		models []string
		err    error
	}
	answers := make(chan answer, len(probe))
	for k, b := range probe {
		go func() {
			pctx, cancel := context.WithTimeout(ctx, r.probeTimeout)
			defer cancel()
			ms, err := b.models(pctx)
			answers <- answer{k, ms, err}
		}()
	}
	next := base
	for range probe {
		a := <-answers
		if a.err != nil {
			next.Down[a.kind] = a.err.Error()
			continue
		}
		next.Models[a.kind] = a.models
		next.VRAMGB[a.kind] = r.cfg[a.kind].VRAMGB
	}
	if ctx.Err() != nil {
		// The caller gave up: probes failed for that reason, not the backends'.
		return r.Capabilities()
	}

	r.mu.Lock()
	prev := r.caps
	if downOnly {
		// A job may have found another backend down while we probed: keep that.
		for k, why := range prev.Down {
			if _, probed := probe[k]; !probed {
				delete(next.Models, k)
				next.Down[k] = why
			}
		}
	}
	changed := !reflect.DeepEqual(prev, next)
	r.caps = next
	for k, ms := range next.Models {
		r.known[k] = ms
	}
	callbacks := slices.Clone(r.onChange)
	r.mu.Unlock()

	for _, k := range protocol.Kinds() {
		b, ok := r.backends[k]
		if !ok {
			continue
		}
		if ms, up := next.Models[k]; up {
			r.warnMissing(k, b, ms)
		}
		_, wasUp := prev.Models[k]
		_, isUp := next.Models[k]
		switch {
		case !isUp && (wasUp || prev.Down[k] != next.Down[k]):
			r.logger.Warn("engine: backend not answering; its kind is dropped from the capabilities",
				"kind", k, "backend", b.name(), "err", next.Down[k])
		case isUp && !wasUp:
			r.logger.Info("engine: backend answering; its kind is offered", "kind", k, "backend", b.name(), "models", next.Models[k])
		}
	}
	if changed {
		for _, fn := range callbacks {
			fn(next.clone())
		}
	}
	return next.clone()
}

// Start refreshes the capabilities now and then every RefreshEvery, on a goroutine that ends with
// ctx; it returns at once. While a kind is down its backend alone is probed again much sooner
// (probeDelay), so that it is offered again within seconds of answering. Wait waits for that
// goroutine. Only the first call starts it.
func (r *Router) Start(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return
	}
	r.started = true
	go func() {
		defer close(r.done)
		r.Refresh(ctx)
		lastFull := time.Now()
		tries := 0 // probes of the down kinds since one went down
		t := time.NewTimer(0)
		defer t.Stop()
		for {
			wait := r.refreshEvery - time.Since(lastFull)
			if len(r.Capabilities().Down) > 0 {
				wait = min(wait, probeDelay(tries))
			} else {
				tries = 0
			}
			t.Reset(max(wait, 0))
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
				tries = 0 // Reset at the top of the loop drops the old deadline (Go 1.23 timers)
				continue
			case <-t.C:
			}
			if time.Since(lastFull) >= r.refreshEvery {
				r.Refresh(ctx)
				lastFull = time.Now()
			} else {
				r.refresh(ctx, true)
				tries++
			}
		}
	}()
}

// warnMissing logs, when it changes, which configured models of kind the backend lacks: they are
// not advertised, and the creator should know why. Only the refresher calls it.
func (r *Router) warnMissing(kind protocol.Kind, b backend, served []string) {
	_, missing := matchModels(r.cfg[kind].Models, served)
	text := strings.Join(missing, ", ")
	if r.missing[kind] == text {
		return
	}
	r.missing[kind] = text
	if text != "" {
		r.logger.Warn("engine: configured models the backend does not have are not offered",
			"kind", kind, "backend", b.name(), "missing", text, "served", strings.Join(served, ", "))
	}
}

// probeDelay is the wait before the n-th probe of a down backend: 250 ms, then doubling, at most
// maxProbeDelay, so a backend that answers again is offered again within about 4 s plus one probe.
func probeDelay(n int) time.Duration {
	return min(250*time.Millisecond<<min(n, 8), maxProbeDelay)
}

const maxProbeDelay = 4 * time.Second

// NotCheckedYet is the Down reason of a network backend before the first refresh: not a failure,
// so nothing should announce it as one.
const NotCheckedYet = "not checked yet"

// reportDown takes a kind out of the capabilities at once because a job could not reach its
// backend, instead of waiting for the next refresh to notice, and starts probing it.
func (r *Router) reportDown(kind protocol.Kind, err error) {
	r.mu.Lock()
	if _, up := r.caps.Models[kind]; !up {
		r.mu.Unlock()
		return
	}
	next := r.caps.clone()
	delete(next.Models, kind)
	delete(next.VRAMGB, kind)
	next.Down[kind] = err.Error()
	r.caps = next
	callbacks := slices.Clone(r.onChange)
	r.mu.Unlock()
	r.logger.Warn("engine: a job could not reach its backend; its kind is dropped from the capabilities until it answers again",
		"kind", kind, "backend", r.backends[kind].name(), "err", err)
	select {
	case r.wake <- struct{}{}:
	default:
	}
	for _, fn := range callbacks {
		fn(next.clone())
	}
}

// Wait returns once the goroutine started by Start has stopped (at once if it never started).
func (r *Router) Wait() {
	r.mu.Lock()
	started := r.started
	r.mu.Unlock()
	if started {
		<-r.done
	}
}

// Run runs job on its kind's backend. It refuses, without retry, a kind not configured, a model
// not served and invalid input, and checks that a result is where it must be.
func (r *Router) Run(ctx context.Context, job Job, progress Progress) (Result, error) {
	b, ok := r.backends[job.Kind]
	if !ok {
		return Result{}, unsupported("kind", "no backend is configured for %s jobs", job.Kind)
	}
	r.mu.Lock()
	models := slices.Clone(r.known[job.Kind])
	r.mu.Unlock()
	if job.Model == "" && len(models) > 0 {
		job.Model = models[0]
	}
	if len(models) > 0 && !slices.ContainsFunc(models, func(m string) bool { return sameModel(m, job.Model) }) {
		return Result{}, unsupported("model", "model %q is not served for %s jobs here (served: %s)", job.Model, job.Kind, strings.Join(models, ", "))
	}
	if err := validateInput(job, r.cfg[job.Kind].limits()); err != nil {
		return Result{}, err
	}
	log := r.logger.With("job_id", job.ID, "kind", job.Kind, "backend", b.name(), "model", job.Model)
	log.Debug("engine: job started")
	start := time.Now()
	res, err := b.Run(ctx, job, monotonic(progress))
	if err == nil {
		err = checkResult(job, res)
	}
	if err != nil {
		if res.File != "" && insideDir(job.SpoolDir, res.File) {
			removeQuietly(res.File)
		}
		log.Warn("engine: job failed", "err", err, "retryable", Retryable(err), "took", time.Since(start).Round(time.Millisecond))
		if errors.Is(err, ErrBackendDown) && ctx.Err() == nil {
			r.reportDown(job.Kind, err)
		}
		return Result{}, err
	}
	log.Debug("engine: job done", "took", time.Since(start).Round(time.Millisecond))
	return res, nil
}

// checkResult makes sure a backend kept the contract of Result.
func checkResult(job Job, res Result) error {
	if !job.Kind.BinaryResult() {
		if len(res.JSON) == 0 {
			return &Error{Retry: true, Err: fmt.Errorf("%w: no JSON result for a %s job", ErrBackendFailed, job.Kind)}
		}
		return nil
	}
	if res.File == "" || !insideDir(job.SpoolDir, res.File) {
		return &Error{Retry: true, Err: fmt.Errorf("%w: the result file %q is not inside the spool folder", ErrBackendFailed, res.File)}
	}
	if !job.Kind.AllowedExt(res.Ext) || !strings.EqualFold(strings.TrimPrefix(filepath.Ext(res.File), "."), res.Ext) {
		return &Error{Retry: true, Err: fmt.Errorf("%w: result type %q is not allowed for %s", ErrBackendFailed, res.Ext, job.Kind)}
	}
	return nil
}
