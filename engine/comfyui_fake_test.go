package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// fakeComfyUI is an in-test HTTP server that answers like ComfyUI's API (read from
// Comfy-Org/ComfyUI 0.3.64's server.py, main.py and execution.py; it says it is 0.3.40, and its
// /interrupt behaves as up to 0.3.56): POST /prompt (with its validation errors and an optional
// client-chosen prompt_id), /ws messages (status, execution_start, execution_cached, executing,
// progress, executed, execution_success, execution_error, execution_interrupted, binary previews),
// /history/{id}, /view, /object_info, /system_stats, GET and POST /queue and /interrupt.
//
// As in ComfyUI, one prompt runs at a time, the rest wait in the queue; a run ends with
// execution_success, then the history entry is written, then executing with node null; and
// /interrupt ignores its body and stops whatever runs. The positive prompt (node 6's text)
// chooses a behaviour: "fail-node", "fail-huge" (an exception of 10 KiB), "slow" (runs until
// interrupted), "lost-answer" (queued and run as "slow", but POST /prompt never answers), "stall"
// (one sampler step and its preview, then silence on the open socket until interrupted),
// "drop-ws" (closes the socket mid-run), "cached" (every node cached: no executing per node),
// "blocked" (an ExecutionBlocked error from a blocked output, and the run goes on),
// "history-late" (executing null comes before the history entry); anything else renders a PNG of
// the latent's size. queued holds every prompt in the queue that long before it runs. ckpts are
// the checkpoints /object_info lists and /prompt's validation accepts; objectInfo counts the asks.
type fakeComfyUI struct {
	*httptest.Server
	t        *testing.T
	refuseWS bool
	queued   atomic.Int64 // a time.Duration
	// interrupted gets the body's prompt_id of each /interrupt; posted each prompt id POST /prompt
	// queued, started each one as it begins to run.
	interrupted, posted, started chan string
	objectInfo                   atomic.Int64
	// objectInfoFails makes /object_info answer 500, as a node pack that raises while listing does.
	objectInfoFails atomic.Bool
	stop            chan struct{}
	wg              sync.WaitGroup
	// turn is held by the prompt that runs: ComfyUI's prompt worker runs one at a time.
	turn chan struct{}

	mu      sync.Mutex
	ckpts   []string
	joined  map[string]chan struct{} // closed when a client id's socket is registered
	clients map[string]*websocket.Conn
	history map[string]any
	files   map[string][]byte
	graphs  []map[string]any
	deleted []string
	n       int
	pending []string // prompt ids queued and not yet running
	running string   // the prompt that runs, "" when none
	runStop chan struct{}
	stopped []string                 // the prompts /interrupt stopped
	missed  map[string]chan struct{} // told when /history is asked for an entry not yet written
}

