// firstrun.go: what the first-run page finds on this machine — the inference backends on local
// ports, by what each answers, and the command-line programs on PATH. It talks to loopback only and
// must not know the window.

package app

// The first run: finding the inference backends already on this machine, so the first-run page
// can offer them with a tick each. Detection talks to 127.0.0.1 only and sends nothing anywhere
// else: nothing leaves the machine before the creator registers.

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"studioworker/engine"
	"studioworker/protocol"
)

// Detected is one backend found on this machine, for one kind of job.
type Detected struct {
	// Name is the program as a creator knows it: "Ollama", "llama.cpp server", "vLLM",
	// "LM Studio", "LocalAI", "OpenAI-compatible server", "ComfyUI", "espeak-ng", "whisper.cpp".
	Name string        `json:"name"`
	Kind protocol.Kind `json:"kind"`
	// Where is the address it answered on, or the program's path.
	Where string `json:"where"`
	// Models are the models it listed, when it lists any.
	Models []string `json:"models,omitempty"`
	// Backend is the suggested backend for Kind.
	Backend BackendForm `json:"backend"`
	// Ready is false when the suggestion needs something the detector cannot guess (a model
	// file); Note says what.
	Ready bool   `json:"ready"`
	Note  string `json:"note,omitempty"`
}

// Where the usual local servers listen.
const (
	DefaultOllamaURL   = "http://127.0.0.1:11434"
	DefaultLlamaURL    = "http://127.0.0.1:8080" // llama.cpp's llama-server and LocalAI both default to 8080
	DefaultVLLMURL     = "http://127.0.0.1:8000"
	DefaultLMStudioURL = "http://127.0.0.1:1234"
	DefaultComfyUIURL  = "http://127.0.0.1:8188"
)

// defaultProbeTimeout bounds each probe: a local server answers in milliseconds, and the page waits.
const defaultProbeTimeout = 1500 * time.Millisecond

// ComfyUIWorkflowFile is the name of the example workflow written beside the config when a
// detected ComfyUI is used: ComfyUI's default text-to-image graph in API format.
const ComfyUIWorkflowFile = "comfyui-text-to-image.json"

//go:embed firstrun_comfyui.json
var comfyUIWorkflow []byte

// comfyUIMapping maps job fields to the inputs of the embedded workflow.
var comfyUIMapping = map[string]engine.NodeInput{
	"prompt":          {Node: "6", Input: "text"},
	"negative_prompt": {Node: "7", Input: "text"},
	"seed":            {Node: "3", Input: "seed"},
	"steps":           {Node: "3", Input: "steps"},
	"width":           {Node: "5", Input: "width"},
	"height":          {Node: "5", Input: "height"},
	"model":           {Node: "4", Input: "ckpt_name"},
}

// ErrNotLoopback: the detector was pointed at an address that is not this machine.
var ErrNotLoopback = errors.New("the detector only talks to this machine (127.0.0.1)")

// Detector finds inference backends on this machine: the usual loopback ports and programs on
// PATH. The zero value probes the defaults.
type Detector struct {
	// OllamaURL, LlamaURL, VLLMURL, LMStudioURL and ComfyUIURL replace the default addresses
	// (tests); each must be a loopback address. Which server answers at each is found out from
	// what it answers (identify), not from the field.
	OllamaURL, LlamaURL, VLLMURL, LMStudioURL, ComfyUIURL string
	// LookPath finds a program; nil = exec.LookPath.
	LookPath func(string) (string, error)
	// Timeout bounds each probe; 0 = 1.5 s.
	Timeout time.Duration
	// WorkflowDir is where the ComfyUI suggestion's workflow file goes (the config folder).
	WorkflowDir string
	// ModelDirs are searched for whisper.cpp ggml models besides the folders around the program.
	ModelDirs []string
}

