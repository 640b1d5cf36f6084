// vram.go: what a backend itself says of VRAM for a job's model — Ollama's /api/ps (the model is
// loaded and holds N MB), ComfyUI's /system_stats (free VRAM as ComfyUI counts it) — each answer
// cached briefly per adapter. It must not know NVML, admission, the session or the window: it
// reports the backend's figure, and app decides what it means for an offer.

package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"studioworker/protocol"
)

// HeldVRAM is what a backend says of VRAM for one model. The zero value says nothing.
type HeldVRAM struct {
	// Backend names the server that said it, as a person names it ("Ollama", "ComfyUI").
	Backend string `json:"backend"`
	// Model is the model as the backend names it ("llama3.2:latest"); "" when the figure is not
	// per model (ComfyUI).
	Model string `json:"model,omitempty"`
	// Loaded: the backend has the model in memory now, holding HeldMB of VRAM (0 when it runs it
	// on the CPU).
	Loaded bool  `json:"loaded,omitempty"`
	HeldMB int64 `json:"held_mb,omitempty"`
	// Devices is free VRAM per device as the backend counts it; empty when it does not say.
	Devices []BackendDevice `json:"devices,omitempty"`
}

// BackendDevice is one device as a backend reports it. Index is the backend's own (CUDA's)
// index, which is NVML's unless CUDA_VISIBLE_DEVICES or CUDA_DEVICE_ORDER reorder them.
type BackendDevice struct {
	Index   int    `json:"index"`
	Name    string `json:"name,omitempty"`
	TotalMB int64  `json:"total_mb"`
	// FreeMB is free as the backend counts it: ComfyUI adds to the driver's free memory the
	// part of its own torch cache it is not using (CacheFreeMB), which NVML counts as used.
	FreeMB      int64 `json:"free_mb"`
	CacheFreeMB int64 `json:"cache_free_mb,omitempty"`
}

// VRAMHolder is implemented by an adapter whose backend can say what VRAM a model holds or may
// use. An error means no figure; it must never decline a job by itself.
type VRAMHolder interface {
	HeldVRAM(ctx context.Context, model string) (HeldVRAM, error)
}

// Cache timings of the backends' VRAM figures.
const (
	// figureTTL is how long one answer is used: offers arrive in bursts, and asking the backend
	// for each would load it for a figure that moves only when a model loads or unloads.
	figureTTL = 2 * time.Second
	// figureFetchTimeout bounds one request for a figure. It runs apart from the caller, who may
	// wait much less: the answer still fills the cache for the next offer.
	figureFetchTimeout = 2 * time.Second
	// maxFigureBody caps what is read of an answer; maxPSModels, how many loaded models are kept.
	maxFigureBody = 1 << 20
	maxPSModels   = 64
)

// figureCache holds a backend's last answer for figureTTL and lets callers share the one request
// in flight, so a slow backend is asked once however many offers arrive. The zero value is ready.
type figureCache[T any] struct {
	now func() time.Time // nil = time.Now

	mu   sync.Mutex
	at   time.Time
	val  T
	err  error
	have bool
	wait chan struct{} // closed when the request in flight ends; nil when none
}

func (c *figureCache[T]) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

// get returns the cached answer while it is fresh, else asks fetch (once, for every caller) and
// waits for it at most as long as ctx lets it. A failed answer is cached too: a backend that does
// not answer is not asked again for every offer.
func (c *figureCache[T]) get(ctx context.Context, fetch func(context.Context) (T, error)) (T, error) {
	c.mu.Lock()
	if c.have && c.clock().Sub(c.at) < figureTTL {
		v, err := c.val, c.err
		c.mu.Unlock()
		return v, err
	}
	wait := c.wait
	if wait == nil {
		wait = make(chan struct{})
		c.wait = wait
		// Without the caller's cancel: one that gives up soon must not fail the request the
		// next caller would get its answer from.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), figureFetchTimeout)
		go func() {
			defer cancel()
			v, err := fetch(fctx)
			c.mu.Lock()
			c.val, c.err, c.at, c.have, c.wait = v, err, c.clock(), true, nil
			c.mu.Unlock()
			close(wait)
		}()
	}
	c.mu.Unlock()
	select {
	case <-wait:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.val, c.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("engine: waiting for the backend's VRAM figure: %w", ctx.Err())
	}
}

// getFigure GETs url and decodes its JSON answer into v; an error says the backend gave no figure.
func getFigure(ctx context.Context, client *http.Client, url, apiKey string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("engine: VRAM figure request: %w", err)
	}
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("engine: GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Most OpenAI-compatible servers other than Ollama have no /api/ps: a 404 is expected.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return fmt.Errorf("engine: GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxFigureBody)).Decode(v); err != nil {
		return fmt.Errorf("engine: GET %s: unreadable answer: %w", url, err)
	}
	return nil
}

