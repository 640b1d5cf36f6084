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
	// Name is the program as a creator knows it: "Ollama", "llama.cpp server", "ComfyUI",
	// "LocalAI", "espeak-ng", "whisper.cpp".
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
	DefaultOllamaURL  = "http://127.0.0.1:11434"
	DefaultLlamaURL   = "http://127.0.0.1:8080" // llama.cpp's llama-server and LocalAI both default to 8080
	DefaultComfyUIURL = "http://127.0.0.1:8188"
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
	// OllamaURL, LlamaURL and ComfyUIURL replace the default addresses (tests); each must be a
	// loopback address.
	OllamaURL, LlamaURL, ComfyUIURL string
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
	probes := []func(context.Context, *http.Client) []Detected{
		d.probeOllama, d.probePort8080, d.probeComfyUI,
	}
	for _, p := range probes {
		wg.Go(func() { add(p(ctx, client)...) })
	}
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

// getJSON fetches base+path and decodes a JSON body of at most 1 MiB into v.
func getJSON(ctx context.Context, client *http.Client, base, path string, v any) error {
	u, err := url.Parse(base)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %s", ErrNotLoopback, base)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+path, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return fmt.Errorf("%s%s: %s", base, path, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
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
	Data []struct {
		ID      string `json:"id"`
		OwnedBy string `json:"owned_by"`
	} `json:"data"`
	Models []struct {
		Name string `json:"name"`
	} `json:"models"`
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

func (d Detector) probeOllama(ctx context.Context, client *http.Client) []Detected {
	base := orDefault(d.OllamaURL, DefaultOllamaURL)
	var models []string
	var tags struct {
		Models []struct {
			Name string `json:"name"`
		} `json:"models"`
	}
	if err := getJSON(ctx, client, base, "/api/tags", &tags); err == nil {
		models = []string{}
		for _, m := range tags.Models {
			models = append(models, m.Name)
		}
	} else {
		var m openAIModels
		if getJSON(ctx, client, base, "/v1/models", &m) != nil {
			return nil
		}
		models = m.ids()
	}
	note := ""
	if len(models) == 0 {
		note = "It lists no models yet: pull one (ollama pull llama3.2)."
	}
	return []Detected{{
		Name: "Ollama", Kind: protocol.KindLLM, Where: base, Models: models, Ready: true, Note: note,
		Backend: backendFormOf(engine.BackendConfig{Backend: engine.BackendOpenAI, URL: strings.TrimRight(base, "/") + "/v1"}),
	}}
}

// probePort8080 tells llama.cpp's server from LocalAI, which both listen on 8080 by default:
// llama-server marks its models "owned_by": "llamacpp", lists them twice, and serves /props.
func (d Detector) probePort8080(ctx context.Context, client *http.Client) []Detected {
	base := orDefault(d.LlamaURL, DefaultLlamaURL)
	var m openAIModels
	if getJSON(ctx, client, base, "/v1/models", &m) != nil {
		return nil
	}
	models := m.ids()
	llama := len(m.Models) > 0
	for _, d := range m.Data {
		llama = llama || d.OwnedBy == "llamacpp"
	}
	if !llama {
		var props map[string]json.RawMessage
		llama = getJSON(ctx, client, base, "/props", &props) == nil && props["default_generation_settings"] != nil
	}
	bc := backendFormOf(engine.BackendConfig{Backend: engine.BackendOpenAI, URL: strings.TrimRight(base, "/") + "/v1"})
	if llama {
		return []Detected{{Name: "llama.cpp server", Kind: protocol.KindLLM, Where: base, Models: models, Backend: bc, Ready: true}}
	}
	return []Detected{{Name: "LocalAI", Kind: protocol.KindLLM, Where: base, Models: models, Backend: bc, Ready: true,
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
