// comfyui_choices_test.go: a comfyui job for a checkpoint ComfyUI lacks fails before anything is
// queued, naming what it has, and the list is asked for once per run of jobs, per backend,
// against fakeComfyUI. It must not know how the router picks a backend.
package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"studioworker/internal/handclock"
	"studioworker/protocol"
)

// comfyRouter is the example config on f, offering models, with its comfyui backend on clock.
func comfyRouter(t *testing.T, f *fakeComfyUI, clock *handclock.Clock, models ...string) *Router {
	t.Helper()
	cfg := exampleConfig(t, f.URL)
	bc := cfg[protocol.KindImage]
	bc.Models = models
	cfg[protocol.KindImage] = bc
	r := mustRouter(t, cfg, Options{})
	r.backends[protocol.KindImage].(*comfyUI).now = clock.Now
	r.Refresh(context.Background())
	return r
}

func TestComfyUIChecksTheCheckpointBeforeQueueing(t *testing.T) {
	many := make([]string, 25)
	for i := range many {
		many[i] = fmt.Sprintf("ckpt-%02d.safetensors", i)
	}
	tests := []struct {
		name          string
		server        []string // what ComfyUI has; nil: the fake's two
		model         string
		objectInfo500 bool
		ok            bool
		says, notSays []string
	}{
		{name: "one it has", model: "sdxl_base.safetensors", ok: true},
		{name: "in a subfolder", server: []string{"SDXL/juggernaut.safetensors"}, model: "SDXL/juggernaut.safetensors", ok: true},
		{name: "one it lacks", model: "ghost.safetensors",
			says: []string{`"ghost.safetensors"`, "CheckpointLoaderSimple.ckpt_name", "v1-5-pruned-emaonly.safetensors, sdxl_base.safetensors"}, notSays: []string{"more"}},
		{name: "one it lacks, among 25", server: many, model: "ghost.safetensors",
			says: []string{"ckpt-00.safetensors", "ckpt-09.safetensors", "and 15 more"}, notSays: []string{"ckpt-10.safetensors"}},
		{name: "the same name in another case", model: "SDXL_base.safetensors", says: []string{`"SDXL_base.safetensors"`}},
		// ComfyUI's own validation decides when the list cannot be read.
		{name: "object_info fails, one it has", model: "sdxl_base.safetensors", objectInfo500: true, ok: true},
		{name: "object_info fails, one it lacks", model: "ghost.safetensors", objectInfo500: true, says: []string{"comfyui refused the model"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeComfyUI(t, false)
			if tc.server != nil {
				f.setCheckpoints(tc.server...)
			}
			f.objectInfoFails.Store(tc.objectInfo500)
			offered := f.checkpoints()
			if !slices.Contains(offered, tc.model) {
				offered = append(offered, tc.model)
			}
			r := comfyRouter(t, f, handclock.New(time.Unix(1_800_000_000, 0)), offered...)
			_, err := r.Run(context.Background(), newTestJob(t, protocol.KindImage, tc.model, `{"prompt":"a fox","width":32,"height":32}`), nil)
			if tc.ok {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				return
			}
			assertClass(t, err, ErrUnsupported, false, "model")
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			for _, s := range tc.notSays {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q says %q", err, s)
				}
			}
			if n := f.graphCount(); !tc.objectInfo500 && n != 0 {
				t.Errorf("%d prompts queued for a checkpoint ComfyUI lacks", n)
			}
		})
	}
}

func TestComfyUICheckpointListIsAskedOncePerRunOfJobsPerBackend(t *testing.T) {
	f := newFakeComfyUI(t, false)
	clock := handclock.New(time.Unix(1_800_000_000, 0))
	offered := []string{"v1-5-pruned-emaonly.safetensors", "sdxl_base.safetensors", "new.safetensors", "ghost.safetensors"}
	routers := []*Router{comfyRouter(t, f, clock, offered...), comfyRouter(t, f, clock, offered...)}
	steps := []struct {
		name    string
		router  int
		advance time.Duration
		server  []string // ComfyUI's checkpoints from this step on; nil: unchanged
		model   string
		ok      bool
		asks    int64 // /object_info requests so far
	}{
		{name: "first job asks", model: "sdxl_base.safetensors", ok: true, asks: 1},
		{name: "10 s later, the list stands", advance: 10 * time.Second, model: "v1-5-pruned-emaonly.safetensors", ok: true, asks: 1},
		{name: "another backend asks for itself", router: 1, model: "sdxl_base.safetensors", ok: true, asks: 2},
		{name: "30 s after the first ask, it is asked again", advance: 20 * time.Second, model: "sdxl_base.safetensors", ok: true, asks: 3},
		// Removed since the list was read: the list says yes, and ComfyUI's validation says no.
		{name: "a checkpoint removed meanwhile", advance: time.Second,
			server: []string{"v1-5-pruned-emaonly.safetensors"}, model: "sdxl_base.safetensors", asks: 3},
		{name: "a checkpoint copied in is found at once", advance: time.Second,
			server: []string{"v1-5-pruned-emaonly.safetensors", "new.safetensors"}, model: "new.safetensors", ok: true, asks: 4},
		{name: "a miss asks again before failing", advance: time.Second, model: "ghost.safetensors", asks: 5},
	}
	for _, st := range steps {
		clock.Add(st.advance)
		if st.server != nil {
			f.setCheckpoints(st.server...)
		}
		_, err := routers[st.router].Run(context.Background(), newTestJob(t, protocol.KindImage, st.model, `{"prompt":"a fox","width":32,"height":32}`), nil)
		switch {
		case st.ok && err != nil:
			t.Errorf("%s: Run: %v", st.name, err)
		case !st.ok:
			assertClass(t, err, ErrUnsupported, false, "model")
		}
		if got := f.objectInfo.Load(); got != st.asks {
			t.Errorf("%s: /object_info asked %d times, want %d", st.name, got, st.asks)
		}
	}
}
