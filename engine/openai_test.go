package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"studioworker/protocol"
)

func openAIRouter(t *testing.T, f *fakeOpenAI, key string, kinds ...protocol.Kind) *Router {
	t.Helper()
	cfg := Config{}
	for _, k := range kinds {
		cfg[k] = BackendConfig{Backend: BackendOpenAI, URL: f.URL + "/v1", APIKey: key, TimeoutS: 20}
	}
	r := mustRouter(t, cfg, Options{ProbeTimeout: 2 * time.Second})
	r.Refresh(context.Background())
	return r
}

func llmResult(t *testing.T, res Result) protocol.LLMResult {
	t.Helper()
	var out protocol.LLMResult
	if err := json.Unmarshal(res.JSON, &out); err != nil {
		t.Fatalf("result %s: %v", res.JSON, err)
	}
	return out
}

func TestOpenAIChatStreamsWithUsageAndProgress(t *testing.T) {
	f := newFakeOpenAI(t, "sekret")
	r := openAIRouter(t, f, "sekret", protocol.KindLLM)
	if got := r.Capabilities().Models[protocol.KindLLM]; !slices.Equal(got, []string{"llama3"}) {
		t.Fatalf("models %v, want the data[].id of /models", got)
	}
	var p progressLog
	res, err := r.Run(context.Background(), newTestJob(t, protocol.KindLLM, "llama3", `{"prompt":"hi","max_tokens":4,"temperature":0.2,"seed":9}`), p.fn)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	out := llmResult(t, res)
	want := protocol.LLMResult{Text: "Hello there, friend", FinishReason: "length", Usage: protocol.Usage{PromptTokens: 11, CompletionTokens: 4}}
	if out != want {
		t.Errorf("result %+v, want %+v", out, want)
	}
	req := f.lastRequest()
	if req["stream"] != true || req["model"] != "llama3" || req["max_tokens"] != 4.0 || req["seed"] != 9.0 {
		t.Errorf("request %v", req)
	}
	if opts, _ := req["stream_options"].(map[string]any); opts["include_usage"] != true {
		t.Errorf("request does not ask for usage: %v", req)
	}
	msgs, _ := req["messages"].([]any)
	if len(msgs) != 1 || msgs[0].(map[string]any)["role"] != "user" || msgs[0].(map[string]any)["content"] != "hi" {
		t.Errorf("prompt did not become one user message: %v", msgs)
	}
	fracs, msgsSeen := p.snapshot()
	if len(fracs) < 4 || fracs[len(fracs)-1] != 1 || !slices.Contains(msgsSeen, "2 tokens") {
		t.Errorf("progress %v %v: want one step per token against max_tokens", fracs, msgsSeen)
	}
	if i := slices.Index(msgsSeen, "2 tokens"); fracs[i] < 0.45 || fracs[i] > 0.5 {
		t.Errorf("2 of 4 tokens reported as %.2f", fracs[i])
	}
}

func TestOpenAIChatVariants(t *testing.T) {
	f := newFakeOpenAI(t, "")
	r := openAIRouter(t, f, "", protocol.KindLLM)
	tests := []struct {
		prompt string
		want   protocol.LLMResult
		class  error
		retry  bool
	}{
		{prompt: "no-usage", want: protocol.LLMResult{Text: "Hello there, friend!", FinishReason: "stop", Usage: protocol.Usage{PromptTokens: 1, CompletionTokens: 5}}},
		{prompt: "not-streaming", want: protocol.LLMResult{Text: "Plain answer.", FinishReason: "stop", Usage: protocol.Usage{PromptTokens: 3, CompletionTokens: 2}}},
		{prompt: "bad-request", class: ErrInvalidInput, retry: false},
		{prompt: "server-error", class: ErrBackendFailed, retry: true},
		{prompt: "unknown-model", class: ErrUnsupported, retry: false},
		{prompt: "vanish", class: ErrBackendDown, retry: true},
	}
	for _, tc := range tests {
		t.Run(tc.prompt, func(t *testing.T) {
			res, err := r.Run(context.Background(), newTestJob(t, protocol.KindLLM, "llama3", `{"prompt":`+quote(tc.prompt)+`}`), nil)
			if tc.class != nil {
				assertClass(t, err, tc.class, tc.retry, "")
				return
			}
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := llmResult(t, res); got != tc.want {
				t.Errorf("result %+v, want %+v", got, tc.want)
			}
		})
	}
	// The server's own words reach the error.
	_, err := r.Run(context.Background(), newTestJob(t, protocol.KindLLM, "llama3", `{"prompt":"bad-request"}`), nil)
	if !strings.Contains(err.Error(), "exceeds the available context size") {
		t.Errorf("error %q does not quote the server", err)
	}
}

