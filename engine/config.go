// config.go: the engines' config — which backend serves each kind, its address or command, models,
// workflow mapping, limits and timeouts — with defaults and validation. It must not know the
// worker's other settings.

package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"studioworker/protocol"
)

// Backend names, the values of BackendConfig.Backend.
const (
	BackendSynthetic = "synthetic"
	BackendOpenAI    = "openai"
	BackendComfyUI   = "comfyui"
	BackendExec      = "exec"
)

// Defaults applied when a limit or timeout is left at zero.
const (
	DefaultMaxPromptChars = 100_000
	DefaultMaxWidth       = 4096
	DefaultMaxHeight      = 4096
	DefaultMaxFrames      = 1000
	DefaultTimeout        = 10 * time.Minute
	DefaultKillGrace      = 5 * time.Second
)

// Config says which backend runs each kind; a kind absent from it is not offered.
// app/ decodes it from the worker's config file under the key "engines".
type Config map[protocol.Kind]BackendConfig

// NodeInput names one input of one node of a ComfyUI API-format workflow.
type NodeInput struct {
	Node  string `json:"node"`
	Input string `json:"input"`
}

// BackendConfig configures the backend of one kind.
type BackendConfig struct {
	// Backend is "synthetic", "openai", "comfyui" or "exec".
	Backend string `json:"backend"`
	// Models are the models offered for the kind. When empty they are discovered from the backend
	// (synthetic: "synthetic").
	Models []string `json:"models,omitempty"`
	// VRAMGB is the kind's VRAM figure, reported in the capabilities.
	VRAMGB float64 `json:"vram_gb,omitempty"`

	// URL is the base URL: an OpenAI-compatible server's including /v1, or ComfyUI's.
	URL string `json:"url,omitempty"`
	// APIKey is sent as a bearer token to an OpenAI-compatible server. Never logged.
	APIKey string `json:"api_key,omitempty"`
	// TimeoutS bounds one job on the backend, in seconds (default 600).
	TimeoutS float64 `json:"timeout_s,omitempty"`
	// StallTimeoutS ends a job whose backend goes silent for this long, in seconds (default 60;
	// openai and comfyui): an OpenAI-compatible server that sends nothing more once its answer
	// has begun, a ComfyUI prompt that reports no progress once it runs. timeout_s stays the
	// ceiling.
	StallTimeoutS float64 `json:"stall_timeout_s,omitempty"`
	// TranscriptionPath replaces /audio/transcriptions (relative to URL) for stt, for servers
	// that serve another path (whisper.cpp's whisper-server: /inference with URL at its root).
	TranscriptionPath string `json:"transcription_path,omitempty"`
	// Voice is the tts voice used when the job names none (openai); without it none is sent, and
	// the server speaks in the model's own voice.
	Voice string `json:"voice,omitempty"`

	// Workflow is the path of a ComfyUI API-format workflow JSON file.
	Workflow string `json:"workflow,omitempty"`
	// Mapping maps a job field (prompt, negative_prompt, seed, width, height, steps, frames, fps,
	// model) to the workflow node input that receives it.
	Mapping map[string]NodeInput `json:"mapping,omitempty"`

	// Command is the exec backend's argv, never run through a shell, with placeholders
	// {prompt} {text} {output} {output_base} {input} {seed} {width} {height} {model}, and also
	// {negative_prompt} {voice} {language} {steps} {frames} {fps}. A placeholder the job does not
	// set becomes an empty string. Without {output} or {output_base}, standard output is the result.
	Command []string `json:"command,omitempty"`
	// Stdin, when set, is written to the command's standard input, placeholders filled.
	Stdin string `json:"stdin,omitempty"`
	// Ext is the extension of the file the command writes at {output} (default: the kind's first).
	Ext string `json:"ext,omitempty"`
	// NonZeroExitRetryable says whether a non-zero exit may be retried (default true).
	NonZeroExitRetryable *bool `json:"nonzero_exit_retryable,omitempty"`
	// KillGraceS is how long a cancelled command has between SIGTERM and SIGKILL (default 5).
	KillGraceS float64 `json:"kill_grace_s,omitempty"`
	// Probe is the exec backend's health check, an argv run (never through a shell) at every
	// check of the backends: exit 0 within the probe timeout says the kind can be offered. Without
	// it the check is only that Command's program is installed. It is for a command that needs
	// something else to be up (a local server it calls, a mounted model folder), and it is not
	// defaulted to `program --version`: a script may ignore its arguments and start real work.
	Probe []string `json:"probe,omitempty"`

	// MaxPromptChars caps prompt, negative_prompt, text and the messages together (default 100000).
	MaxPromptChars int `json:"max_prompt_chars,omitempty"`
	// MaxWidth and MaxHeight cap an image's or a video's size in pixels (default 4096).
	MaxWidth  int `json:"max_width,omitempty"`
	MaxHeight int `json:"max_height,omitempty"`
	// MaxFrames caps a video's frames (default 1000).
	MaxFrames int `json:"max_frames,omitempty"`
}

