// comfyui.go: the comfyui backend, which runs image and video jobs on ComfyUI's HTTP API: its
// models, a job from the filled workflow to the output file, and the interrupt of a prompt.
package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"studioworker/protocol"
)

// comfyUI runs image and video jobs on ComfyUI's HTTP API.
type comfyUI struct {
	kind   protocol.Kind
	cfg    BackendConfig
	wf     *comfyWorkflow
	client *http.Client
	logger *slog.Logger
	// choices is the last list of what the mapped model input accepts; now is its clock.
	choices choiceCache
	now     func() time.Time
	// stats is ComfyUI's last word on free VRAM (vram.go).
	stats figureCache[[]BackendDevice]
}

func newComfyUI(kind protocol.Kind, cfg BackendConfig, client *http.Client, logger *slog.Logger) (*comfyUI, error) {
	wf, err := loadWorkflow(cfg.Workflow)
	if err != nil {
		return nil, fmt.Errorf("engines.%s.workflow: %w", kind, err)
	}
	return &comfyUI{kind: kind, cfg: cfg, wf: wf, client: client, logger: logger, now: time.Now}, nil
}

func (c *comfyUI) name() string { return BackendComfyUI }

func (c *comfyUI) url(p string, q url.Values) string {
	u := joinURL(c.cfg.URL, p)
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

func (c *comfyUI) get(parent, ctx context.Context, p string, q url.Values) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(p, q), nil)
	if err != nil {
		return nil, &Error{Err: fmt.Errorf("engine: comfyui request: %w", err)}
	}
	resp, err := send(parent, ctx, c.client, req, "comfyui")
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, statusError(resp, "comfyui "+p)
	}
	return resp, nil
}

func (c *comfyUI) getJSON(parent, ctx context.Context, p string, v any) error {
	resp, err := c.get(parent, ctx, p, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(v); err != nil {
		if cerr := ctxError(parent, ctx, "comfyui"); cerr != nil {
			return cerr
		}
		return backendFailed(true, "comfyui %s: unreadable answer: %v", p, err)
	}
	return nil
}

// models lists the configured models; without any, the checkpoints the mapped model input
// accepts (from /object_info), or else the workflow's file name.
func (c *comfyUI) models(ctx context.Context) ([]string, error) {
	var stats map[string]any
	if err := c.getJSON(ctx, ctx, "/system_stats", &stats); err != nil {
		return nil, err
	}
	if len(c.cfg.Models) > 0 {
		return c.cfg.Models, nil
	}
	if ni, ok := c.cfg.Mapping["model"]; ok {
		names, err := c.fetchChoices(ctx, ctx, ni)
		if errors.Is(err, errNoChoices) {
			return nil, fmt.Errorf("comfyui lists %w: put the models in the config", err)
		}
		return names, err
	}
	return []string{strings.TrimSuffix(filepath.Base(c.cfg.Workflow), filepath.Ext(c.cfg.Workflow))}, nil
}

// comboOptions reads a combo input's choices, in the old ([[a, b], {...}]) and the new
// (["COMBO", {"options": [a, b]}]) shapes of /object_info.
func comboOptions(spec json.RawMessage) []string {
	var parts []json.RawMessage
	if json.Unmarshal(spec, &parts) != nil || len(parts) == 0 {
		return nil
	}
	var names []string
	if json.Unmarshal(parts[0], &names) == nil {
		return names
	}
	if len(parts) > 1 {
		var opts struct {
			Options []string `json:"options"`
		}
		if json.Unmarshal(parts[1], &opts) == nil {
			return opts.Options
		}
	}
	return nil
}

func (c *comfyUI) Run(parent context.Context, job Job, progress Progress) (Result, error) {
	progress = monotonic(progress)
	values := map[string]any{}
	var prompt string
	switch c.kind {
	case protocol.KindImage:
		in, err := parseImage(job.Input, c.cfg.limits())
		if err != nil {
			return Result{}, err
		}
		prompt = in.Prompt
		values["prompt"], values["width"], values["height"] = in.Prompt, in.Width, in.Height
		values["seed"] = seedOf(in.Seed, job.ID)
		if in.NegativePrompt != "" {
			values["negative_prompt"] = in.NegativePrompt
		}
		if in.Steps != nil {
			values["steps"] = *in.Steps
		}
	case protocol.KindVideo:
		in, err := parseVideo(job.Input, c.cfg.limits())
		if err != nil {
			return Result{}, err
		}
		prompt = in.Prompt
		values["prompt"], values["width"], values["height"] = in.Prompt, in.Width, in.Height
		values["frames"], values["fps"] = in.Frames, in.FPS
		values["seed"] = seedOf(in.Seed, job.ID)
	default:
		return Result{}, unsupported("kind", "comfyui does not run %s jobs", c.kind)
	}
	if job.Model != "" {
		values["model"] = job.Model
	}
	tree, err := c.wf.fill(c.cfg.Mapping, values)
	if err != nil {
		return Result{}, &Error{Retry: true, Err: fmt.Errorf("engine: comfyui workflow: %w", err)}
	}

	ctx, cancel := context.WithTimeout(parent, c.cfg.timeout())
	defer cancel()
	if err := c.checkModel(parent, ctx, job.Model, c.logger.With("job_id", job.ID)); err != nil {
		return Result{}, err
	}
	clientID := randomHex(16)
	events, stopWS := c.listen(ctx, clientID)
	defer stopWS()

	// The prompt id is ours (ComfyUI 0.3.45+ takes it), so that a job cancelled while POST /prompt
	// is in flight can still be taken back: ComfyUI may have queued it before the answer was lost.
	ourID := newPromptID()
	log := c.logger.With("job_id", job.ID, "prompt_id", ourID)
	promptID, err := c.queue(parent, ctx, tree, clientID, ourID)
	if err != nil {
		if errors.Is(err, ErrCancelled) || errors.Is(err, ErrTimeout) {
			c.cancelPrompt(ctx, ourID, log)
		}
		return Result{}, err
	}
	if promptID != ourID {
		log = log.With("comfyui_prompt_id", promptID) // a ComfyUI before 0.3.45 chose its own
	}
	log.Debug("comfyui prompt queued")
	progress(0.02, "queued in ComfyUI")

	if err := c.wait(parent, ctx, promptID, events, progress, log); err != nil {
		if errors.Is(err, ErrCancelled) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrStalled) {
			c.cancelPrompt(ctx, promptID, log)
		}
		return Result{}, err
	}
	progress(0.97, "fetching the output")
	path, ext, sum, err := c.fetchOutput(parent, ctx, job, promptID)
	if err != nil {
		return Result{}, err
	}
	progress(1, "done")
	return Result{File: path, Ext: ext, Prompt: prompt, SHA256: sum}, nil
}