func newFakeComfyUI(t *testing.T, refuseWS bool) *fakeComfyUI {
	f := &fakeComfyUI{t: t, refuseWS: refuseWS, interrupted: make(chan string, 4), stop: make(chan struct{}),
		posted: make(chan string, 16), started: make(chan string, 16), turn: make(chan struct{}, 1), missed: map[string]chan struct{}{},
		clients: map[string]*websocket.Conn{}, joined: map[string]chan struct{}{}, history: map[string]any{}, files: map[string][]byte{},
		ckpts: []string{"v1-5-pruned-emaonly.safetensors", "sdxl_base.safetensors"}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /system_stats", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"system":{"os":"posix","comfyui_version":"0.3.40"},"devices":[{"name":"cuda:0","type":"cuda","vram_total":25769803776}]}`)
	})
	mux.HandleFunc("GET /object_info/{class}", func(w http.ResponseWriter, r *http.Request) {
		f.objectInfo.Add(1)
		if f.objectInfoFails.Load() {
			// aiohttp's answer to a handler that raised.
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, "500 Internal Server Error\n\nServer got itself in trouble")
			return
		}
		if r.PathValue("class") != "CheckpointLoaderSimple" {
			io.WriteString(w, `{}`)
			return
		}
		names, _ := json.Marshal(f.checkpoints())
		fmt.Fprintf(w, `{"CheckpointLoaderSimple":{"input":{"required":{"ckpt_name":[%s,{"tooltip":"The name of the checkpoint to load."}]}},"input_order":{"required":["ckpt_name"]},"output":["MODEL","CLIP","VAE"],"output_is_list":[false,false,false],"output_name":["MODEL","CLIP","VAE"],"name":"CheckpointLoaderSimple","display_name":"Load Checkpoint","description":"Loads a diffusion model checkpoint.","python_module":"nodes","category":"loaders","output_node":false,"deprecated":false,"experimental":false}}`, names)
	})
	mux.HandleFunc("GET /ws", f.ws)
	mux.HandleFunc("POST /prompt", f.prompt)
	mux.HandleFunc("GET /history/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		out := map[string]any{}
		if h, ok := f.history[r.PathValue("id")]; ok {
			out[r.PathValue("id")] = h
		} else {
			select {
			case f.missedLocked(r.PathValue("id")) <- struct{}{}:
			default:
			}
		}
		json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("GET /view", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f.mu.Lock()
		data, ok := f.files[q.Get("type")+"/"+q.Get("subfolder")+"/"+q.Get("filename")]
		f.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "image/png")
		w.Write(data)
	})
	mux.HandleFunc("POST /interrupt", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			PromptID string `json:"prompt_id"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		// Up to 0.3.56 the body is not read: whatever runs is stopped, whoever queued it.
		f.mu.Lock()
		if f.runStop != nil {
			close(f.runStop)
			f.runStop = nil
			f.stopped = append(f.stopped, f.running)
		}
		f.mu.Unlock()
		select {
		case f.interrupted <- body.PromptID:
		default:
		}
	})
	mux.HandleFunc("GET /queue", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		// Each item is [number, prompt_id, prompt, extra_data, outputs_to_execute].
		item := func(i int, id string) []any {
			return []any{i, id, map[string]any{}, map[string]any{"client_id": "x"}, []string{"9"}}
		}
		running, pending := []any{}, []any{}
		if f.running != "" {
			running = append(running, item(0, f.running))
		}
		for i, id := range f.pending {
			pending = append(pending, item(i+1, id))
		}
		json.NewEncoder(w).Encode(map[string]any{"queue_running": running, "queue_pending": pending})
	})
	mux.HandleFunc("POST /queue", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Delete []string `json:"delete"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		f.mu.Lock()
		f.deleted = append(f.deleted, body.Delete...)
		f.pending = slices.DeleteFunc(f.pending, func(id string) bool { return slices.Contains(body.Delete, id) })
		f.mu.Unlock()
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(func() {
		close(f.stop)
		f.wg.Wait()
		f.Close()
	})
	return f
}

func (f *fakeComfyUI) ws(w http.ResponseWriter, r *http.Request) {
	if f.refuseWS {
		http.Error(w, "no websocket here", http.StatusNotFound)
		return
	}
	id := r.URL.Query().Get("clientId")
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	f.mu.Lock()
	f.clients[id] = conn
	close(f.joinedLocked(id))
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.clients, id)
		f.mu.Unlock()
	}()
	f.send(id, map[string]any{"type": "status", "data": map[string]any{"status": map[string]any{"exec_info": map[string]any{"queue_remaining": 0}}, "sid": id}})
	for {
		if _, _, err := conn.Read(r.Context()); err != nil {
			return
		}
	}
}

func (f *fakeComfyUI) missedLocked(id string) chan struct{} {
	ch, ok := f.missed[id]
	if !ok {
		ch = make(chan struct{}, 1)
		f.missed[id] = ch
	}
	return ch
}

// queueState is what runs and what waits in the fake's queue, and what /interrupt stopped.
func (f *fakeComfyUI) queueState() (running string, pending, deleted, stopped []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running, slices.Clone(f.pending), slices.Clone(f.deleted), slices.Clone(f.stopped)
}

func (f *fakeComfyUI) joinedLocked(id string) chan struct{} {
	ch, ok := f.joined[id]
	if !ok {
		ch = make(chan struct{})
		f.joined[id] = ch
	}
	return ch
}

// awaitClient waits until the client's socket is registered: the client's dial can return before
// the server's handler has recorded the connection, and ComfyUI would drop messages for it too.
func (f *fakeComfyUI) awaitClient(id string) {
	if f.refuseWS {
		return
	}
	f.mu.Lock()
	ch := f.joinedLocked(id)
	f.mu.Unlock()
	select {
	case <-ch:
	case <-f.stop:
	case <-time.After(10 * time.Second):
	}
}

func (f *fakeComfyUI) send(client string, v any) {
	f.mu.Lock()
	conn := f.clients[client]
	f.mu.Unlock()
	if conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if b, ok := v.([]byte); ok {
		conn.Write(ctx, websocket.MessageBinary, b)
		return
	}
	data, _ := json.Marshal(v)
	conn.Write(ctx, websocket.MessageText, data)
}

func (f *fakeComfyUI) checkpoints() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ckpts)
}

func (f *fakeComfyUI) setCheckpoints(names ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ckpts = names
}

