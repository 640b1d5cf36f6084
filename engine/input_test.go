package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"studioworker/protocol"
)

func TestBadInputIsRefusedNamingTheField(t *testing.T) {
	cfg := DefaultConfig()
	img := cfg[protocol.KindImage]
	img.MaxPromptChars, img.MaxWidth, img.MaxHeight = 20, 1024, 768
	img.Models = []string{"sdxl"}
	cfg[protocol.KindImage] = img
	delete(cfg, protocol.KindVideo)
	r := mustRouter(t, cfg, Options{})
	tests := []struct {
		name, model, input string
		kind               protocol.Kind
		class              error
		field              string
	}{
		{"missing prompt", "sdxl", `{"width":64,"height":64}`, protocol.KindImage, ErrInvalidInput, "prompt"},
		{"prompt over the limit", "sdxl", `{"prompt":"` + strings.Repeat("é", 21) + `","width":64,"height":64}`, protocol.KindImage, ErrInvalidInput, "prompt"},
		{"missing width", "sdxl", `{"prompt":"x","height":64}`, protocol.KindImage, ErrInvalidInput, "width"},
		{"width too big", "sdxl", `{"prompt":"x","width":1025,"height":64}`, protocol.KindImage, ErrInvalidInput, "width"},
		{"negative height", "sdxl", `{"prompt":"x","width":64,"height":-3}`, protocol.KindImage, ErrInvalidInput, "height"},
		{"width of the wrong type", "sdxl", `{"prompt":"x","width":"big","height":64}`, protocol.KindImage, ErrInvalidInput, "width"},
		{"steps zero", "sdxl", `{"prompt":"x","width":8,"height":8,"steps":0}`, protocol.KindImage, ErrInvalidInput, "steps"},
		{"input not an object", "sdxl", `[1,2]`, protocol.KindImage, ErrInvalidInput, ""},
		{"model not configured", "sd15", `{"prompt":"x","width":8,"height":8}`, protocol.KindImage, ErrUnsupported, "model"},
		{"kind not configured", "synthetic", `{"prompt":"x","width":8,"height":8,"frames":2,"fps":2}`, protocol.KindVideo, ErrUnsupported, "kind"},
		{"llm without prompt or messages", "synthetic", `{"max_tokens":5}`, protocol.KindLLM, ErrInvalidInput, "prompt"},
		{"llm message without role", "synthetic", `{"messages":[{"content":"hi"}]}`, protocol.KindLLM, ErrInvalidInput, "messages[0].role"},
		{"llm max_tokens zero", "synthetic", `{"prompt":"hi","max_tokens":0}`, protocol.KindLLM, ErrInvalidInput, "max_tokens"},
		{"tts without text", "synthetic", `{"voice":"x"}`, protocol.KindTTS, ErrInvalidInput, "text"},
		{"tts speed zero", "synthetic", `{"text":"hi","speed":0}`, protocol.KindTTS, ErrInvalidInput, "speed"},
		{"duration out of range", "synthetic", `{"prompt":"hi","duration_ms":-1}`, protocol.KindLLM, ErrInvalidInput, "duration_ms"},
		{"pad_bytes on llm", "synthetic", `{"prompt":"hi","pad_bytes":10}`, protocol.KindLLM, ErrInvalidInput, "pad_bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Run(context.Background(), newTestJob(t, tc.kind, tc.model, tc.input), nil)
			assertClass(t, err, tc.class, false, tc.field)
			if tc.field != "" && tc.field != "kind" && tc.field != "model" && !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
		})
	}
}

func TestErrorClassification(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		retry bool
	}{
		{"nil", nil, false},
		{"unclassified", errors.New("boom"), true},
		{"invalid input", invalidInput("width", "bad"), false},
		{"unsupported", unsupported("model", "no"), false},
		{"backend down", backendDown("x", errors.New("refused")), true},
		{"wrapped", &wrapped{invalidInput("x", "y")}, false},
	}
	for _, tc := range tests {
		if got := Retryable(tc.err); got != tc.retry {
			t.Errorf("%s: Retryable = %v, want %v", tc.name, got, tc.retry)
		}
	}
	// session/ reads the flag through a method on the chain, not through this package.
	var r interface{ Retryable() bool }
	if !errors.As(error(backendFailed(false, "x")), &r) || r.Retryable() {
		t.Error("an *Error does not expose Retryable() through errors.As")
	}
}

type wrapped struct{ err error }

func (w *wrapped) Error() string { return "wrapped: " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }
