package engine

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeOpenAI is an in-test HTTP server that answers like an OpenAI-compatible server (llama.cpp's
// llama-server, Ollama, whisper-server) as documented in shared/FIELD-NOTES.md. The llm prompt
// chooses its behaviour: "bad-request", "server-error", "unknown-model", "slow", "vanish",
// "no-usage", "not-streaming", "huge-error" (a 500 whose message is 10 KiB), "stall" (two
// tokens, then silence on the open connection), "sigterm" (as llama-server stopped with SIGTERM:
// two tokens, then it closes its listener and stays silent on the open connection),
// "stream-error" (llama-server's parse error chunk quoting 10 KiB of output, no [DONE]),
// "stream-error-line" (an older llama-server's "error:" line), "stream-400" (vLLM's error chunk
// with code 400, then [DONE]), "stream-model-missing" (vLLM's NotFoundError chunk, then [DONE]);
// anything else streams a normal answer. An stt job whose language
// is "huge" gets whisper-server's plain-text 400 with 10 KiB of text.
type fakeOpenAI struct {
	*httptest.Server
	apiKey   string
	noModels atomic.Bool // /models answers 404 (whisper-server)
	hang     atomic.Bool // /models does not answer until the client gives up
	stopped  atomic.Bool // "sigterm" happened: no request is served any more
	// think delays the first chunk of a chat stream, after its headers (processing the prompt),
	// and a transcription's whole answer (whisper-server transcribes the whole file first).
	think     atomic.Int64
	cancelled chan struct{}
	// sttModel and sttLanguage, when set, are what a transcription server other than
	// whisper-server puts in its verbose_json: the model that answered, its own language word.
	sttModel, sttLanguage atomic.Value
	mu                    sync.Mutex
	requests              []map[string]any
	forms                 []map[string]string
}

func newFakeOpenAI(t *testing.T, apiKey string) *fakeOpenAI {
	f := &fakeOpenAI{apiKey: apiKey, cancelled: make(chan struct{}, 8)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", f.models)
	mux.HandleFunc("POST /v1/chat/completions", f.chat)
	mux.HandleFunc("POST /v1/images/generations", f.images)
	mux.HandleFunc("POST /v1/audio/speech", f.speech)
	mux.HandleFunc("POST /v1/audio/transcriptions", f.transcribe)
	mux.HandleFunc("POST /inference", f.transcribe) // whisper-server's one path
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.stopped.Load() {
			// Stopped: a request on a kept-alive connection finds it closed, as it would on a
			// real server that has shut its listener (whatever idle connection the pool holds).
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeOpenAI) requestCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

func (f *fakeOpenAI) lastRequest() map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		return nil
	}
	return f.requests[len(f.requests)-1]
}

func (f *fakeOpenAI) authorized(w http.ResponseWriter, r *http.Request) bool {
	if f.apiKey != "" && r.Header.Get("Authorization") != "Bearer "+f.apiKey {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":{"code":401,"message":"Invalid API Key","type":"authentication_error"}}`)
		return false
	}
	return true
}

func (f *fakeOpenAI) decode(w http.ResponseWriter, r *http.Request) (map[string]any, bool) {
	var req map[string]any
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, `{"error":{"code":500,"message":"malformed JSON","type":"server_error"}}`)
		return nil, false
	}
	f.mu.Lock()
	f.requests = append(f.requests, req)
	f.mu.Unlock()
	return req, true
}