// Detect probes every known backend at once and returns what answered, in a stable order (by
// kind, then name). Backends that are not there are simply absent; an error is returned only
// when ctx ends first.
func (d Detector) Detect(ctx context.Context) ([]Detected, error) {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = defaultProbeTimeout
	}
	client := loopbackClient(timeout)
	defer client.CloseIdleConnections()

	var (
		mu    sync.Mutex
		found []Detected
		wg    sync.WaitGroup
	)
	add := func(ds ...Detected) {
		mu.Lock()
		found = append(found, ds...)
		mu.Unlock()
	}
	for _, base := range []string{
		orDefault(d.OllamaURL, DefaultOllamaURL), orDefault(d.LlamaURL, DefaultLlamaURL),
		orDefault(d.VLLMURL, DefaultVLLMURL), orDefault(d.LMStudioURL, DefaultLMStudioURL),
	} {
		wg.Go(func() { add(d.identify(ctx, client, base)...) })
	}
	wg.Go(func() { add(d.probeComfyUI(ctx, client)...) })
	add(d.probePrograms()...)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	kinds := protocol.Kinds()
	slices.SortStableFunc(found, func(a, b Detected) int {
		if c := slices.Index(kinds, a.Kind) - slices.Index(kinds, b.Kind); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return found, nil
}

// loopbackClient is an HTTP client that cannot reach anything but this machine, without proxies.
func loopbackClient(timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: timeout}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy: nil, // a proxy would carry the probe off the machine
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				host, _, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
					return nil, fmt.Errorf("%w: %s", ErrNotLoopback, addr)
				}
				return dialer.DialContext(ctx, network, addr)
			},
			MaxIdleConnsPerHost: 1,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// fetch GETs base+path from a loopback address and returns the status and up to 1 MiB of the
