package engine

import (
	"context"
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
			r.caps.Down[k] = "not checked yet"
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
func ProbeBackend(ctx context.Context, kind protocol.Kind, bc BackendConfig, client *http.Client) ([]string, error) {
	if err := (Config{kind: bc}).Validate(); err != nil {
		return nil, err
	}
	if client == nil {
		client = &http.Client{}
	}
	b, err := newBackend(kind, bc, client, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	return b.models(ctx)
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
func (r *Router) Refresh(ctx context.Context) Capabilities {
	r.refreshMu.Lock()
	defer r.refreshMu.Unlock()

	type answer struct {
		kind   protocol.Kind
		models []string
		err    error
	}
	answers := make(chan answer, len(r.backends))
	for k, b := range r.backends {
		go func() {
			pctx, cancel := context.WithTimeout(ctx, r.probeTimeout)
			defer cancel()
			ms, err := b.models(pctx)
			answers <- answer{k, ms, err}
		}()
	}
	next := Capabilities{Engine: r.engine, Models: map[protocol.Kind][]string{}, VRAMGB: map[protocol.Kind]float64{}, Down: map[protocol.Kind]string{}}
	for range r.backends {
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
// ctx; it returns at once. Wait waits for that goroutine. Only the first call starts it.
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
		t := time.NewTicker(r.refreshEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				r.Refresh(ctx)
			}
		}
	}()
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
	if len(models) > 0 && !slices.Contains(models, job.Model) {
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
