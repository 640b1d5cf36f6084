// comfyui_order_test.go: a comfyui job against ComfyUI's real order of events (fakeComfyUI):
// a run is over at executing with node null, after the history entry is written, not at
// execution_success; ExecutionBlocked is not a failure; and a cancel takes back only our own
// prompt, even while POST /prompt is in flight. It must not know how the router picks a backend.
package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"studioworker/protocol"
)

func TestComfyUIRunEndsAtExecutingNullNotAtExecutionSuccess(t *testing.T) {
	for _, tc := range []struct{ name, prompt string }{
		{"a whole run", "a red fox"},
		{"every node cached", "cached"},
		{"an ExecutionBlocked output is not fatal", "blocked"},
		{"the history entry written after executing null", "history-late"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeComfyUI(t, false)
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

// postOthers queues a prompt on f as another client of a shared ComfyUI would, and returns its id
// once it runs.
func postOthers(t *testing.T, f *fakeComfyUI, text string) string {
	t.Helper()
	raw, err := os.ReadFile(exampleWorkflow)
	if err != nil {
		t.Fatal(err)
	}
	var graph map[string]any
	if err := json.Unmarshal(raw, &graph); err != nil {
		t.Fatal(err)
	}
	graph["6"].(map[string]any)["inputs"].(map[string]any)["text"] = text
	// Their browser tab has ComfyUI's socket open, as ours has.
	conn, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(f.URL, "http")+"/ws?clientId=someone-else", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	f.awaitClient("someone-else")
	body, _ := json.Marshal(map[string]any{"prompt": graph, "client_id": "someone-else"})
	resp, err := http.Post(f.URL+"/prompt", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := awaitID(t, f.posted, "their prompt queued")
	if got := awaitID(t, f.started, "their prompt running"); got != id {
		t.Fatalf("started %s, want %s", got, id)
	}
	return id
}

func awaitID(t *testing.T, ch <-chan string, what string) string {
	t.Helper()
	select {
	case id := <-ch:
		return id
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		return ""
	}
}

// TestComfyUICancelTakesBackOnlyOurPrompt: a cancel deletes the prompt from ComfyUI's queue and
// interrupts only when /queue shows it running, since up to 0.3.56 /interrupt stops whatever
// runs; a prompt whose POST /prompt was still in flight is taken back by the id the worker chose.
func TestComfyUICancelTakesBackOnlyOurPrompt(t *testing.T) {
	for _, tc := range []struct {
		name        string
		prompt      string
		othersFirst bool // someone else's prompt runs; ours waits behind it
		waitRunning bool // cancel once ours runs, else once it is posted
	}{
		{name: "queued behind someone else's run", prompt: "a fox", othersFirst: true},
		{name: "ours running", prompt: "slow", waitRunning: true},
		{name: "while POST /prompt is in flight", prompt: "lost-answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeComfyUI(t, false)
			r := mustRouter(t, exampleConfig(t, f.URL), Options{})
			r.Refresh(context.Background())
			others := ""
			if tc.othersFirst {
				others = postOthers(t, f, "slow")
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			job := newTestJob(t, protocol.KindImage, "sdxl_base.safetensors", `{"prompt":`+quote(tc.prompt)+`,"width":32,"height":32}`)
			queued := make(chan string, 1) // the worker has ComfyUI's answer
			progress := func(_ float64, msg string) {
				if msg == "queued in ComfyUI" {
					queued <- msg
				}
			}
			done := runAsync(func() error { _, err := r.Run(ctx, job, progress); return err })
			ours := awaitID(t, f.posted, "our prompt queued")
			switch {
			case tc.waitRunning:
				awaitID(t, f.started, "our prompt running")
			case tc.othersFirst:
				awaitID(t, queued, "ComfyUI's answer")
			}
			cancel()
			assertClass(t, awaitErr(t, done, 10*time.Second), ErrCancelled, true, "")

			running, pending, deleted, stopped := f.queueState()
			if !slices.Contains(deleted, ours) {
				t.Errorf("queue deletes %v, want ours (%s)", deleted, ours)
			}
			if slices.Contains(pending, ours) || (running == ours && !slices.Contains(stopped, ours)) {
				t.Errorf("our prompt is still in ComfyUI: running %q, pending %v, stopped %v", running, pending, stopped)
			}
			if others != "" {
				if slices.Contains(stopped, others) || running != others {
					t.Errorf("someone else's prompt was stopped: running %q, stopped %v", running, stopped)
				}
				select {
				case id := <-f.interrupted:
					t.Errorf("/interrupt (%q) sent while our prompt did not run", id)
				default:
				}
			}
			if tc.waitRunning {
				if !slices.Contains(stopped, ours) {
					t.Errorf("our running prompt was not interrupted: stopped %v", stopped)
				}
				if id := awaitID(t, f.interrupted, "/interrupt"); id != ours {
					t.Errorf("/interrupt for %q, want ours (%s)", id, ours)
				}
			}
		})
	}
}