// newPromptID is a random UUID (version 4), the form of the ids ComfyUI chooses itself.
func newPromptID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// queue posts the workflow under promptID and returns the prompt id ComfyUI answers (promptID
// itself, but one before 0.3.45 chooses its own). A refusal that names a node input the job
// filled is the job's fault (not retryable, naming the field); one about the rest of the workflow
// is this worker's (retryable).
func (c *comfyUI) queue(parent, ctx context.Context, tree map[string]any, clientID, promptID string) (string, error) {
	body, err := json.Marshal(map[string]any{"prompt": tree, "client_id": clientID, "prompt_id": promptID})
	if err != nil {
		return "", &Error{Retry: true, Err: fmt.Errorf("engine: comfyui workflow: %w", err)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url("/prompt", nil), bytes.NewReader(body))
	if err != nil {
		return "", &Error{Err: fmt.Errorf("engine: comfyui request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := send(parent, ctx, c.client, req, "comfyui")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var ans struct {
		PromptID string `json:"prompt_id"`
		Error    struct {
			Message string `json:"message"`
			Details string `json:"details"`
		} `json:"error"`
		NodeErrors map[string]struct {
			ClassType string `json:"class_type"`
			Errors    []struct {
				Message   string `json:"message"`
				Details   string `json:"details"`
				ExtraInfo struct {
					InputName string `json:"input_name"`
				} `json:"extra_info"`
			} `json:"errors"`
		} `json:"node_errors"`
	}
	if resp.StatusCode >= 500 {
		return "", statusError(resp, "comfyui /prompt")
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&ans); err != nil {
		if resp.StatusCode != http.StatusOK {
			return "", backendFailed(true, "comfyui /prompt: %s", resp.Status)
		}
		return "", backendFailed(true, "comfyui /prompt: unreadable answer: %v", err)
	}
	if resp.StatusCode == http.StatusOK && ans.PromptID != "" {
		return ans.PromptID, nil
	}
	var parts []string
	field := ""
	for _, id := range sortedKeys(ans.NodeErrors) {
		ne := ans.NodeErrors[id]
		for _, e := range ne.Errors {
			input := e.ExtraInfo.InputName
			if input == "" {
				input = e.Details
			}
			for f, ni := range c.cfg.Mapping {
				if ni.Node == id && ni.Input == input && field == "" {
					field = f
				}
			}
			parts = append(parts, fmt.Sprintf("node %s (%s) %s: %s", id, ne.ClassType, input, e.Message))
		}
	}
	msg := strings.TrimSpace(ans.Error.Message + " " + ans.Error.Details)
	if len(parts) > 0 {
		msg += ": " + strings.Join(parts, "; ")
	}
	if msg == "" {
		msg = resp.Status
	}
	msg = clipText(msg)
	if field == "model" {
		return "", unsupported("model", "comfyui refused the model: %s", msg)
	}
	if field != "" {
		return "", &Error{Field: field, Err: fmt.Errorf("%w: input.%s: comfyui refused it: %s", ErrInvalidInput, field, msg)}
	}
	return "", backendFailed(true, "comfyui refused the workflow: %s", msg)
}

// comfyFile is one output file as ComfyUI lists it.
type comfyFile struct {
	Filename  string `json:"filename"`
	Subfolder string `json:"subfolder"`
	Type      string `json:"type"`
}

// fetchOutput finds the prompt's output file of an allowed type for the kind, saved outputs
// before previews, and streams it into the spool folder; it returns the file's path, extension
// and sha256.
func (c *comfyUI) fetchOutput(parent, ctx context.Context, job Job, promptID string) (string, string, string, error) {
	h, err := c.finishedHistory(parent, ctx, promptID)
	if err != nil {
		return "", "", "", err
	}
	var files, seen []comfyFile
	nodes := sortedKeys(h.Outputs)
	slices.SortStableFunc(nodes, func(a, b string) int { return numericCompare(a, b) })
	for _, n := range nodes {
		for _, key := range sortedKeys(h.Outputs[n]) {
			var list []comfyFile
			if json.Unmarshal(h.Outputs[n][key], &list) != nil {
				continue
			}
			for _, f := range list {
				if f.Filename == "" {
					continue
				}
				seen = append(seen, f)
				if c.kind.AllowedExt(fileExt(f.Filename)) {
					files = append(files, f)
				}
			}
		}
	}
	slices.SortStableFunc(files, func(a, b comfyFile) int {
		return boolInt(a.Type != "output") - boolInt(b.Type != "output")
	})
	if len(files) == 0 {
		names := make([]string, len(seen))
		for i, f := range seen {
			names[i] = f.Filename
		}
		return "", "", "", backendFailed(true, "comfyui produced no %s output of type %s (outputs: %s)",
			c.kind, strings.Join(c.kind.ResultExts(), ", "), strings.Join(names, ", "))
	}
	out := files[0]
	resp, err := c.get(parent, ctx, "/view", url.Values{"filename": {out.Filename}, "subfolder": {out.Subfolder}, "type": {out.Type}})
	if err != nil {
		return "", "", "", err
	}
	defer resp.Body.Close()
	f, err := newSpoolFile(job)
	if err != nil {
		return "", "", "", err
	}
	defer f.abort()
	if _, err := io.Copy(f, resp.Body); err != nil {
		if cerr := ctxError(parent, ctx, "comfyui"); cerr != nil {
			return "", "", "", cerr
		}
		return "", "", "", backendDown("comfyui /view", err)
	}
	ext := fileExt(out.Filename)
	p, err := f.commit(ext)
	return p, ext, f.sum(), err
}

func fileExt(name string) string {
	return strings.ToLower(strings.TrimPrefix(path.Ext(name), "."))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// numericCompare orders node ids as numbers when they are ("9" before "10").
func numericCompare(a, b string) int {
	x, errA := strconv.Atoi(a)
	y, errB := strconv.Atoi(b)
	if errA == nil && errB == nil {
		return x - y
	}
	return strings.Compare(a, b)
}

// cancelPrompt takes the prompt back from ComfyUI, on a short context of its own since the job's
// has ended: it is deleted from the queue (where it may still wait), then interrupted only if
// GET /queue shows it running. Up to 0.3.56 /interrupt ignores its body and stops whatever runs,
// on a shared ComfyUI someone else's prompt; so when /queue cannot be read, nothing is
// interrupted, and a prompt of ours that runs on is the lesser harm.
func (c *comfyUI) cancelPrompt(ctx context.Context, promptID string, log *slog.Logger) {
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := c.post(ictx, "/queue", map[string]any{"delete": []string{promptID}}); err != nil {
		log.Warn("comfyui did not take the prompt out of its queue", "err", err)
	}
	running, err := c.running(ictx, promptID)
	if err != nil {
		log.Warn("comfyui's queue could not be read; the prompt is not interrupted", "err", err)
		return
	}
	if !running {
		return
	}
	if err := c.post(ictx, "/interrupt", map[string]any{"prompt_id": promptID}); err != nil {
		log.Warn("comfyui did not take the interrupt", "err", err)
	}
}

// running reports whether GET /queue lists promptID in queue_running, whose items are
// [number, prompt_id, prompt, extra_data, outputs_to_execute, ...].
func (c *comfyUI) running(ctx context.Context, promptID string) (bool, error) {
	var q struct {
		Running []json.RawMessage `json:"queue_running"`
	}
	if err := c.getJSON(ctx, ctx, "/queue", &q); err != nil {
		return false, err
	}
	for _, raw := range q.Running {
		var item []json.RawMessage
		var id string
		if json.Unmarshal(raw, &item) == nil && len(item) > 1 && json.Unmarshal(item[1], &id) == nil && id == promptID {
			return true, nil
		}
	}
	return false, nil
}

// post sends a small JSON body to ComfyUI and discards the answer.
func (c *comfyUI) post(ctx context.Context, p string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("engine: comfyui %s: %w", p, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(p, nil), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("engine: comfyui %s: %w", p, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("engine: comfyui %s: %w", p, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("engine: comfyui %s: %s", p, errorText(resp))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	return nil
}