func (f *fakeOpenAI) models(w http.ResponseWriter, r *http.Request) {
	if f.hang.Load() {
		<-r.Context().Done()
		return
	}
	if f.noModels.Load() {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"models":[{"name":"llama3.gguf","model":"llama3.gguf"}],"object":"list","data":[{"id":"llama3","object":"model","owned_by":"llamacpp"}]}`)
}

func (f *fakeOpenAI) chat(w http.ResponseWriter, r *http.Request) {
	if !f.authorized(w, r) {
		return
	}
	req, ok := f.decode(w, r)
	if !ok {
		return
	}
	msgs, _ := req["messages"].([]any)
	if len(msgs) == 0 {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"code":400,"message":"'messages' is required","type":"invalid_request_error"}}`)
		return
	}
	last, _ := msgs[len(msgs)-1].(map[string]any)
	prompt, _ := last["content"].(string)
	maxTokens := 5
	if m, ok := req["max_tokens"].(float64); ok && int(m) < maxTokens {
		maxTokens = int(m)
	}
	switch prompt {
	case "bad-request":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error"}}`)
		return
	case "server-error":
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, `{"error":{"code":500,"message":"CUDA error: out of memory","type":"server_error"}}`)
		return
	case "unknown-model":
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":{"message":"model \"nope\" not found, try pulling it first","type":"api_error"}}`)
		return
	case "huge-error":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, `{"error":{"code":500,"message":%q,"type":"server_error"}}`, parseFailure())
		return
	case "not-streaming":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"choices":[{"index":0,"message":{"role":"assistant","content":"Plain answer."},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}`)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	if f.think.Load() > 0 {
		// vLLM's headers go out at once; its first chunk comes after the prompt is processed.
		w.WriteHeader(http.StatusOK)
		fl.Flush()
		if !f.thinkFirst(r) {
			return
		}
	}
	event := func(s string) {
		fmt.Fprintf(w, "data: %s\n\n", s)
		fl.Flush()
	}
	event(`{"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"object":"chat.completion.chunk"}`)
	if prompt == "slow" {
		<-r.Context().Done()
		f.cancelled <- struct{}{}
		return
	}
	words := []string{"Hello", " there", ",", " friend", "!"}
	for i := 0; i < maxTokens; i++ {
		event(fmt.Sprintf(`{"choices":[{"finish_reason":null,"index":0,"delta":{"content":%q}}],"object":"chat.completion.chunk"}`, words[i]))
		if i == 1 {
			switch prompt {
			case "sigterm":
				f.stopped.Store(true)
				f.Listener.Close() // no new connections; this one stays open
				fallthrough
			case "stall":
				<-r.Context().Done() // silent until the client gives up
				f.cancelled <- struct{}{}
				return
			case "stream-error":
				event(fmt.Sprintf(`{"error":{"code":500,"message":%q,"type":"server_error"}}`, parseFailure()))
				return
			case "stream-error-line":
				fmt.Fprintf(w, "error: %s\n\n", `{"code":503,"message":"Loading model","type":"unavailable_error"}`)
				return
			case "stream-model-missing":
				event("{\"error\":{\"object\":\"error\",\"message\":\"The model `llama3` does not exist.\",\"type\":\"NotFoundError\",\"param\":null,\"code\":404}}")
				event("[DONE]")
				return
			case "stream-400":
				event(`{"error":{"object":"error","message":"This model's maximum context length is 4096 tokens.","type":"BadRequestError","param":null,"code":400}}`)
				event("[DONE]")
				return
			}
		}
		if prompt == "vanish" && i == 1 {
			// The server goes away mid-stream: the connection drops without [DONE].
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
	}
	reason := "stop"
	if maxTokens < 5 {
		reason = "length"
	}
	event(fmt.Sprintf(`{"choices":[{"finish_reason":%q,"index":0,"delta":{}}],"object":"chat.completion.chunk"}`, reason))
	if opts, _ := req["stream_options"].(map[string]any); opts["include_usage"] == true && prompt != "no-usage" {
		event(fmt.Sprintf(`{"choices":[],"usage":{"completion_tokens":%d,"prompt_tokens":11,"total_tokens":%d},"object":"chat.completion.chunk"}`, maxTokens, maxTokens+11))
	}
	event("[DONE]")
}

// thinkFirst waits f.think before the answer's first byte; false when the client gave up.
func (f *fakeOpenAI) thinkFirst(r *http.Request) bool {
	if d := time.Duration(f.think.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return false
		}
	}
	return true
}

