// firstrun_identify_test.go: first-run detection names each local server by what it answers, on
// whichever of the usual ports it listens, against fakes that answer as Ollama, llama-server,
// vLLM, LM Studio and LocalAI do (statuses, bodies and the paths each really serves, from their
// sources and docs). It must not know how the first-run page shows what was found.
package app

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"studioworker/protocol"
)

// fakeReply is one canned answer of a fake server: a status (0 = 200) and a body.
type fakeReply struct {
	status int
	body   string
}

// fakeServer answers the paths in replies, and 404 with a JSON error otherwise, as the servers
// below do for a path they do not serve.
func fakeServer(t *testing.T, replies map[string]fakeReply) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep, ok := replies[r.URL.Path]
		if !ok || r.Method != http.MethodGet {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"detail":"Not Found"}`))
			return
		}
		if rep.status != 0 {
			w.WriteHeader(rep.status)
		}
		_, _ = w.Write([]byte(rep.body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// fakeVLLM answers as vLLM's OpenAI server: models owned by "vllm" with max_model_len, /health
// and /version open, and with an API key /v1/... refused with 401.
func fakeVLLM(t *testing.T, wantsKey bool) string {
	models := fakeReply{body: `{"object":"list","data":[{"id":"Qwen/Qwen2.5-7B-Instruct","object":"model","created":1733000000,"owned_by":"vllm","root":"Qwen/Qwen2.5-7B-Instruct","parent":null,"max_model_len":32768,"permission":[]}]}`}
	if wantsKey {
		models = fakeReply{status: http.StatusUnauthorized, body: `{"error":"Unauthorized"}`}
	}
	return fakeServer(t, map[string]fakeReply{"/v1/models": models, "/health": {}, "/version": {body: `{"version":"0.6.3"}`}})
}

// fakeLMStudio answers as LM Studio's server: /v1/models owned by "organization_owner", and its
// own /api/v0/models saying each model's type.
func fakeLMStudio(t *testing.T) string {
	return fakeServer(t, map[string]fakeReply{
		"/v1/models":     {body: `{"data":[{"id":"qwen2.5-7b-instruct","object":"model","owned_by":"organization_owner"},{"id":"text-embedding-nomic-embed-text-v1.5","object":"model","owned_by":"organization_owner"}],"object":"list"}`},
		"/api/v0/models": {body: `{"object":"list","data":[{"id":"qwen2.5-7b-instruct","object":"model","type":"llm","publisher":"lmstudio-community","arch":"qwen2","compatibility_type":"gguf","quantization":"Q4_K_M","state":"loaded","max_context_length":32768},{"id":"text-embedding-nomic-embed-text-v1.5","object":"model","type":"embeddings","publisher":"nomic-ai","arch":"nomic-bert","compatibility_type":"gguf","quantization":"Q4_K_M","state":"not-loaded","max_context_length":2048}]}`},
	})
}

// fakeLocalAIServer answers as LocalAI: /readyz (503 {"status":"starting"} while it loads, and
// then every /v1 path answers 503 too), /v1/models with every kind mixed, and
// /v1/models/capabilities saying which is which.
func fakeLocalAIServer(t *testing.T, loading bool) string {
	if loading {
		starting := fakeReply{status: http.StatusServiceUnavailable, body: `{"status":"starting"}`}
		return fakeServer(t, map[string]fakeReply{"/readyz": starting, "/v1/models": starting})
	}
	return fakeServer(t, map[string]fakeReply{
		"/readyz":                 {},
		"/v1/models":              {body: `{"object":"list","data":[{"id":"qwen3-1.7b","object":"model"},{"id":"dreamshaper-8","object":"model"},{"id":"piper-amy","object":"model"},{"id":"whisper-base.en","object":"model"}]}`},
		"/v1/models/capabilities": {body: `{"object":"list","data":[{"id":"qwen3-1.7b","object":"model","capabilities":["chat","tools"]},{"id":"dreamshaper-8","object":"model","capabilities":["image"]},{"id":"piper-amy","object":"model","capabilities":["tts"]},{"id":"whisper-base.en","object":"model","capabilities":["transcript"]}]}`},
	})
}

// fakeOllamaServer answers as Ollama: GET / is "Ollama is running", /api/tags its pulled models.
func fakeOllamaServer(t *testing.T) string {
	return fakeServer(t, map[string]fakeReply{"/": {body: "Ollama is running"}, "/api/tags": {body: ollamaTags},
		"/v1/models": {body: `{"object":"list","data":[{"id":"llama3.2:latest","object":"model","created":1733000000,"owned_by":"library"}]}`}})
}

func TestDetectorIdentifiesServersByWhatTheyAnswer(t *testing.T) {
	type row struct {
		Name   string
		Kind   protocol.Kind
		Models []string
		Ready  bool
	}
	unknown := fakeServer(t, map[string]fakeReply{"/v1/models": {body: `{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","owned_by":"openai"}]}`}})
	tests := []struct {
		name string
		d    Detector // the addresses left empty are closed
		want []row
	}{
		{"vLLM on 8000", Detector{VLLMURL: fakeVLLM(t, false)},
			[]row{{"vLLM", protocol.KindLLM, []string{"Qwen/Qwen2.5-7B-Instruct"}, true}}},
		{"vLLM that wants an API key", Detector{VLLMURL: fakeVLLM(t, true)},
			[]row{{"vLLM", protocol.KindLLM, []string{}, false}}},
		{"LM Studio on 1234, chat models only", Detector{LMStudioURL: fakeLMStudio(t)},
			[]row{{"LM Studio", protocol.KindLLM, []string{"qwen2.5-7b-instruct"}, true}}},
		{"LocalAI on 8080, one row per kind", Detector{LlamaURL: fakeLocalAIServer(t, false)},
			[]row{{"LocalAI", protocol.KindLLM, []string{"qwen3-1.7b"}, true}, {"LocalAI", protocol.KindImage, []string{"dreamshaper-8"}, true},
				{"LocalAI", protocol.KindTTS, []string{"piper-amy"}, true}, {"LocalAI", protocol.KindSTT, []string{"whisper-base.en"}, true}}},
		{"LocalAI still loading", Detector{LlamaURL: fakeLocalAIServer(t, true)},
			[]row{{"LocalAI", protocol.KindLLM, []string{}, true}}},
		{"an unknown server on 8080 is not LocalAI", Detector{LlamaURL: unknown},
			[]row{{"OpenAI-compatible server", protocol.KindLLM, []string{"gpt-4o-mini"}, true}}},
		{"Ollama on another port", Detector{VLLMURL: fakeOllamaServer(t)},
			[]row{{"Ollama", protocol.KindLLM, []string{"llama3.2:latest", "qwen2.5:7b"}, true}}},
		{"what answers on 11434 without Ollama's words is not Ollama", Detector{OllamaURL: unknown},
			[]row{{"OpenAI-compatible server", protocol.KindLLM, []string{"gpt-4o-mini"}, true}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fakePrograms(t)
			d := tc.d
			for _, u := range []*string{&d.OllamaURL, &d.LlamaURL, &d.VLLMURL, &d.LMStudioURL, &d.ComfyUIURL} {
				if *u == "" {
					*u = closedURL(t)
				}
			}
			found, err := d.Detect(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			got := []row{}
			for _, f := range found {
				models := f.Models
				if models == nil {
					models = []string{}
				}
				got = append(got, row{f.Name, f.Kind, models, f.Ready})
				if f.Backend.URL != f.Where+"/v1" {
					t.Errorf("%s suggests %s, want %s/v1", f.Name, f.Backend.URL, f.Where)
				}
				if !f.Ready && f.Note == "" {
					t.Errorf("%s is not ready and does not say why", f.Name)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("found %+v\nwant  %+v", got, tc.want)
			}
		})
	}
}
