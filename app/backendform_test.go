// Tests of BackendForm: every field of a backend config survives the trip through the form and
// back, in Go and in the control channel's JSON, so a field added to either side and not carried
// across fails here.

package app

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"studioworker/engine"
	"studioworker/protocol"
)

// fillAll sets every field of v, however deep, to a value that is not its zero, so that a field
// the conversion drops shows as a difference. A field added to engine.BackendConfig or to
// BackendForm later is filled too, without changing this test.
func fillAll(t *testing.T, v reflect.Value, name string) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		v.SetString("x-" + name)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(len(name) + 3))
	case reflect.Float64:
		v.SetFloat(float64(len(name)) + 0.5)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fillAll(t, p.Elem(), name)
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fillAll(t, s.Index(0), name)
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fillAll(t, k, name+"-key")
		fillAll(t, e, name)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Type().Field(i); f.IsExported() {
				fillAll(t, v.Field(i), name+"."+f.Name)
			}
		}
	default:
		t.Fatalf("fillAll: %s has a %s field; teach this test that kind", name, v.Kind())
	}
}

func TestBackendFormRoundTrip(t *testing.T) {
	var every engine.BackendConfig
	fillAll(t, reflect.ValueOf(&every).Elem(), "config")
	for i := range reflect.TypeOf(every).NumField() {
		if reflect.ValueOf(every).Field(i).IsZero() {
			t.Fatalf("fillAll left %s zero", reflect.TypeOf(every).Field(i).Name)
		}
	}
	no := false
	for _, tc := range []struct {
		name string
		bc   engine.BackendConfig
	}{
		{"every field set", every},
		{"empty", engine.BackendConfig{}},
		{"synthetic with models and a VRAM figure", engine.BackendConfig{Backend: engine.BackendSynthetic, Models: []string{"sdxl-turbo"}, VRAMGB: 6}},
		{"openai with a key, timeouts and limits", engine.BackendConfig{Backend: engine.BackendOpenAI, URL: "http://127.0.0.1:8080/v1",
			APIKey: "(set)", TimeoutS: 120, StallTimeoutS: 90, Voice: "nova", TranscriptionPath: "/inference", MaxPromptChars: 5000}},
		{"comfyui with its mapping", engine.BackendConfig{Backend: engine.BackendComfyUI, URL: "http://127.0.0.1:8188", Workflow: "wf.json",
			Mapping: map[string]engine.NodeInput{"prompt": {Node: "6", Input: "text"}}, MaxWidth: 1024, MaxHeight: 768, MaxFrames: 40}},
		{"exec with stdin, an extension and a kill grace", engine.BackendConfig{Backend: engine.BackendExec, Command: []string{"piper", "{output}"},
			Stdin: "{text}", Ext: "wav", NonZeroExitRetryable: &no, KillGraceS: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := backendFormOf(tc.bc)
			if got := f.config(); !reflect.DeepEqual(got, tc.bc) {
				t.Fatalf("config → form → config\n got %+v\nwant %+v", got, tc.bc)
			}
			// The control channel's JSON is the config file's, both ways.
			want, err := json.Marshal(tc.bc)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Fatalf("JSON of the form\n got %s\nwant %s", got, want)
			}
			var back BackendForm
			if err := json.Unmarshal(want, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, f) {
				t.Fatalf("JSON → form\n got %+v\nwant %+v", back, f)
			}
			// And inside the Settings and a RegisterRequest, keyed by kind.
			forms := backendFormsOf(engine.Config{protocol.KindLLM: tc.bc})
			if !reflect.DeepEqual(forms.config(), engine.Config{protocol.KindLLM: tc.bc}) {
				t.Fatalf("engines → forms → engines: %+v", forms.config())
			}
		})
	}
}

// TestBackendFormFieldsReachTheConfig fills every field the window edits and checks that each
// lands in the backend config under its own name and comes back.
func TestBackendFormFieldsReachTheConfig(t *testing.T) {
	var f BackendForm
	fillAll(t, reflect.ValueOf(&f).Elem(), "form")
	bc := f.config()
	ft, cv := reflect.TypeOf(f), reflect.ValueOf(bc)
	for i := range ft.NumField() {
		field := ft.Field(i)
		if !field.IsExported() {
			continue
		}
		c := cv.FieldByName(field.Name)
		if !c.IsValid() {
			t.Errorf("BackendForm.%s has no field of that name in engine.BackendConfig", field.Name)
			continue
		}
		if !reflect.DeepEqual(c.Interface(), reflect.ValueOf(f).Field(i).Interface()) {
			t.Errorf("BackendForm.%s = %v reaches the config as %v", field.Name, reflect.ValueOf(f).Field(i).Interface(), c.Interface())
		}
	}
	if back := backendFormOf(bc); !reflect.DeepEqual(back, f) {
		t.Fatalf("form → config → form\n got %+v\nwant %+v", back, f)
	}
}

func TestBackendFormRefusesUnknownKeys(t *testing.T) {
	var f BackendForm
	err := json.Unmarshal([]byte(`{"backend":"openai","urll":"http://127.0.0.1:8080/v1"}`), &f)
	if err == nil || !strings.Contains(err.Error(), "urll") {
		t.Fatalf("a misspelt key: %v", err)
	}
	var s Settings
	err = json.Unmarshal([]byte(`{"engines":{"tts":{"backend":"exec","comand":["espeak-ng"]}}}`), &s)
	if err == nil || !strings.Contains(err.Error(), "comand") {
		t.Fatalf("a misspelt key inside the settings: %v", err)
	}
}

func TestBackendFormKeepsTheKeyOutOfLogs(t *testing.T) {
	f := BackendForm{Backend: BackendOpenAI, URL: "http://127.0.0.1:8080/v1", APIKey: "sk-secret"}
	if s := fmt.Sprint(f.LogValue()); strings.Contains(s, "sk-secret") {
		t.Fatalf("the log value shows the key: %s", s)
	}
}
