package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"studioworker/protocol"
)

const exampleWorkflow = "../examples/comfyui/text-to-image.json"

// exampleConfig is the shipped example (examples/comfyui/engines.json) pointed at url.
func exampleConfig(t *testing.T, url string) Config {
	t.Helper()
	raw, err := os.ReadFile("../examples/comfyui/engines.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields() // as app/ decodes the worker's config
	var cfg Config
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("the example config does not decode: %v", err)
	}
	bc := cfg[protocol.KindImage]
	bc.URL, bc.Workflow = url, exampleWorkflow
	cfg[protocol.KindImage] = bc
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the example config does not validate: %v", err)
	}
	return cfg
}

func TestComfyUIExampleWorkflowFillsTheMappingAndReturnsTheSavedImage(t *testing.T) {
	f := newFakeComfyUI(t, false)
	r := mustRouter(t, exampleConfig(t, f.URL), Options{})
	caps := r.Refresh(context.Background())
	if got := caps.Models[protocol.KindImage]; !slices.Equal(got, []string{"v1-5-pruned-emaonly.safetensors", "sdxl_base.safetensors"}) {
		t.Fatalf("models %v, want the checkpoints from /object_info (down: %v)", got, caps.Down)
	}
	var p progressLog
	job := newTestJob(t, protocol.KindImage, "sdxl_base.safetensors", `{"prompt":"a red fox","negative_prompt":"blurry","width":64,"height":48,"steps":3,"seed":42}`)
	res, err := r.Run(context.Background(), job, p.fn)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	data, err := os.ReadFile(res.File)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, testPNG(64, 48)) || res.Ext != "png" || filepath.Dir(res.File) != job.SpoolDir || res.Prompt != "a red fox" {
		t.Fatalf("result %+v is not the saved output image", res)
	}
	checkSum(t, res)
	g := f.lastGraph()
	for _, c := range []struct {
		node, input string
		want        any
	}{
		{"6", "text", "a red fox"}, {"7", "text", "blurry"}, {"3", "seed", 42.0}, {"3", "steps", 3.0},
		{"5", "width", 64.0}, {"5", "height", 48.0}, {"4", "ckpt_name", "sdxl_base.safetensors"},
		{"3", "cfg", 7.0}, // untouched inputs keep the workflow's values
	} {
		if got := input(g, c.node, c.input); got != c.want {
			t.Errorf("node %s %s = %v, want %v", c.node, c.input, got, c.want)
		}
	}
	fracs, msgs := p.snapshot()
	if !slices.Contains(msgs, "step 3/3") || !slices.Contains(msgs, "running node 3 (KSampler)") || fracs[len(fracs)-1] != 1 {
		t.Errorf("progress %v %v", fracs, msgs)
	}
}

func TestComfyUIRefusalsAndFailuresAreClassified(t *testing.T) {
	f := newFakeComfyUI(t, false)
	cfg := exampleConfig(t, f.URL)
	r := mustRouter(t, cfg, Options{})
	r.Refresh(context.Background())

	_, err := r.Run(context.Background(), newTestJob(t, protocol.KindImage, "sdxl_base.safetensors", `{"prompt":"x","width":8,"height":8}`), nil)
	assertClass(t, err, ErrInvalidInput, false, "width")
	if !strings.Contains(err.Error(), "smaller than min of 16") {
		t.Errorf("error %q does not quote ComfyUI", err)
	}

	_, err = r.Run(context.Background(), newTestJob(t, protocol.KindImage, "sdxl_base.safetensors", `{"prompt":"fail-node","width":64,"height":64}`), nil)
	assertClass(t, err, ErrBackendFailed, true, "")
	if !strings.Contains(err.Error(), "CUDA out of memory") {
		t.Errorf("error %q does not quote the node's exception", err)
	}

	// A model configured here but missing in ComfyUI: the worker's fault for this model.
	bc := cfg[protocol.KindImage]
	bc.Models = []string{"ghost.safetensors"}
	r2 := mustRouter(t, Config{protocol.KindImage: bc}, Options{})
	_, err = r2.Run(context.Background(), newTestJob(t, protocol.KindImage, "ghost.safetensors", `{"prompt":"x","width":64,"height":64}`), nil)
	assertClass(t, err, ErrUnsupported, false, "model")

	// A broken input the job does not fill is this worker's workflow at fault: retryable.
	wf, _ := os.ReadFile(exampleWorkflow)
	broken := filepath.Join(t.TempDir(), "broken.json")
	os.WriteFile(broken, bytes.Replace(wf, []byte(`"euler"`), []byte(`"broken"`), 1), 0o600)
	bc = cfg[protocol.KindImage]
	bc.Workflow = broken
	r3 := mustRouter(t, Config{protocol.KindImage: bc}, Options{})
	r3.Refresh(context.Background())
	_, err = r3.Run(context.Background(), newTestJob(t, protocol.KindImage, "sdxl_base.safetensors", `{"prompt":"x","width":64,"height":64}`), nil)
	assertClass(t, err, ErrBackendFailed, true, "")
}

