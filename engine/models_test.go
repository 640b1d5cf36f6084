package engine

import (
	"context"
	"errors"
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