// LogValue keeps the API key out of logs.
func (bc BackendConfig) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("backend", bc.Backend)}
	if bc.URL != "" {
		attrs = append(attrs, slog.String("url", bc.URL))
	}
	if len(bc.Command) > 0 {
		attrs = append(attrs, slog.String("command", bc.Command[0]))
	}
	if len(bc.Models) > 0 {
		attrs = append(attrs, slog.Any("models", bc.Models))
	}
	return slog.GroupValue(attrs...)
}

func (bc BackendConfig) timeout() time.Duration {
	if bc.TimeoutS <= 0 {
		return DefaultTimeout
	}
	return time.Duration(bc.TimeoutS * float64(time.Second))
}

func (bc BackendConfig) killGrace() time.Duration {
	if bc.KillGraceS <= 0 {
		return DefaultKillGrace
	}
	return time.Duration(bc.KillGraceS * float64(time.Second))
}

func (bc BackendConfig) limits() limits {
	l := limits{maxPrompt: bc.MaxPromptChars, maxWidth: bc.MaxWidth, maxHeight: bc.MaxHeight, maxFrames: bc.MaxFrames}
	if l.maxPrompt <= 0 {
		l.maxPrompt = DefaultMaxPromptChars
	}
	if l.maxWidth <= 0 {
		l.maxWidth = DefaultMaxWidth
	}
	if l.maxHeight <= 0 {
		l.maxHeight = DefaultMaxHeight
	}
	if l.maxFrames <= 0 {
		l.maxFrames = DefaultMaxFrames
	}
	return l
}

// resultExt is the extension of a binary result the exec backend expects.
func (bc BackendConfig) resultExt(kind protocol.Kind) string {
	if bc.Ext != "" {
		return strings.ToLower(strings.TrimPrefix(bc.Ext, "."))
	}
	if exts := kind.ResultExts(); len(exts) > 0 {
		return exts[0]
	}
	return "txt"
}

// DefaultConfig puts every kind on the synthetic backend, with VRAM figures that let a demo show
// admission at work.
func DefaultConfig() Config {
	vram := map[protocol.Kind]float64{
		protocol.KindLLM: 4, protocol.KindImage: 6, protocol.KindTTS: 1, protocol.KindSTT: 2, protocol.KindVideo: 10,
	}
	c := Config{}
	for _, k := range protocol.Kinds() {
		c[k] = BackendConfig{Backend: BackendSynthetic, VRAMGB: vram[k]}
	}
	return c
}

// Mapping fields the comfyui backend fills, with the kinds they apply to.
var comfyFields = []string{"prompt", "negative_prompt", "seed", "width", "height", "steps", "frames", "fps", "model"}

// Placeholders the exec backend fills.
var execPlaceholders = []string{"prompt", "negative_prompt", "text", "voice", "language", "output", "output_base", "input",
	"seed", "width", "height", "steps", "frames", "fps", "model"}

var placeholderRE = regexp.MustCompile(`\{([a-z_]+)\}`)

// Validate checks the whole configuration and returns every problem found, each naming its key
// as in the config file, e.g. "engines.tts.command: ...".
func (c Config) Validate() error {
	var errs []error
	kinds := make([]protocol.Kind, 0, len(c))
	for k := range c {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		errs = append(errs, c[k].validate(k)...)
	}
	return errors.Join(errs...)
}

