// Tests of stall_timeout_s against real servers in the test process: an OpenAI-compatible
// stream that goes silent on its open connection (as llama-server does after SIGTERM) and a
// ComfyUI prompt whose socket goes quiet end at the stall timeout with ErrStalled; a backend
// that takes long before its first byte, or a prompt waiting in ComfyUI's queue, does not.
package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"studioworker/protocol"
)

// stallRouter is an llm and stt router on f with a short stall timeout and a long timeout_s, so
// that only the stall can end a job early.
func stallRouter(t *testing.T, f *fakeOpenAI, stallS float64) *Router {
	t.Helper()
	cfg := Config{
		protocol.KindLLM: {Backend: BackendOpenAI, URL: f.URL + "/v1", TimeoutS: 120, StallTimeoutS: stallS},
		protocol.KindSTT: {Backend: BackendOpenAI, URL: f.URL, TranscriptionPath: "/inference", Models: []string{"whisper-base"}, TimeoutS: 120, StallTimeoutS: stallS},
	}
	r := mustRouter(t, cfg, Options{ProbeTimeout: 2 * time.Second})
	r.Refresh(context.Background())
	return r
}

func TestOpenAIStreamThatGoesSilentEndsAtTheStallTimeout(t *testing.T) {
	for _, tc := range []struct {
		prompt   string
		downThen bool // the next probe finds the server gone
	}{
		{"stall", false},
		{"sigterm", true}, // llama-server after SIGTERM: listener closed, the stream's connection kept
	} {
		t.Run(tc.prompt, func(t *testing.T) {
			f := newFakeOpenAI(t, "")
			r := stallRouter(t, f, 0.2)
			ctx := background(t) // cancelled before the server closes, should the stall not come
			var p progressLog
			done := runAsync(func() error {
				_, err := r.Run(ctx, newTestJob(t, protocol.KindLLM, "llama3", `{"prompt":`+quote(tc.prompt)+`}`), p.fn)
				return err
			})
			err := awaitErr(t, done, 30*time.Second)
			assertClass(t, err, ErrStalled, true, "")
			want := "openai /chat/completions sent nothing for 0.2 s (stall_timeout_s): the backend stopped answering"
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
			if errors.Is(err, ErrBackendDown) || errors.Is(err, ErrTimeout) {
				t.Errorf("a stall %q is classed as down or as timeout_s", err)
			}
			awaitSignal(t, f.cancelled, "the server to see the request end")
			if _, msgs := p.snapshot(); len(msgs) == 0 || msgs[len(msgs)-1] != "2 tokens" {
				t.Errorf("progress %v: want the two tokens sent before the silence", msgs)
			}
			caps := r.Refresh(context.Background())
			if down := caps.Down[protocol.KindLLM] != ""; down != tc.downThen {
				t.Errorf("after the stall, llm down = %v (%q), want %v", down, caps.Down[protocol.KindLLM], tc.downThen)
			}
		})
	}
}

func TestOpenAIWaitBeforeTheFirstByteIsNotAStall(t *testing.T) {
	t.Parallel()
	f := newFakeOpenAI(t, "")
	f.think.Store(int64(2500 * time.Millisecond)) // 2.5 stall timeouts
	r := stallRouter(t, f, 1)
	res, err := r.Run(context.Background(), newTestJob(t, protocol.KindLLM, "llama3", `{"prompt":"hi"}`), nil)
	if err != nil {
		t.Fatalf("llm: a backend that thinks before it streams is not stalled: %v", err)
	}
	if got := llmResult(t, res); got.Text != "Hello there, friend!" {
		t.Errorf("llm result %+v", got)
	}
	// whisper-server answers only when the whole file is transcribed.
	job := newTestJob(t, protocol.KindSTT, "whisper-base", `{"language":"en"}`)
	job.InputFile = writeWAV(t, 1)
	if _, err := r.Run(context.Background(), job, nil); err != nil {
		t.Fatalf("stt: a transcription that answers at the end is not stalled: %v", err)
	}
}

func TestComfyUIPromptThatGoesQuietEndsAtTheStallTimeoutAndIsInterrupted(t *testing.T) {
	f := newFakeComfyUI(t, false)
	cfg := exampleConfig(t, f.URL)
	bc := cfg[protocol.KindImage]
	bc.StallTimeoutS, bc.TimeoutS = 0.2, 120
	cfg[protocol.KindImage] = bc
	r := mustRouter(t, cfg, Options{})
	r.Refresh(context.Background())
	job := newTestJob(t, protocol.KindImage, "sdxl_base.safetensors", `{"prompt":"stall","width":64,"height":64}`)
	ctx := background(t)
	done := runAsync(func() error { _, err := r.Run(ctx, job, nil); return err })
	err := awaitErr(t, done, 30*time.Second)
	assertClass(t, err, ErrStalled, true, "")
	want := "comfyui reported no progress at node 3 (KSampler) for 0.2 s (stall_timeout_s)"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	select {
	case id := <-f.interrupted:
		if id == "" {
			t.Error("/interrupt without the prompt id")
		}
		f.interrupted <- id // for the fake's run to end
	case <-time.After(10 * time.Second):
		t.Fatal("ComfyUI was not asked to interrupt the stalled prompt")
	}
}

func TestComfyUIPromptWaitingInTheQueueIsNotAStall(t *testing.T) {
	t.Parallel()
	f := newFakeComfyUI(t, false)
	f.queued.Store(int64(2500 * time.Millisecond)) // 2.5 stall timeouts
	cfg := exampleConfig(t, f.URL)
	bc := cfg[protocol.KindImage]
	bc.StallTimeoutS = 1
	cfg[protocol.KindImage] = bc
	r := mustRouter(t, cfg, Options{})
	r.Refresh(context.Background())
	if _, err := r.Run(context.Background(), newTestJob(t, protocol.KindImage, "sdxl_base.safetensors", `{"prompt":"a fox","width":32,"height":32}`), nil); err != nil {
		t.Fatalf("a prompt behind others in ComfyUI's queue is not stalled: %v", err)
	}
}

// writeWAV writes testWAV(seconds) into a temporary file and returns its path.
func writeWAV(t *testing.T, seconds float64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "talk.wav")
	if err := os.WriteFile(path, testWAV(seconds), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