func (f *fakeComfyUI) graphCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.graphs)
}

func (f *fakeComfyUI) lastGraph() map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.graphs) == 0 {
		return nil
	}
	return f.graphs[len(f.graphs)-1]
}

func input(graph map[string]any, node, name string) any {
	n, _ := graph[node].(map[string]any)
	in, _ := n["inputs"].(map[string]any)
	return in[name]
}

func (f *fakeComfyUI) prompt(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Prompt   map[string]any `json:"prompt"`
		ClientID string         `json:"client_id"`
		PromptID string         `json:"prompt_id"` // 0.3.45+: the client may choose it
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Prompt == nil {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"type":"invalid_prompt","message":"Cannot execute because the prompt is not valid JSON","details":"","extra_info":{}},"node_errors":{}}`)
		return
	}
	graph := body.Prompt
	nodeError := func(node, class, input, typ, msg string) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":{"type":"prompt_outputs_failed_validation","message":"Prompt outputs failed validation","details":"","extra_info":{}},"node_errors":{%q:{"errors":[{"type":%q,"message":%q,"details":%q,"extra_info":{"input_name":%q}}],"dependent_outputs":["9"],"class_type":%q}}}`,
			node, typ, msg, input+": "+msg, input, class)
	}
	width, _ := input(graph, "5", "width").(float64)
	height, _ := input(graph, "5", "height").(float64)
	if width < 16 {
		nodeError("5", "EmptyLatentImage", "width", "value_smaller_than_min", fmt.Sprintf("Value %v smaller than min of 16", width))
		return
	}
	if ckpt, _ := input(graph, "4", "ckpt_name").(string); !slices.Contains(f.checkpoints(), ckpt) {
		nodeError("4", "CheckpointLoaderSimple", "ckpt_name", "value_not_in_list", fmt.Sprintf("Value not in list: ckpt_name: '%v' not in [...]", ckpt))
		return
	}
	if input(graph, "3", "sampler_name") == "broken" {
		nodeError("3", "KSampler", "sampler_name", "value_not_in_list", "Value not in list: sampler_name: 'broken'")
		return
	}
	f.mu.Lock()
	f.n++
	n, id := f.n, body.PromptID
	if id == "" {
		id = fmt.Sprintf("%08d-aaaa-bbbb-cccc-%012d", f.n, f.n)
	}
	f.graphs = append(f.graphs, graph)
	f.pending = append(f.pending, id)
	f.mu.Unlock()
	f.wg.Add(1)
	go f.execute(id, body.ClientID, graph, int(width), int(height))
	select {
	case f.posted <- id:
	default:
	}
	if text, _ := input(graph, "6", "text").(string); text == "lost-answer" {
		// Queued, but the answer never reaches the client (it gave up first).
		select {
		case <-r.Context().Done():
		case <-f.stop:
		}
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"prompt_id": id, "number": n, "node_errors": map[string]any{}})
}