// body; err is set only when no answer came (nothing listens, or the address is not loopback).
func fetch(ctx context.Context, client *http.Client, base, path string) (int, []byte, error) {
	u, err := url.Parse(base)
	if err != nil {
		return 0, nil, fmt.Errorf("detect %s: %w", base, err)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		return 0, nil, fmt.Errorf("%w: %s", ErrNotLoopback, base)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+path, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("detect %s%s: %w", base, path, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("detect %s%s: %w", base, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("detect %s%s: %w", base, path, err)
	}
	return resp.StatusCode, body, nil
}

// getJSON fetches base+path and decodes a 200 answer's JSON body (at most 1 MiB) into v.
func getJSON(ctx context.Context, client *http.Client, base, path string, v any) error {
	status, body, err := fetch(ctx, client, base, path)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("%s%s: %s", base, path, http.StatusText(status))
	}
	return json.Unmarshal(body, v)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// openAIModels is GET /v1/models as OpenAI-compatible servers answer it; llama-server adds an
// Ollama-style "models" list.
type openAIModels struct {
	Data   []openAIModel `json:"data"`
	Models []struct {
		Name string `json:"name"`
	} `json:"models"`
}

type openAIModel struct {
	ID      string `json:"id"`
	OwnedBy string `json:"owned_by"`
}

func (m openAIModels) ids() []string {
	out := []string{}
	for _, d := range m.Data {
		if d.ID != "" && !slices.Contains(out, d.ID) {
			out = append(out, d.ID)
		}
	}
	return out
}

// identify tells which server answers at base by what it answers, not by its port, since any
// of them can be started on another port and llama-server and LocalAI share 8080: Ollama says
// "Ollama is running" at GET /; llama-server marks its models "owned_by":"llamacpp", lists them
// twice and serves /props; vLLM marks them "owned_by":"vllm" and serves /version without a key;
// LM Studio lists its models with their type at /api/v0/models (0.3.6+) and owns them as
// "organization_owner"; LocalAI answers /readyz (503 while it loads). Anything else that lists
// models at /v1/models is offered as an OpenAI-compatible server, named as such.
func (d Detector) identify(ctx context.Context, client *http.Client, base string) []Detected {
	base = strings.TrimRight(base, "/")
	bc := backendFormOf(engine.BackendConfig{Backend: engine.BackendOpenAI, URL: base + "/v1"})
	if status, body, err := fetch(ctx, client, base, "/"); err != nil {
		return nil // nothing listens there
	} else if status == http.StatusOK && strings.Contains(string(body), "Ollama is running") {
		return []Detected{d.ollama(ctx, client, base, bc)}
	}
	var m openAIModels
	status, body, _ := fetch(ctx, client, base, "/v1/models")
	listed := status == http.StatusOK && json.Unmarshal(body, &m) == nil && (m.Data != nil || m.Models != nil)
	owned := func(by string) bool {
		return slices.ContainsFunc(m.Data, func(d openAIModel) bool { return d.OwnedBy == by })
	}
	server := func(name string) Detected {
		return Detected{Name: name, Kind: protocol.KindLLM, Where: base, Models: m.ids(), Backend: bc, Ready: true}
	}
	switch {
	case listed && (len(m.Models) > 0 || owned("llamacpp") || d.llamaProps(ctx, client, base)):
		return []Detected{server("llama.cpp server")}
	case listed && owned("vllm"):
		return []Detected{server("vLLM")}
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		var v struct {
			Version string `json:"version"`
		}
		if getJSON(ctx, client, base, "/version", &v) != nil || v.Version == "" {
			return nil // a server that wants a key and says nothing else: not one we know
		}
		det := server("vLLM")
		det.Ready, det.Note = false, "vLLM "+v.Version+" wants an API key: set api_key in Settings > Backends > llm."
		return []Detected{det}
	}
	if lm, ok := lmStudioModels(ctx, client, base); ok || (listed && owned("organization_owner")) {
		det := server("LM Studio")
		if ok {
			det.Models = lm
		}
		if len(det.Models) == 0 {
			det.Note = "It lists no language model: download one in LM Studio."
		}
		return []Detected{det}
	}
	switch ready, _, _ := fetch(ctx, client, base, "/readyz"); {
	case ready == http.StatusOK && listed:
		return d.localAI(ctx, client, base, m.ids())
	case ready == http.StatusServiceUnavailable && (listed || status == http.StatusServiceUnavailable):
		det := server("LocalAI")
		det.Note = "LocalAI is still loading; its models show once it is ready (Test in Settings)."
		return []Detected{det}
	}
	if listed {
		det := server("OpenAI-compatible server")
		det.Note = "Not recognised as Ollama, llama.cpp, vLLM, LM Studio or LocalAI; offered for llm jobs through its OpenAI-compatible API."
		return []Detected{det}
	}
	return nil
}

// ollama is the Ollama at base, with the models it has pulled (/api/tags, else /v1/models).
func (d Detector) ollama(ctx context.Context, client *http.Client, base string, bc BackendForm) Detected {
	models := []string{}
	var tags struct {
		Models []struct {
			Name string `json:"name"`
		} `json:"models"`
	}
	if err := getJSON(ctx, client, base, "/api/tags", &tags); err == nil {
		for _, m := range tags.Models {
			models = append(models, m.Name)
		}
	} else {
		var m openAIModels
		if getJSON(ctx, client, base, "/v1/models", &m) == nil {
			models = m.ids()
		}
	}
	note := ""
	if len(models) == 0 {
		note = "It lists no models yet: pull one (ollama pull llama3.2)."
	}
	return Detected{Name: "Ollama", Kind: protocol.KindLLM, Where: base, Models: models, Backend: bc, Ready: true, Note: note}
}

func (d Detector) llamaProps(ctx context.Context, client *http.Client, base string) bool {
	var props map[string]json.RawMessage
	return getJSON(ctx, client, base, "/props", &props) == nil && props["default_generation_settings"] != nil
}

// lmStudioModels reads LM Studio's own list (GET /api/v0/models), whose items say their type:
// the llm and vlm ones serve chat, embeddings ones do not. ok is false when base does not serve it.
func lmStudioModels(ctx context.Context, client *http.Client, base string) (models []string, ok bool) {
	var ans struct {
		Data []struct {
			ID   string `json:"id"`
			Type string `json:"type"`
		} `json:"data"`
	}
	if getJSON(ctx, client, base, "/api/v0/models", &ans) != nil || ans.Data == nil {
		return nil, false
	}
	models = []string{}
	for _, m := range ans.Data {
		if m.Type == "" {
			return nil, false // not LM Studio's shape
		}
		if (m.Type == "llm" || m.Type == "vlm") && m.ID != "" {
			models = append(models, m.ID)
		}
	}
	return models, true
}

// localAI is the LocalAI at base: one suggestion per kind that /v1/models/capabilities lists
// models for, since LocalAI serves every kind but video on one port and /v1/models mixes them;
// without that list (an older LocalAI), one llm suggestion with every model and a note.
func (d Detector) localAI(ctx context.Context, client *http.Client, base string, all []string) []Detected {
	bc := backendFormOf(engine.BackendConfig{Backend: engine.BackendOpenAI, URL: base + "/v1"})
	var ans struct {
		Data []struct {
			ID           string   `json:"id"`
			Capabilities []string `json:"capabilities"`
		} `json:"data"`
	}
	var out []Detected
	if getJSON(ctx, client, base, "/v1/models/capabilities", &ans) == nil {
		for _, kc := range []struct {
			kind protocol.Kind
			cap  string
		}{{protocol.KindLLM, "chat"}, {protocol.KindImage, "image"}, {protocol.KindTTS, "tts"}, {protocol.KindSTT, "transcript"}} {
			var models []string
			for _, m := range ans.Data {
				if m.ID != "" && slices.Contains(m.Capabilities, kc.cap) {
					models = append(models, m.ID)
				}
			}
			if len(models) > 0 {
				out = append(out, Detected{Name: "LocalAI", Kind: kc.kind, Where: base, Models: models, Backend: bc, Ready: true})
			}
		}
	}
	if len(out) > 0 {
		return out
	}
	return []Detected{{Name: "LocalAI", Kind: protocol.KindLLM, Where: base, Models: all, Backend: bc, Ready: true,
		Note: "LocalAI lists every model it has, whatever its kind: name the chat models in Settings to offer only those. It can serve images and speech too (Settings > Backends)."}}
}

func (d Detector) probeComfyUI(ctx context.Context, client *http.Client) []Detected {
	base := orDefault(d.ComfyUIURL, DefaultComfyUIURL)
	var stats struct {
		System json.RawMessage `json:"system"`
	}
	if getJSON(ctx, client, base, "/system_stats", &stats) != nil || stats.System == nil {
		return nil
	}
	det := Detected{Name: "ComfyUI", Kind: protocol.KindImage, Where: base,
		Backend: backendFormOf(engine.BackendConfig{Backend: engine.BackendComfyUI, URL: strings.TrimRight(base, "/"),
			Mapping: comfyUIMapping, VRAMGB: 6, TimeoutS: 300}),
		Note: "Uses ComfyUI's default text-to-image workflow; the Studio sees your checkpoints as models.",
	}
	if d.WorkflowDir != "" {
		det.Backend.Workflow = filepath.Join(d.WorkflowDir, ComfyUIWorkflowFile)
		det.Ready = true
	} else {
		det.Note = "Set a workflow for it in Settings > Backends > image."
	}
	return []Detected{det}
}

// probePrograms looks for the command-line backends on PATH.
func (d Detector) probePrograms() []Detected {
	look := d.LookPath
	if look == nil {
		look = exec.LookPath
	}
	var out []Detected
	if p, err := look("espeak-ng"); err == nil {
		out = append(out, Detected{Name: "espeak-ng", Kind: protocol.KindTTS, Where: p, Ready: true,
			Backend: backendFormOf(engine.BackendConfig{Backend: engine.BackendExec, Command: []string{p, "-w", "{output}", "--", "{text}"}, VRAMGB: 0})})
	}
	for _, name := range []string{"whisper-cli", "whisper.cpp", "whisper-cpp"} {
		p, err := look(name)
		if err != nil {
			continue
		}
		det := Detected{Name: "whisper.cpp", Kind: protocol.KindSTT, Where: p}
		if model := d.findWhisperModel(p); model != "" {
			base := strings.TrimSuffix(filepath.Base(model), ".bin")
			det.Ready, det.Models = true, []string{base}
			det.Backend = backendFormOf(engine.BackendConfig{Backend: engine.BackendExec, Ext: "json", Models: []string{base},
				Command: []string{p, "-m", model, "-f", "{input}", "-oj", "-of", "{output_base}"}})
		} else {
			det.Backend = backendFormOf(engine.BackendConfig{Backend: engine.BackendExec, Ext: "json",
				Command: []string{p, "-m", "MODEL.bin", "-f", "{input}", "-oj", "-of", "{output_base}"}})
			det.Note = "No ggml model file found next to it: set the model (-m) in Settings > Backends > stt."
		}
		out = append(out, det)
		break // one whisper is enough: they are the same program under different names
	}
	return out
}

// findWhisperModel looks for a ggml-*.bin model in the usual places around the program.
func (d Detector) findWhisperModel(program string) string {
	dir := filepath.Dir(program)
	dirs := append([]string{filepath.Join(dir, "models"), filepath.Join(dir, "..", "models"), dir}, d.ModelDirs...)
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "whisper.cpp", "models"), filepath.Join(home, ".cache", "whisper"))
	}
	for _, dir := range dirs {
		matches, _ := filepath.Glob(filepath.Join(dir, "ggml-*.bin"))
		slices.Sort(matches)
		if len(matches) > 0 {
			return matches[0]
		}
	}
	return ""
}

// writeComfyUIWorkflow puts the example workflow where a ComfyUI suggestion points, unless a file
// is there already (the creator's own edits are kept).
func writeComfyUIWorkflow(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write the ComfyUI workflow: %w", err)
	}
	if err := os.WriteFile(path, comfyUIWorkflow, 0o600); err != nil {
		return fmt.Errorf("write the ComfyUI workflow: %w", err)
	}
	return nil
}
