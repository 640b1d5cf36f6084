// localai_fake_test.go: fakeLocalAI, an in-test HTTP server that answers as LocalAI's
// OpenAI-compatible API does, read from its source and the field notes (core/http/routes,
// endpoints/openai): one /v1/models for every kind, /v1/models/capabilities saying which model is
// chat, image, tts or transcript, /v1/audio/speech whose request voice overrides the model's own,
// and /v1/images/generations that reads the steps from "step". It must not know the worker's
// code: only LocalAI's wire format.
package engine

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeLocalAI serves a chat model, an image model, a speech model whose config names the voice
// "en-us-amy" and a whisper model. speeches are the voices each speech was spoken in; steps are
// the steps each image was made with (LocalAI's default, 15 here, when "step" is absent).
type fakeLocalAI struct {
	*httptest.Server
	mu       sync.Mutex
	speeches []string
	steps    []int
}

func newFakeLocalAI(t *testing.T) *fakeLocalAI {
	f := &fakeLocalAI{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"object":"list","data":[{"id":"qwen3-1.7b","object":"model"},{"id":"dreamshaper-8","object":"model"},{"id":"piper-amy","object":"model"},{"id":"whisper-base.en","object":"model"},{"id":"loose-file.gguf","object":"model"}]}`)
	})
	mux.HandleFunc("GET /v1/models/capabilities", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		// llama.cpp models carry "chat" beside their real use; a file without a config says null.
		io.WriteString(w, `{"object":"list","data":[
{"id":"qwen3-1.7b","object":"model","capabilities":["chat","tools"],"input_modalities":["text"],"output_modalities":["text"]},
{"id":"dreamshaper-8","object":"model","capabilities":["image"],"input_modalities":["text"],"output_modalities":["image"]},
{"id":"piper-amy","object":"model","capabilities":["tts"],"input_modalities":["text"],"output_modalities":["audio"]},
{"id":"whisper-base.en","object":"model","capabilities":["transcript"],"input_modalities":["audio"],"output_modalities":["text"]},
{"id":"loose-file.gguf","object":"model","capabilities":null,"input_modalities":null,"output_modalities":null}]}`)
	})
	mux.HandleFunc("POST /v1/audio/speech", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model string `json:"model"`
			Input string `json:"input"`
			Voice string `json:"voice"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		voice := req.Voice
		if voice == "" {
			voice = "en-us-amy" // the model config's voice, used only when the request names none
		}
		if voice != "en-us-amy" {
			// piper has no voice of that name.
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, `{"error":{"code":500,"message":"failed to load voice %s","type":""}}`, voice)
			return
		}
		f.mu.Lock()
		f.speeches = append(f.speeches, voice)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "audio/wav")
		w.Write(testWAV(1))
	})
	mux.HandleFunc("POST /v1/images/generations", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Step int    `json:"step"`
			Size string `json:"size"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		if req.Step == 0 {
			req.Step = 15
		}
		var width, height int
		fmt.Sscanf(strings.Replace(req.Size, "x", " ", 1), "%d %d", &width, &height)
		f.mu.Lock()
		f.steps = append(f.steps, req.Step)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"created":1,"id":"x","data":[{"embedding":null,"index":0,"b64_json":%q}],"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}`,
			base64.StdEncoding.EncodeToString(testPNG(width, height)))
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func (f *fakeLocalAI) record() (speeches []string, steps []int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.speeches...), append([]int(nil), f.steps...)
}
