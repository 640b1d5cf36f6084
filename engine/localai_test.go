// localai_test.go: openai-backend jobs against LocalAI as it really answers (fakeLocalAI): each
// kind offers only LocalAI's models of that kind, a speech job keeps the model's own voice unless
// a voice is named, and an image job's steps reach LocalAI. It must not know how the worker's
// session reports a job.
package engine

import (
	"context"
	"slices"
	"testing"

	"studioworker/protocol"
)

func TestLocalAIModelsPerKindVoiceAndSteps(t *testing.T) {
	f := newFakeLocalAI(t)
	url := f.URL + "/v1"
	cfg := Config{
		protocol.KindLLM:   {Backend: BackendOpenAI, URL: url},
		protocol.KindImage: {Backend: BackendOpenAI, URL: url},
		protocol.KindTTS:   {Backend: BackendOpenAI, URL: url},
		protocol.KindSTT:   {Backend: BackendOpenAI, URL: url},
	}
	r := mustRouter(t, cfg, Options{})
	caps := r.Refresh(context.Background())
	for kind, want := range map[protocol.Kind][]string{
		protocol.KindLLM: {"qwen3-1.7b"}, protocol.KindImage: {"dreamshaper-8"},
		protocol.KindTTS: {"piper-amy"}, protocol.KindSTT: {"whisper-base.en"},
	} {
		if got := caps.Models[kind]; !slices.Equal(got, want) {
			t.Errorf("%s offers %v, want %v (down: %q)", kind, got, want, caps.Down[kind])
		}
	}

	for _, tc := range []struct {
		name, input string
		wantVoice   string
	}{
		{"no voice named: the model's own", `{"text":"hello"}`, "en-us-amy"},
		{"the job names the voice", `{"text":"hello","voice":"en-us-amy"}`, "en-us-amy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := r.Run(context.Background(), newTestJob(t, protocol.KindTTS, "piper-amy", tc.input), nil); err != nil {
				t.Fatalf("tts: %v", err)
			}
			if speeches, _ := f.record(); speeches[len(speeches)-1] != tc.wantVoice {
				t.Errorf("spoken in %q, want %q", speeches[len(speeches)-1], tc.wantVoice)
			}
		})
	}

	if _, err := r.Run(context.Background(), newTestJob(t, protocol.KindImage, "dreamshaper-8", `{"prompt":"a fox","width":16,"height":16,"steps":4}`), nil); err != nil {
		t.Fatalf("image: %v", err)
	}
	if _, steps := f.record(); !slices.Equal(steps, []int{4}) {
		t.Errorf("LocalAI made the image with %v steps, want [4]", steps)
	}
}