// psModel is one entry of Ollama's GET /api/ps: a model loaded now.
type psModel struct {
	Name     string `json:"name"`
	Model    string `json:"model"`
	SizeVRAM int64  `json:"size_vram"` // bytes
}

// ollamaRoot is the server's root, where Ollama's own API lives: the configured URL without /v1.
func ollamaRoot(u string) string {
	u = strings.TrimRight(u, "/")
	return strings.TrimSuffix(u, "/v1")
}

// HeldVRAM implements VRAMHolder: whether Ollama (GET <root>/api/ps) has model loaded, and how
// much VRAM it holds. Other OpenAI-compatible servers answer /api/ps with a 404: no figure.
func (o *openAI) HeldVRAM(ctx context.Context, model string) (HeldVRAM, error) {
	loaded, err := o.ps.get(ctx, func(ctx context.Context) ([]psModel, error) {
		var ans struct {
			Models []psModel `json:"models"`
		}
		if err := getFigure(ctx, o.client, ollamaRoot(o.cfg.URL)+"/api/ps", o.cfg.APIKey, &ans); err != nil {
			return nil, err
		}
		if len(ans.Models) > maxPSModels {
			ans.Models = ans.Models[:maxPSModels]
		}
		return ans.Models, nil
	})
	if err != nil {
		return HeldVRAM{}, err
	}
	for _, m := range loaded {
		// Ollama names a model pulled without a tag "x:latest"; a job may say "x".
		if sameModel(m.Name, model) || sameModel(m.Model, model) {
			return HeldVRAM{Backend: "Ollama", Model: m.Name, Loaded: true, HeldMB: max(m.SizeVRAM, 0) >> 20}, nil
		}
	}
	return HeldVRAM{Backend: "Ollama"}, nil
}

// comfyDevice is one entry of ComfyUI's GET /system_stats devices (bytes).
type comfyDevice struct {
	Name          string `json:"name"`
	Type          string `json:"type"`
	Index         *int   `json:"index"`
	VRAMTotal     int64  `json:"vram_total"`
	VRAMFree      int64  `json:"vram_free"`
	TorchVRAMFree int64  `json:"torch_vram_free"`
}

// HeldVRAM implements VRAMHolder: free VRAM as ComfyUI counts it (GET /system_stats), whatever
// the model. ComfyUI's vram_free is the driver's free memory plus torch_vram_free, the part of
// its own cache it is not using; the driver, and so NVML, counts that cache as used.
func (c *comfyUI) HeldVRAM(ctx context.Context, model string) (HeldVRAM, error) {
	devs, err := c.stats.get(ctx, func(ctx context.Context) ([]BackendDevice, error) {
		var ans struct {
			Devices []comfyDevice `json:"devices"`
		}
		if err := getFigure(ctx, c.client, joinURL(c.cfg.URL, "/system_stats"), "", &ans); err != nil {
			return nil, err
		}
		var out []BackendDevice
		for i, d := range ans.Devices {
			if d.Type == "cpu" || d.VRAMTotal <= 0 || i >= maxPSModels {
				continue // ComfyUI on the CPU has no VRAM to speak of
			}
			idx := i
			if d.Index != nil {
				idx = *d.Index
			}
			out = append(out, BackendDevice{Index: idx, Name: d.Name, TotalMB: d.VRAMTotal >> 20,
				FreeMB: max(d.VRAMFree, 0) >> 20, CacheFreeMB: max(d.TorchVRAMFree, 0) >> 20})
		}
		if len(out) == 0 {
			return nil, errors.New("engine: comfyui /system_stats lists no GPU")
		}
		return out, nil
	})
	if err != nil {
		return HeldVRAM{}, err
	}
	return HeldVRAM{Backend: "ComfyUI", Devices: append([]BackendDevice(nil), devs...)}, nil
}

// HeldVRAM asks the backend of kind what it says of VRAM for model (the kind's first model when
// model is ""). ok is false when its adapter says nothing of VRAM or the backend did not answer
// within ctx: then there is no figure, never a reason to decline.
func (r *Router) HeldVRAM(ctx context.Context, kind protocol.Kind, model string) (HeldVRAM, bool) {
	b, found := r.backends[kind]
	if !found {
		return HeldVRAM{}, false
	}
	h, isHolder := b.(VRAMHolder)
	if !isHolder {
		return HeldVRAM{}, false
	}
	if model == "" {
		// As Run picks it, so the figure is for the model the job will run on.
		r.mu.Lock()
		if ms := r.known[kind]; len(ms) > 0 {
			model = ms[0]
		}
		r.mu.Unlock()
	}
	v, err := h.HeldVRAM(ctx, model)
	if err != nil {
		r.logger.Debug("engine: no VRAM figure from the backend", "kind", kind, "backend", b.name(), "model", model, "err", err)
		return HeldVRAM{}, false
	}
	return v, true
}