// execute plays a prompt's run as ComfyUI's prompt worker does: it waits its turn in the queue
// (a prompt deleted meanwhile never runs and gets no message), sends the run's messages, and ends
// each run, whatever its outcome, with execution_success/error/interrupted, then the history
// entry, then executing with node null.
func (f *fakeComfyUI) execute(id, client string, graph map[string]any, width, height int) {
	defer f.wg.Done()
	f.awaitClient(client)
	if d := time.Duration(f.queued.Load()); d > 0 {
		select { // behind other prompts: ComfyUI sends this client nothing meanwhile
		case <-time.After(d):
		case <-f.stop:
			return
		}
	}
	select {
	case f.turn <- struct{}{}:
	case <-f.stop:
		return
	}
	defer func() { <-f.turn }()
	stop := make(chan struct{})
	f.mu.Lock()
	if !slices.Contains(f.pending, id) {
		f.mu.Unlock()
		return // deleted from the queue
	}
	f.pending = slices.DeleteFunc(f.pending, func(p string) bool { return p == id })
	f.running, f.runStop = id, stop
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running, f.runStop = "", nil
		f.mu.Unlock()
	}()
	select {
	case f.started <- id:
	default:
	}

	text, _ := input(graph, "6", "text").(string)
	steps := 4
	if s, ok := input(graph, "3", "steps").(float64); ok {
		steps = int(s)
	}
	ev := func(typ string, data map[string]any) {
		data["prompt_id"] = id
		f.send(client, map[string]any{"type": typ, "data": data})
	}
	finish := func(status, outputs map[string]any) {
		f.mu.Lock()
		f.history[id] = map[string]any{"prompt": []any{f.n, id, graph, map[string]any{}, []string{"9"}}, "outputs": outputs, "status": status}
		f.mu.Unlock()
		ev("executing", map[string]any{"node": nil})
	}
	ev("execution_start", map[string]any{"timestamp": 1})
	all := []string{"4", "5", "6", "7", "3", "8", "9"}
	if text == "cached" {
		ev("execution_cached", map[string]any{"nodes": all})
	} else {
		ev("execution_cached", map[string]any{"nodes": []string{}})
		for _, n := range all[:5] {
			ev("executing", map[string]any{"node": n, "display_node": n})
		}
	}
	switch text {
	case "drop-ws":
		f.mu.Lock()
		conn := f.clients[client]
		f.mu.Unlock()
		if conn != nil {
			conn.Close(websocket.StatusGoingAway, "server restarting")
		}
	case "slow", "stall", "lost-answer":
		if text == "stall" {
			ev("progress", map[string]any{"value": 1, "max": steps, "node": "3"})
			f.send(client, append([]byte{0, 0, 0, 1, 0, 0, 0, 2}, testPNG(8, 8)...))
		}
		select {
		case <-f.stop:
		case <-time.After(time.Minute):
		case <-stop:
		}
		interrupted := map[string]any{"node_id": "3", "node_type": "KSampler", "executed": []string{}}
		ev("execution_interrupted", interrupted)
		finish(map[string]any{"status_str": "error", "completed": false, "messages": []any{[]any{"execution_interrupted", interrupted}}}, map[string]any{})
		return
	case "fail-node", "fail-huge":
		exc := "CUDA out of memory"
		if text == "fail-huge" {
			exc += ". Tried to allocate " + strings.Repeat("Speicher größer ", 570)
		}
		e := map[string]any{"node_id": "3", "node_type": "KSampler", "exception_message": exc, "exception_type": "torch.OutOfMemoryError"}
		ev("execution_error", e)
		finish(map[string]any{"status_str": "error", "completed": false, "messages": []any{[]any{"execution_error", e}}}, map[string]any{})
		return
	case "blocked":
		// A node returned an ExecutionBlocker with a message for one output; the others go on.
		ev("execution_error", map[string]any{"node_id": "10", "node_type": "SaveImage", "executed": []string{},
			"exception_message": "Execution Blocked: no second image wanted", "exception_type": "ExecutionBlocked", "traceback": []string{}})
	}
	if text != "cached" {
		for i := 1; i <= steps; i++ {
			ev("progress", map[string]any{"value": i, "max": steps, "node": "3"})
			// A binary preview frame (type 1, format 2 = PNG, then the image), as ComfyUI sends.
			f.send(client, append([]byte{0, 0, 0, 1, 0, 0, 0, 2}, testPNG(8, 8)...))
		}
	}
	f.mu.Lock()
	name := fmt.Sprintf("studio_%05d_.png", f.n)
	f.files["output//"+name] = testPNG(width, height)
	f.files["temp//preview.png"] = testPNG(2, 2)
	f.mu.Unlock()
	out := map[string]any{"images": []any{map[string]any{"filename": name, "subfolder": "", "type": "output"}}}
	outputs := map[string]any{"2": map[string]any{"images": []any{map[string]any{"filename": "preview.png", "subfolder": "", "type": "temp"}}}, "9": out}
	if text != "cached" {
		ev("executing", map[string]any{"node": "8", "display_node": "8"})
		ev("executing", map[string]any{"node": "9", "display_node": "9"})
		ev("executed", map[string]any{"node": "9", "display_node": "9", "output": out})
	}
	success := map[string]any{"status_str": "success", "completed": true, "messages": []any{}}
	ev("execution_success", map[string]any{"timestamp": 2})
	if text == "history-late" {
		// Out of ComfyUI's order: a client that takes executing null as final must still find it.
		ev("executing", map[string]any{"node": nil})
		f.awaitMiss(id)
		f.mu.Lock()
		f.history[id] = map[string]any{"prompt": []any{f.n, id, graph, map[string]any{}, []string{"9"}}, "outputs": outputs, "status": success}
		f.mu.Unlock()
		return
	}
	// ComfyUI writes the entry after execution_success; hold it until a client has looked for it
	// (or briefly), so that reading the history on execution_success finds {} every time.
	f.awaitMiss(id)
	finish(success, outputs)
}

// awaitMiss waits until /history was asked for id and found nothing, or 100 ms.
func (f *fakeComfyUI) awaitMiss(id string) {
	f.mu.Lock()
	ch := f.missedLocked(id)
	f.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(100 * time.Millisecond):
	case <-f.stop:
	}
}