func (bc BackendConfig) validate(kind protocol.Kind) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("engines.%s.%s: %s", kind, key, fmt.Sprintf(format, args...)))
	}
	if !kind.Valid() {
		bad("backend", "unknown kind %q (kinds: llm, image, tts, stt, video)", string(kind))
		return errs
	}
	for i, m := range bc.Models {
		if strings.TrimSpace(m) == "" {
			bad(fmt.Sprintf("models[%d]", i), "empty model name")
		} else if slices.Index(bc.Models, m) != i {
			bad(fmt.Sprintf("models[%d]", i), "%q is listed twice", m)
		}
	}
	if bc.VRAMGB < 0 {
		bad("vram_gb", "must not be negative")
	}
	if bc.TimeoutS < 0 {
		bad("timeout_s", "must not be negative")
	}
	if bc.KillGraceS < 0 {
		bad("kill_grace_s", "must not be negative")
	}
	if bc.StallTimeoutS < 0 {
		bad("stall_timeout_s", "must not be negative")
	}
	for key, v := range map[string]int{"max_prompt_chars": bc.MaxPromptChars, "max_width": bc.MaxWidth, "max_height": bc.MaxHeight, "max_frames": bc.MaxFrames} {
		if v < 0 {
			bad(key, "must not be negative")
		}
	}
	// Keys that belong to another backend are a sign of a typo in "backend"; say so.
	only := func(key string, set bool, backends ...string) {
		if set && !slices.Contains(backends, bc.Backend) {
			bad(key, "is only used by backend %s", strings.Join(backends, " or "))
		}
	}
	only("url", bc.URL != "", BackendOpenAI, BackendComfyUI)
	only("api_key", bc.APIKey != "", BackendOpenAI)
	only("transcription_path", bc.TranscriptionPath != "", BackendOpenAI)
	only("voice", bc.Voice != "", BackendOpenAI)
	only("workflow", bc.Workflow != "", BackendComfyUI)
	only("mapping", len(bc.Mapping) > 0, BackendComfyUI)
	only("command", len(bc.Command) > 0, BackendExec)
	only("stdin", bc.Stdin != "", BackendExec)
	only("ext", bc.Ext != "", BackendExec)
	only("nonzero_exit_retryable", bc.NonZeroExitRetryable != nil, BackendExec)
	only("kill_grace_s", bc.KillGraceS != 0, BackendExec)
	only("probe", len(bc.Probe) > 0, BackendExec)
	only("stall_timeout_s", bc.StallTimeoutS != 0, BackendOpenAI, BackendComfyUI)

	switch bc.Backend {
	case BackendSynthetic:
	case BackendOpenAI:
		if kind == protocol.KindVideo {
			bad("backend", "openai has no video endpoint; use comfyui or exec for video")
		}
		checkURL(bc.URL, bad)
		if bc.TranscriptionPath != "" && !strings.HasPrefix(bc.TranscriptionPath, "/") {
			bad("transcription_path", "must start with /")
		}
		if bc.TranscriptionPath != "" && kind != protocol.KindSTT {
			bad("transcription_path", "is only used for stt")
		}
	case BackendComfyUI:
		if kind != protocol.KindImage && kind != protocol.KindVideo {
			bad("backend", "comfyui runs image and video jobs only")
		}
		checkURL(bc.URL, bad)
		if bc.Workflow == "" {
			bad("workflow", "required: the path of an API-format workflow JSON file")
		} else if wf, err := loadWorkflow(bc.Workflow); err != nil {
			bad("workflow", "%v", err)
		} else {
			for _, f := range sortedKeys(bc.Mapping) {
				if err := wf.check(f, bc.Mapping[f]); err != nil {
					bad("mapping."+f, "%v", err)
				}
			}
		}
		for _, f := range sortedKeys(bc.Mapping) {
			if !slices.Contains(comfyFields, f) {
				bad("mapping."+f, "unknown job field (known: %s)", strings.Join(comfyFields, ", "))
			}
		}
		if _, ok := bc.Mapping["prompt"]; !ok {
			bad("mapping.prompt", "required: the node input that receives the prompt")
		}
	case BackendExec:
		if len(bc.Command) == 0 || strings.TrimSpace(bc.Command[0]) == "" {
			bad("command", "required: the program and its arguments as a list")
		}
		for i, a := range append(slices.Clone(bc.Command), bc.Stdin) {
			key := fmt.Sprintf("command[%d]", i)
			if i == len(bc.Command) {
				key = "stdin"
			}
			for _, m := range placeholderRE.FindAllStringSubmatch(a, -1) {
				if !slices.Contains(execPlaceholders, m[1]) {
					bad(key, "unknown placeholder {%s} (known: {%s})", m[1], strings.Join(execPlaceholders, "} {"))
				}
			}
		}
		if len(bc.Probe) > 0 && strings.TrimSpace(bc.Probe[0]) == "" {
			bad("probe", "the program to run first, then its arguments, as a list")
		}
		for i, a := range bc.Probe {
			if placeholderRE.MatchString(a) {
				bad(fmt.Sprintf("probe[%d]", i), "a probe runs without a job: no placeholders")
			}
		}
		if ext := bc.resultExt(kind); kind.BinaryResult() && !kind.AllowedExt(ext) {
			bad("ext", "%q is not a %s result type (allowed: %s)", ext, kind, strings.Join(kind.ResultExts(), ", "))
		}
	case "":
		bad("backend", "required: one of synthetic, openai, comfyui, exec")
	default:
		bad("backend", "unknown backend %q (one of synthetic, openai, comfyui, exec)", bc.Backend)
	}
	return errs
}

func checkURL(raw string, bad func(key, format string, args ...any)) {
	if raw == "" {
		bad("url", "required")
		return
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("url", "%q is not an http:// or https:// URL", raw)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
