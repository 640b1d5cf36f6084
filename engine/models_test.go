package engine

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"studioworker/protocol"
)

func TestMatchModels(t *testing.T) {
	tests := []struct {
		name                  string
		configured, served    []string
		wantHave, wantMissing []string
	}{
		{"all there", []string{"llama3"}, []string{"llama3", "qwen"}, []string{"llama3"}, nil},
		{"Ollama's implicit :latest", []string{"llama3.2"}, []string{"llama3.2:latest"}, []string{"llama3.2"}, nil},
		{"and the other way round", []string{"llama3.2:latest"}, []string{"llama3.2"}, []string{"llama3.2:latest"}, nil},
		{"another tag is another model", []string{"llama3.2:1b"}, []string{"llama3.2:latest"}, nil, []string{"llama3.2:1b"}},
		{"one of two missing", []string{"llama3", "llama3.1:8b"}, []string{"llama3"}, []string{"llama3"}, []string{"llama3.1:8b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			have, missing := matchModels(tc.configured, tc.served)
			if !reflect.DeepEqual(have, tc.wantHave) || !reflect.DeepEqual(missing, tc.wantMissing) {
				t.Errorf("have %q missing %q, want %q and %q", have, missing, tc.wantHave, tc.wantMissing)
			}
		})
	}
}

// TestConfiguredModelsAreCheckedAgainstTheServer: a model the server does not have is not
// advertised (a job for it would run on whatever is loaded), Settings' Test names it by the
// models field, and a server with none of them is down with a sentence that says so.
func TestConfiguredModelsAreCheckedAgainstTheServer(t *testing.T) {
	f := newFakeOpenAI(t, "") // serves llama3
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		models     []string
		wantServed []string
		wantDown   string
		wantProbe  string // "" = no error
	}{
		{"the configured model is there", []string{"llama3"}, []string{"llama3"}, "", ""},
		{"one of two is missing", []string{"llama3", "llama3.1:8b"}, []string{"llama3"}, "", "the backend does not have llama3.1:8b (it serves llama3)"},
		{"none is there", []string{"llama3.1:8b"}, nil, "the server has none of the configured models (llama3.1:8b); it serves llama3", "the server has none of the configured models"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bc := BackendConfig{Backend: BackendOpenAI, URL: f.URL + "/v1", Models: tc.models}
			r := mustRouter(t, Config{protocol.KindLLM: bc}, Options{})
			caps := r.Refresh(ctx)
			if got := caps.Models[protocol.KindLLM]; !reflect.DeepEqual(got, tc.wantServed) {
				t.Errorf("advertised %q, want %q", got, tc.wantServed)
			}
			if down := caps.Down[protocol.KindLLM]; !strings.Contains(down, tc.wantDown) || (tc.wantDown == "") != (down == "") {
				t.Errorf("down = %q, want %q", down, tc.wantDown)
			}
			_, err := ProbeBackend(ctx, protocol.KindLLM, bc, nil)
			switch {
			case tc.wantProbe == "" && err != nil:
				t.Errorf("Test: %v", err)
			case tc.wantProbe != "" && (err == nil || !strings.Contains(err.Error(), tc.wantProbe)):
				t.Errorf("Test: %v, want %q", err, tc.wantProbe)
			}
			var e *Error
			if tc.wantDown == "" && tc.wantProbe != "" && (!errors.As(err, &e) || e.Field != "models") {
				t.Errorf("Test's error names field %q, want models", e.Field)
			}
		})
	}
}

func TestISOLanguage(t *testing.T) {
	for in, want := range map[string]string{"english": "en", "English": "en", "en": "en", " german ": "de", "jw": "jv", "haitian creole": "ht", "xx": "xx"} {
		if got := isoLanguage(in); got != want {
			t.Errorf("isoLanguage(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTheModelThatAnsweredIsSaid: a backend that answers with another model than the job asked
// for (it does not check, or it substituted one) is named in the result (spec §6); the same
// model, Ollama's :latest included, is not repeated.
func TestTheModelThatAnsweredIsSaid(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/models" {
			io.WriteString(w, `{"data":[{"id":"llama3"},{"id":"qwen2.5:latest"}]}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"model\":\"qwen2.5:latest\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n")
		io.WriteString(w, "data: {\"model\":\"qwen2.5:latest\",\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	r := mustRouter(t, Config{protocol.KindLLM: {Backend: BackendOpenAI, URL: srv.URL + "/v1"}}, Options{})
	r.Refresh(context.Background())
	for _, tc := range []struct{ asked, want string }{{"llama3", "qwen2.5:latest"}, {"qwen2.5", ""}} {
		res, err := r.Run(context.Background(), newTestJob(t, protocol.KindLLM, tc.asked, `{"prompt":"hi"}`), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.asked, err)
		}
		var out protocol.LLMResult
		if err := json.Unmarshal(res.JSON, &out); err != nil || out.Model != tc.want || out.Text != "hi" {
			t.Errorf("asked %s: result %+v (%v), want model %q", tc.asked, out, err, tc.want)
		}
	}
}
