// backendvram.go: what the backends themselves say of VRAM (engine.VRAMHolder: Ollama's loaded
// models, ComfyUI's free memory), gathered for admission within a short wait and kept in
// State.GPU.Backends for the window beside the GPU samples. It must not decide admission (Admit
// does) nor know how a backend is asked (the engine does).

package app

import (
	"context"
	"reflect"
	"slices"
	"time"

	"studioworker/engine"
	"studioworker/gpu"
	"studioworker/protocol"
)

const (
	// backendFigureWait bounds how long an offer waits for its backend's figure: past it, the
	// offer is decided on NVML's alone, so a slow backend never holds an offer up.
	backendFigureWait = 300 * time.Millisecond
	// backendVRAMEvery is how often State.GPU.Backends is asked again, at a GPU sample: the
	// figures move when a model loads or unloads, not every sample.
	backendVRAMEvery = 5 * time.Second
	// backendVRAMAskFor bounds one refresh of State.GPU.Backends.
	backendVRAMAskFor = 2 * time.Second
	// maxBackendVRAMShown bounds State.GPU.Backends.
	maxBackendVRAMShown = 16
)

// backendFigure asks the offer's backend what it says of VRAM for the offer's model, when that
// can change the answer: the offer states an estimate and NVML gives free memory to weigh it
// against. Without an answer within backendFigureWait there is no figure. Called off w.mu.
func (w *Worker) backendFigure(claim protocol.Claim, snap gpu.Snapshot) (engine.HeldVRAM, bool) {
	if claim.VRAMGBEstimate <= 0 || snap.Source == gpu.SourceNone || len(snap.Devices) == 0 {
		return engine.HeldVRAM{}, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), backendFigureWait)
	defer cancel()
	return w.engines().HeldVRAM(ctx, claim.Kind, claim.Model)
}

// applyBackendFigure puts a backend's figure into an admission's input: the VRAM its model holds
// already (only when it is loaded), and its free memory per GPU, matched to NVML's cards.
func applyBackendFigure(in *AdmissionInput, fig engine.HeldVRAM, snap gpu.Snapshot) {
	in.Backend, in.BackendModel = fig.Backend, fig.Model
	if fig.Loaded {
		in.BackendHeldMB = fig.HeldMB
	}
	for _, d := range fig.Devices {
		if card, ok := backendCard(d, snap); ok {
			// Never more than the card has: a figure from another card would otherwise pass.
			in.BackendFree = append(in.BackendFree, GPUFree{Index: card.Index, FreeMB: min(d.FreeMB, card.TotalMB)})
		}
	}
}

// backendCard is NVML's card for a device a backend names. With one card and one device they are
// the same; otherwise the backend's (CUDA's) index must be NVML's, which holds unless
// CUDA_VISIBLE_DEVICES or CUDA_DEVICE_ORDER reorder them — and then the sizes must agree too.
func backendCard(d engine.BackendDevice, snap gpu.Snapshot) (gpu.Device, bool) {
	if len(snap.Devices) == 1 {
		return snap.Devices[0], true
	}
	for _, c := range snap.Devices {
		if c.Index == d.Index && sameSize(c.TotalMB, d.TotalMB) {
			return c, true
		}
	}
	return gpu.Device{}, false
}

// sameSize: torch's total leaves out what the driver keeps for itself, a few per cent at most.
func sameSize(nvmlMB, backendMB int64) bool {
	return backendMB > 0 && backendMB <= nvmlMB && backendMB*10 >= nvmlMB*9
}

// pokeBackendVRAM tells watchBackendVRAM that a GPU sample was taken; it never blocks the
// monitor's goroutine.
func (w *Worker) pokeBackendVRAM() {
	select {
	case w.backendWake <- struct{}{}:
	default:
	}
}

// watchBackendVRAM refreshes State.GPU.Backends at a GPU sample, at most every
// backendVRAMEvery and only while something follows the state, until ctx ends. It runs apart from
// the monitor so that a slow backend does not delay the samples. Admission asks for itself.
func (w *Worker) watchBackendVRAM(ctx context.Context) {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.backendWake:
		}
		if w.obs.Subscribers() == 0 || (!last.IsZero() && time.Since(last) < backendVRAMEvery) {
			continue // no window or status follows the state: nobody to show it to
		}
		last = time.Now()
		actx, cancel := context.WithTimeout(ctx, backendVRAMAskFor)
		list := w.backendVRAM(actx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if reflect.DeepEqual(w.obs.Snapshot().GPU.Backends, list) {
			continue // nothing moved: no new State for every window
		}
		w.update(func(s *State) { s.GPU.Backends = list })
	}
}

// backendVRAM asks every kind's backend what it says of VRAM for the models it serves: the ones
// loaded (Ollama), or its free memory (ComfyUI). The engine caches each backend's answer, so
// asking per model costs one request per backend.
func (w *Worker) backendVRAM(ctx context.Context) []BackendVRAM {
	r := w.engines()
	caps := r.Capabilities()
	snap := w.mon.Latest()
	var list []BackendVRAM
	for _, k := range caps.Kinds() {
		for _, m := range caps.Models[k] {
			if len(list) >= maxBackendVRAMShown {
				return list
			}
			fig, ok := r.HeldVRAM(ctx, k, m)
			if !ok {
				break // it says nothing of VRAM, or did not answer: no other model's figure either
			}
			if len(fig.Devices) > 0 { // a figure for the backend, not per model
				for _, d := range fig.Devices {
					gpuIndex := -1
					if card, found := backendCard(d, snap); found {
						gpuIndex = card.Index
					}
					list = append(list, BackendVRAM{Kind: k, Backend: fig.Backend, GPU: gpuIndex, FreeMB: d.FreeMB, CacheFreeMB: d.CacheFreeMB})
				}
				break
			}
			if fig.Loaded && !slices.ContainsFunc(list, func(b BackendVRAM) bool { return b.Kind == k && b.Model == fig.Model }) {
				list = append(list, BackendVRAM{Kind: k, Backend: fig.Backend, Model: fig.Model, HeldMB: fig.HeldMB, GPU: -1})
			}
		}
	}
	return list
}