func TestOpenAIWrongAPIKeyIsRetryableAndTheKeyIsNeverLogged(t *testing.T) {
	f := newFakeOpenAI(t, "right-key")
	h := &recordHandler{}
	cfg := Config{protocol.KindLLM: {Backend: BackendOpenAI, URL: f.URL + "/v1", APIKey: "wrong-key-123"}}
	r := mustRouter(t, cfg, Options{Logger: slog.New(h)})
	r.Refresh(context.Background())
	_, err := r.Run(context.Background(), newTestJob(t, protocol.KindLLM, "llama3", `{"prompt":"hi"}`), nil)
	assertClass(t, err, ErrBackendFailed, true, "")
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, rec := range h.records {
		var b strings.Builder
		b.WriteString(rec.Message)
		rec.Attrs(func(a slog.Attr) bool { b.WriteString(a.Value.String()); return true })
		if strings.Contains(b.String(), "wrong-key-123") {
			t.Fatalf("the API key was logged: %s", b.String())
		}
	}
}

func TestOpenAISlowAnswerTimesOutAndCancelStopsTheRequest(t *testing.T) {
	f := newFakeOpenAI(t, "")
	cfg := Config{protocol.KindLLM: {Backend: BackendOpenAI, URL: f.URL + "/v1", TimeoutS: 0.3}}
	r := mustRouter(t, cfg, Options{})
	r.Refresh(context.Background())
	before := f.requestCount()
	_, err := r.Run(context.Background(), newTestJob(t, protocol.KindLLM, "llama3", `{"prompt":"slow"}`), nil)
	assertClass(t, err, ErrTimeout, true, "")
	if f.requestCount() > before { // on a loaded machine the deadline may pass before the server reads it
		awaitSignal(t, f.cancelled, "the server to see the request end")
	}

	cfg[protocol.KindLLM] = BackendConfig{Backend: BackendOpenAI, URL: f.URL + "/v1"}
	r = mustRouter(t, cfg, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	before = f.requestCount()
	done := runAsync(func() error {
		_, err := r.Run(ctx, newTestJob(t, protocol.KindLLM, "llama3", `{"prompt":"slow"}`), nil)
		return err
	})
	waitFor(t, "the request to reach the server", 10*time.Second, func() bool { return f.requestCount() > before })
	cancel()
	assertClass(t, awaitErr(t, done, 10*time.Second), ErrCancelled, true, "")
	awaitSignal(t, f.cancelled, "the server to see the request cancelled")
}

func awaitSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestOpenAIServerDownIsRetryable(t *testing.T) {
	f := newFakeOpenAI(t, "")
	url := f.URL
	f.Close()
	cfg := Config{protocol.KindLLM: {Backend: BackendOpenAI, URL: url + "/v1", Models: []string{"llama3"}}}
	r := mustRouter(t, cfg, Options{})
	_, err := r.Run(context.Background(), newTestJob(t, protocol.KindLLM, "llama3", `{"prompt":"hi"}`), nil)
	assertClass(t, err, ErrBackendDown, true, "")
	if caps := r.Refresh(context.Background()); caps.Down[protocol.KindLLM] == "" || len(caps.Models) != 0 {
		t.Errorf("a closed server is not down: %+v", caps)
	}
}

func TestOpenAIImageDecodesStreamedB64JSON(t *testing.T) {
	f := newFakeOpenAI(t, "")
	r := openAIRouter(t, f, "", protocol.KindImage)
	job := newTestJob(t, protocol.KindImage, "llama3", `{"prompt":"a cat","width":40,"height":30,"seed":5,"negative_prompt":"dogs"}`)
	res, err := r.Run(context.Background(), job, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	data, err := os.ReadFile(res.File)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, testPNG(40, 30)) || res.Ext != "png" || filepath.Dir(res.File) != job.SpoolDir {
		t.Fatalf("result %+v: the file is not the PNG the server sent", res)
	}
	checkSum(t, res)
	if _, err := png.Decode(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if req := f.lastRequest(); req["size"] != "40x30" || req["negative_prompt"] != "dogs" || req["seed"] != 5.0 || req["n"] != 1.0 {
		t.Errorf("request %v", req)
	}
	_, err = r.Run(context.Background(), newTestJob(t, protocol.KindImage, "llama3", `{"prompt":"no-b64","width":4,"height":4}`), nil)
	assertClass(t, err, ErrBackendFailed, true, "")
}

func TestOpenAISpeechAndTranscription(t *testing.T) {
	f := newFakeOpenAI(t, "")
	cfg := Config{
		protocol.KindTTS: {Backend: BackendOpenAI, URL: f.URL + "/v1", Voice: "nova"},
		// whisper-server: one path at the root, no /models, so the models are configured.
		protocol.KindSTT: {Backend: BackendOpenAI, URL: f.URL, TranscriptionPath: "/inference", Models: []string{"whisper-base"}},
	}
	f.noModels.Store(true)
	r := mustRouter(t, cfg, Options{})
	caps := r.Refresh(context.Background())
	if !slices.Equal(caps.Models[protocol.KindSTT], []string{"whisper-base"}) {
		t.Fatalf("a server without /models but with configured models is not up: %+v", caps)
	}
	if _, up := caps.Models[protocol.KindTTS]; up {
		t.Fatalf("tts without /models and without configured models should be down: %+v", caps)
	}

	res, err := r.Run(context.Background(), newTestJob(t, protocol.KindTTS, "tts-1", `{"text":"hello","speed":1.5}`), nil)
	if err != nil {
		t.Fatalf("tts: %v", err)
	}
	if info, err := readWAVInfo(res.File); err != nil || res.Ext != "wav" || info.seconds != 1 {
		t.Fatalf("tts result %+v: %v %+v", res, err, info)
	}
	checkSum(t, res)
	if req := f.lastRequest(); req["voice"] != "nova" || req["response_format"] != "wav" || req["speed"] != 1.5 || req["input"] != "hello" {
		t.Errorf("speech request %v", req)
	}

	in := filepath.Join(t.TempDir(), "talk.wav")
	os.WriteFile(in, testWAV(2), 0o600)
	job := newTestJob(t, protocol.KindSTT, "whisper-base", `{"language":"en"}`)
	job.InputFile = in
	res, err = r.Run(context.Background(), job, nil)
	if err != nil {
		t.Fatalf("stt: %v", err)
	}
	var out protocol.STTResult
	json.Unmarshal(res.JSON, &out)
	if out.Text != "Hello world." || out.Language != "en" || len(out.Segments) != 2 || out.Segments[1] != (protocol.Segment{Start: 1.1, End: 2, Text: "world."}) {
		t.Errorf("transcript %+v", out)
	}
	f.mu.Lock()
	form := f.forms[len(f.forms)-1]
	f.mu.Unlock()
	if form["response_format"] != "verbose_json" || form["language"] != "en" || form["model"] != "whisper-base" || form["size"] != "64044" {
		t.Errorf("multipart form %v", form)
	}
}

func TestRouterRefreshDropsAKindWhoseBackendStopsAnsweringAndBringsItBack(t *testing.T) {
	f := newFakeOpenAI(t, "")
	h := &recordHandler{}
	cfg := DefaultConfig()
	cfg[protocol.KindLLM] = BackendConfig{Backend: BackendOpenAI, URL: f.URL + "/v1", VRAMGB: 8}
	r := mustRouter(t, cfg, Options{Logger: slog.New(h), RefreshEvery: 20 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond})
	if caps := r.Capabilities(); caps.Down[protocol.KindLLM] == "" || caps.Engine != "openai,synthetic" || len(caps.Models) != 4 {
		t.Fatalf("before the first refresh: %+v", caps)
	}
	var mu sync.Mutex
	var changes []Capabilities
	r.OnChange(func(c Capabilities) { mu.Lock(); changes = append(changes, c); mu.Unlock() })
	ctx, cancel := context.WithCancel(context.Background())
	r.Start(ctx)
	up := func() bool { _, ok := r.Capabilities().Models[protocol.KindLLM]; return ok }
	waitFor(t, "llm up", 10*time.Second, up)
	if caps := r.Capabilities(); caps.VRAMGB[protocol.KindLLM] != 8 {
		t.Errorf("vram %v", caps.VRAMGB)
	}
	f.hang.Store(true)
	waitFor(t, "llm down", 10*time.Second, func() bool { return !up() && r.Capabilities().Down[protocol.KindLLM] != "" })
	if _, ok := h.find("dropped from the capabilities"); !ok {
		t.Error("the worker did not log that the kind was dropped")
	}
	f.hang.Store(false)
	waitFor(t, "llm back", 10*time.Second, up)
	cancel()
	r.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(changes) < 3 {
		t.Errorf("OnChange called %d times, want up, down, up", len(changes))
	}
	var pc protocol.Capabilities
	r.Capabilities().Apply(&pc)
	if pc.Engine != "openai,synthetic" || len(pc.TaskKinds) != 5 || !pc.Supports(protocol.KindLLM, "llama3") || !slices.Contains(pc.SupportedModels, "synthetic") {
		t.Errorf("protocol capabilities %+v", pc)
	}
}

// TestTranscriptionCarriesTheModelThatAnsweredAndAnISOLanguage: whisper-server answers
// "english" where the contract's stt result says "en", and names no model; a server that names
// its model says so in the result when it is not the job's (spec §6).
func TestTranscriptionCarriesTheModelThatAnsweredAndAnISOLanguage(t *testing.T) {
	tests := []struct {
		name                     string
		jobLanguage, jobModel    string
		serverModel, serverWords string // what a server other than whisper-server names
		wantLanguage, wantModel  string
	}{
		{name: "whisper-server, English asked", jobLanguage: "en", jobModel: "whisper-base", wantLanguage: "en"},
		{name: "whisper-server, detected", jobModel: "whisper-base", wantLanguage: "en"},
		{name: "whisper-server, German asked", jobLanguage: "de", jobModel: "whisper-base", wantLanguage: "de"},
		{name: "whisper-server, Japanese asked", jobLanguage: "ja", jobModel: "whisper-base", wantLanguage: "ja"},
		{name: "a word whisper does not know", jobModel: "whisper-base", serverWords: "Klingon", wantLanguage: "klingon"},
		{name: "a code already", jobModel: "whisper-base", serverWords: "pt", wantLanguage: "pt"},
		{name: "another model answered", jobLanguage: "en", jobModel: "whisper-base", serverModel: "whisper-large-v3", wantLanguage: "en", wantModel: "whisper-large-v3"},
		{name: "the job's model answered", jobLanguage: "en", jobModel: "whisper-base", serverModel: "Whisper-Base", wantLanguage: "en"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeOpenAI(t, "")
			f.noModels.Store(true)
			f.sttModel.Store(tc.serverModel)
			f.sttLanguage.Store(tc.serverWords)
			r := mustRouter(t, Config{protocol.KindSTT: {Backend: BackendOpenAI, URL: f.URL, TranscriptionPath: "/inference", Models: []string{tc.jobModel}}}, Options{})
			r.Refresh(context.Background())
			in := filepath.Join(t.TempDir(), "talk.wav")
			if err := os.WriteFile(in, testWAV(0.5), 0o600); err != nil {
				t.Fatal(err)
			}
			input := `{}`
			if tc.jobLanguage != "" {
				input = `{"language":` + quote(tc.jobLanguage) + `}`
			}
			job := newTestJob(t, protocol.KindSTT, tc.jobModel, input)
			job.InputFile = in
			res, err := r.Run(context.Background(), job, nil)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			var out protocol.STTResult
			if err := json.Unmarshal(res.JSON, &out); err != nil {
				t.Fatal(err)
			}
			if out.Language != tc.wantLanguage || out.Model != tc.wantModel || out.Text != "Hello world." {
				t.Errorf("result %s: want language %q, model %q", res.JSON, tc.wantLanguage, tc.wantModel)
			}
			if tc.wantModel == "" && bytes.Contains(res.JSON, []byte(`"model"`)) {
				t.Errorf("result %s names a model when nothing is known beyond the job's", res.JSON)
			}
		})
	}
}