func TestComfyUICancelInterruptsThePrompt(t *testing.T) {
	f := newFakeComfyUI(t, false)
	r := mustRouter(t, exampleConfig(t, f.URL), Options{})
	r.Refresh(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var p progressLog
	job := newTestJob(t, protocol.KindImage, "sdxl_base.safetensors", `{"prompt":"slow","width":64,"height":64}`)
	done := runAsync(func() error { _, err := r.Run(ctx, job, p.fn); return err })
	waitFor(t, "the prompt to run", 10*time.Second, func() bool {
		_, msgs := p.snapshot()
		return slices.Contains(msgs, "running node 3 (KSampler)")
	})
	cancel()
	assertClass(t, awaitErr(t, done, 10*time.Second), ErrCancelled, true, "")
	select {
	case id := <-f.interrupted:
		if id == "" {
			t.Error("/interrupt without the prompt id")
		}
		f.interrupted <- id
	case <-time.After(10 * time.Second):
		t.Fatal("ComfyUI was not asked to interrupt")
	}
	f.mu.Lock()
	deleted := slices.Clone(f.deleted)
	f.mu.Unlock()
	if len(deleted) != 1 {
		t.Errorf("queue deletes %v, want the prompt", deleted)
	}
	if entries, _ := os.ReadDir(job.SpoolDir); len(entries) != 0 {
		t.Errorf("a cancelled job left files in the spool")
	}
}

func TestComfyUIWithoutItsSocketFallsBackToHistory(t *testing.T) {
	for _, tc := range []struct {
		name     string
		refuseWS bool
		prompt   string
	}{
		{"socket drops mid-run", false, "drop-ws"},
		{"no socket at all", true, "a quiet lake"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeComfyUI(t, tc.refuseWS)
			r := mustRouter(t, exampleConfig(t, f.URL), Options{})
			r.Refresh(context.Background())
			res, err := r.Run(context.Background(), newTestJob(t, protocol.KindImage, "sdxl_base.safetensors", `{"prompt":`+quote(tc.prompt)+`,"width":32,"height":32}`), nil)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if data, _ := os.ReadFile(res.File); !bytes.Equal(data, testPNG(32, 32)) {
				t.Error("not the output image")
			}
		})
	}
}

func TestComfyUIDownIsRetryable(t *testing.T) {
	f := newFakeComfyUI(t, false)
	cfg := exampleConfig(t, f.URL)
	f.Close()
	bc := cfg[protocol.KindImage]
	bc.Models = []string{"sdxl_base.safetensors"}
	cfg[protocol.KindImage] = bc
	r := mustRouter(t, cfg, Options{})
	if caps := r.Refresh(context.Background()); caps.Down[protocol.KindImage] == "" {
		t.Errorf("a closed ComfyUI is not down: %+v", caps)
	}
	_, err := r.Run(context.Background(), newTestJob(t, protocol.KindImage, "sdxl_base.safetensors", `{"prompt":"x","width":64,"height":64}`), nil)
	assertClass(t, err, ErrBackendDown, true, "")
}
