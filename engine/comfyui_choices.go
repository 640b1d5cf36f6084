// comfyui_choices.go: whether ComfyUI has the model (checkpoint) a job asks for, from the
// choices /object_info lists for the node input the model is mapped to, remembered for a short
// while by each comfyui backend. It must not know the rest of the workflow, nor how a job runs.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	// choicesTTL is how long a list of choices stands in for asking ComfyUI again: long enough
	// that a run of jobs asks once, short enough that a checkpoint removed is noticed soon.
	choicesTTL = 30 * time.Second
	// maxCachedChoices bounds what one backend remembers; a longer list is used for the job at
	// hand and not kept.
	maxCachedChoices = 10_000
	// maxListedChoices is how many of ComfyUI's choices a job's error names.
	maxListedChoices = 10
)

// choiceCache is one comfyui backend's last list of choices for its model input.
type choiceCache struct {
	mu    sync.Mutex
	names []string
	at    time.Time
}

// get returns the list when it is younger than choicesTTL at now.
func (cc *choiceCache) get(now time.Time) ([]string, bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.names == nil || now.Sub(cc.at) >= choicesTTL || now.Before(cc.at) {
		return nil, false
	}
	return cc.names, true
}

func (cc *choiceCache) put(names []string, now time.Time) {
	if len(names) > maxCachedChoices {
		return
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.names, cc.at = slices.Clone(names), now
}

// errNoChoices: /object_info answered but lists no choices for the mapped input (a text input, a
// custom node of another shape).
var errNoChoices = errors.New("no choices")

// fetchChoices asks ComfyUI which values the mapped model input accepts
// (GET /object_info/CheckpointLoaderSimple: input.required.ckpt_name[0] in the example workflow).
func (c *comfyUI) fetchChoices(parent, ctx context.Context, ni NodeInput) ([]string, error) {
	class := c.wf.nodes[ni.Node].ClassType
	var info map[string]struct {
		Input map[string]map[string]json.RawMessage `json:"input"`
	}
	if err := c.getJSON(parent, ctx, "/object_info/"+url.PathEscape(class), &info); err != nil {
		return nil, err
	}
	for _, group := range []string{"required", "optional"} {
		if spec, ok := info[class].Input[group][ni.Input]; ok {
			if names := comboOptions(spec); len(names) > 0 {
				c.choices.put(names, c.now())
				return names, nil
			}
		}
	}
	return nil, fmt.Errorf("%w for %s.%s", errNoChoices, class, ni.Input)
}

// checkModel fails a job whose model ComfyUI does not list, before anything is queued, naming
// what it has: ComfyUI's own refusal names none. A list that is cached and lacks the model is
// asked for again first, so a checkpoint copied in a moment ago is found. When the choices cannot
// be read (other than ComfyUI being down), the job goes on and ComfyUI's validation decides.
func (c *comfyUI) checkModel(parent, ctx context.Context, model string, log *slog.Logger) error {
	ni, mapped := c.cfg.Mapping["model"]
	if !mapped || model == "" {
		return nil
	}
	names, cached := c.choices.get(c.now())
	if !cached || !slices.Contains(names, model) {
		fresh, err := c.fetchChoices(parent, ctx, ni)
		if err != nil {
			if errors.Is(err, ErrBackendDown) || errors.Is(err, ErrCancelled) || errors.Is(err, ErrTimeout) {
				return err
			}
			log.Debug("comfyui: the model's choices are not readable; ComfyUI's validation decides", "err", err)
			return nil
		}
		names = fresh
	}
	if slices.Contains(names, model) {
		return nil
	}
	class := c.wf.nodes[ni.Node].ClassType
	listed := names[:min(len(names), maxListedChoices)]
	more := ""
	if n := len(names) - len(listed); n > 0 {
		more = fmt.Sprintf(" and %d more", n)
	}
	return unsupported("model", "comfyui does not have the checkpoint %q (%s.%s); it has %s%s",
		model, class, ni.Input, clipText(strings.Join(listed, ", ")), more)
}
