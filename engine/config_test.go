package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"studioworker/protocol"
)

func TestDefaultConfigIsAllSyntheticAndValid(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := mustRouter(t, cfg, Options{})
	caps := r.Capabilities()
	if caps.Engine != "synthetic" || len(caps.Down) != 0 {
		t.Fatalf("capabilities %+v", caps)
	}
	for _, k := range protocol.Kinds() {
		if ms := caps.Models[k]; len(ms) != 1 || ms[0] != "synthetic" || caps.VRAMGB[k] <= 0 {
			t.Errorf("%s: models %v vram %v", k, ms, caps.VRAMGB[k])
		}
	}
}

func TestConfigDecodesStrictlyFromSnakeCaseJSON(t *testing.T) {
	raw := `{"tts":{"backend":"exec","command":["espeak-ng","-w","{output}","{text}"],"ext":"wav","timeout_s":30,
		"nonzero_exit_retryable":false,"kill_grace_s":1,"max_prompt_chars":500,"models":["espeak"],"vram_gb":0.5},
		"llm":{"backend":"openai","url":"http://127.0.0.1:11434/v1","api_key":"k","stall_timeout_s":90,"max_width":1,"max_height":1,"max_frames":1},
		"stt":{"backend":"openai","url":"http://127.0.0.1:8080","transcription_path":"/inference","models":["base.en"]}}`
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	var cfg Config
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if bc := cfg[protocol.KindTTS]; bc.NonZeroExitRetryable == nil || *bc.NonZeroExitRetryable || bc.KillGraceS != 1 {
		t.Errorf("decoded %+v", bc)
	}
	if bc := cfg[protocol.KindLLM]; bc.stallTimeout() != 90*time.Second || cfg[protocol.KindSTT].stallTimeout() != DefaultStallTimeout {
		t.Errorf("stall timeouts %v and %v, want 90 s and the default", bc.stallTimeout(), cfg[protocol.KindSTT].stallTimeout())
	}
	dec = json.NewDecoder(strings.NewReader(`{"tts":{"backend":"exec","comand":["x"]}}`))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err == nil {
		t.Error("a misspelt key decoded")
	}
}

func TestConfigValidateNamesTheKey(t *testing.T) {
	dir := t.TempDir()
	uiFormat := filepath.Join(dir, "ui.json")
	os.WriteFile(uiFormat, []byte(`{"nodes":[],"links":[]}`), 0o600)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"unknown backend", Config{"llm": {Backend: "ollama"}}, `engines.llm.backend: unknown backend "ollama"`},
		{"missing backend", Config{"llm": {}}, "engines.llm.backend: required"},
		{"unknown kind", Config{"music": {Backend: "synthetic"}}, `engines.music.backend: unknown kind "music"`},
		{"openai without url", Config{"llm": {Backend: "openai"}}, "engines.llm.url: required"},
		{"openai bad url", Config{"llm": {Backend: "openai", URL: "127.0.0.1:11434"}}, "engines.llm.url:"},
		{"openai video", Config{"video": {Backend: "openai", URL: "http://x"}}, "engines.video.backend: openai has no video endpoint"},
		{"exec without command", Config{"tts": {Backend: "exec"}}, "engines.tts.command: required"},
		{"exec unknown placeholder", Config{"tts": {Backend: "exec", Command: []string{"say", "{txt}"}}}, "engines.tts.command[1]: unknown placeholder {txt}"},
		{"exec bad ext", Config{"image": {Backend: "exec", Command: []string{"x"}, Ext: "wav"}}, `engines.image.ext: "wav" is not a image result type`},
		{"key of another backend", Config{"tts": {Backend: "synthetic", Command: []string{"x"}}}, "engines.tts.command: is only used by backend exec"},
		{"negative limit", Config{"image": {Backend: "synthetic", MaxWidth: -1}}, "engines.image.max_width: must not be negative"},
		{"negative stall timeout", Config{"llm": {Backend: "openai", URL: "http://x/v1", StallTimeoutS: -1}}, "engines.llm.stall_timeout_s: must not be negative"},
		{"stall timeout on exec", Config{"tts": {Backend: "exec", Command: []string{"x"}, StallTimeoutS: 30}}, "engines.tts.stall_timeout_s: is only used by backend openai or comfyui"},
		{"duplicate model", Config{"llm": {Backend: "synthetic", Models: []string{"a", "a"}}}, `engines.llm.models[1]: "a" is listed twice`},
		{"comfyui llm", Config{"llm": {Backend: "comfyui", URL: "http://x", Workflow: exampleWorkflow, Mapping: map[string]NodeInput{"prompt": {"6", "text"}}}}, "engines.llm.backend: comfyui runs image and video jobs only"},
		{"comfyui missing workflow file", Config{"image": {Backend: "comfyui", URL: "http://x", Workflow: filepath.Join(dir, "nope.json"), Mapping: map[string]NodeInput{"prompt": {"6", "text"}}}}, "engines.image.workflow:"},
		{"comfyui UI format", Config{"image": {Backend: "comfyui", URL: "http://x", Workflow: uiFormat, Mapping: map[string]NodeInput{"prompt": {"6", "text"}}}}, `Save (API)`},
		{"comfyui unknown node", Config{"image": {Backend: "comfyui", URL: "http://x", Workflow: exampleWorkflow, Mapping: map[string]NodeInput{"prompt": {"66", "text"}}}}, `engines.image.mapping.prompt: node "66" is not in the workflow`},
		{"comfyui unknown input", Config{"image": {Backend: "comfyui", URL: "http://x", Workflow: exampleWorkflow, Mapping: map[string]NodeInput{"prompt": {"6", "txt"}}}}, `engines.image.mapping.prompt: node "6" (CLIPTextEncode) has no input "txt" (it has: clip, text)`},
		{"comfyui unknown field", Config{"image": {Backend: "comfyui", URL: "http://x", Workflow: exampleWorkflow, Mapping: map[string]NodeInput{"prompt": {"6", "text"}, "cfg": {"3", "cfg"}}}}, "engines.image.mapping.cfg: unknown job field"},
		{"comfyui without prompt mapping", Config{"image": {Backend: "comfyui", URL: "http://x", Workflow: exampleWorkflow}}, "engines.image.mapping.prompt: required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want it to say %q", err, tc.want)
			}
			if _, err := New(tc.cfg, Options{}); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

func TestProbeBackendForTheTestButton(t *testing.T) {
	f := newFakeOpenAI(t, "")
	models, err := ProbeBackend(context.Background(), protocol.KindLLM, BackendConfig{Backend: BackendOpenAI, URL: f.URL + "/v1"}, nil)
	if err != nil || len(models) != 1 || models[0] != "llama3" {
		t.Fatalf("ProbeBackend = %v, %v", models, err)
	}
	_, err = ProbeBackend(context.Background(), protocol.KindLLM, BackendConfig{Backend: BackendOpenAI}, nil)
	if err == nil || !strings.Contains(err.Error(), "engines.llm.url") {
		t.Fatalf("ProbeBackend of a bad config = %v", err)
	}
}

func TestBackendConfigLogValueHidesTheAPIKey(t *testing.T) {
	var b bytes.Buffer
	bc := BackendConfig{Backend: BackendOpenAI, URL: "http://x/v1", APIKey: "topsecret"}
	b.WriteString(bc.LogValue().String())
	if strings.Contains(b.String(), "topsecret") || !strings.Contains(b.String(), "http://x/v1") {
		t.Fatalf("log value %q", b.String())
	}
}