// parseFailure is llama-server's chat parser failing on odd output: it quotes the whole generated
// text, here 10 KiB of it with two-byte runes, so that a cut can land inside one.
func parseFailure() string {
	return "Failed to parse input at pos 22: " + strings.Repeat("Grüße, ", 1134)
}

// testPNG encodes a small real PNG.
func testPNG(w, h int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7)
	}
	img.Set(0, 0, color.NRGBA{1, 2, 3, 255})
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}

func (f *fakeOpenAI) images(w http.ResponseWriter, r *http.Request) {
	if !f.authorized(w, r) {
		return
	}
	req, ok := f.decode(w, r)
	if !ok {
		return
	}
	var width, height int
	if _, err := fmt.Sscanf(fmt.Sprint(req["size"]), "%dx%d", &width, &height); err != nil || req["response_format"] != "b64_json" {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"message":"bad size or response_format"}}`)
		return
	}
	if req["prompt"] == "no-b64" {
		io.WriteString(w, `{"created":1,"data":[{"url":"http://example.invalid/x.png"}]}`)
		return
	}
	// Escape "/" as "\/", as PHP-style encoders do, and put a decoy key in another string first.
	b64 := strings.ReplaceAll(base64.StdEncoding.EncodeToString(testPNG(width, height)), "/", `\/`)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"created":1,"note":"field \"b64_json\" below","data":[{"revised_prompt":"x","b64_json" : "%s"}]}`, b64)
}

// testWAV returns a small valid WAV of seconds of silence at 16 kHz.
func testWAV(seconds float64) []byte {
	n := int(seconds * 16000)
	var b bytes.Buffer
	writeWAVHeader(&b, 16000, uint32(n*2))
	b.Write(make([]byte, n*2))
	return b.Bytes()
}

func (f *fakeOpenAI) speech(w http.ResponseWriter, r *http.Request) {
	if !f.authorized(w, r) {
		return
	}
	req, ok := f.decode(w, r)
	if !ok {
		return
	}
	if req["input"] == "" || req["voice"] == "" {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"message":"input and voice are required"}}`)
		return
	}
	w.Header().Set("Content-Type", "audio/wav")
	w.Write(testWAV(1))
}

func (f *fakeOpenAI) transcribe(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseMultipartForm(1 << 20); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "Invalid request") // whisper-server answers errors as plain text
		return
	}
	file, _, err := r.FormFile("file")
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "no 'file' field in the request")
		return
	}
	defer file.Close()
	if r.FormValue("language") == "huge" {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "Invalid request: "+strings.Repeat("language not supported; ", 426))
		return
	}
	if !f.thinkFirst(r) {
		return
	}
	data, _ := io.ReadAll(file)
	form := map[string]string{"size": fmt.Sprint(len(data))}
	for k, v := range r.MultipartForm.Value {
		form[k] = v[0]
	}
	f.mu.Lock()
	f.forms = append(f.forms, form)
	f.mu.Unlock()
	if form["response_format"] != "verbose_json" {
		io.WriteString(w, `{"text":" flat"}`)
		return
	}
	// whisper-server names the language it transcribed in whisper's words (the one asked for, or
	// the one it detected: English here), and no model.
	lang := map[string]string{"": "english", "en": "english", "de": "german", "ja": "japanese", "pt": "portuguese"}[form["language"]]
	extra := ""
	if l, _ := f.sttLanguage.Load().(string); l != "" {
		lang = l
	}
	if m, _ := f.sttModel.Load().(string); m != "" {
		extra = fmt.Sprintf(`"model":%q,`, m)
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"task":"transcribe","language":%q,%s"duration":2.0,"text":" Hello world.","segments":[{"id":0,"start":0.0,"end":1.1,"text":" Hello"},{"id":1,"start":1.1,"end":2.0,"text":" world."}],"detected_language":%[1]q,"detected_language_probability":0.97}`,
		lang, extra)
}
