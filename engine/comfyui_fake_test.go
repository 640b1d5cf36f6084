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

// fakeComfyUI is an in-test HTTP server that answers like ComfyUI's API: POST /prompt (with its
// validation errors), /ws messages (status, execution_start, executing, progress, executed,
// execution_success, execution_error, execution_interrupted, binary previews), /history/{id},
// /view, /object_info, /system_stats, /interrupt and /queue. The positive prompt (node 6's text)
// chooses a behaviour: "fail-node", "fail-huge" (an exception of 10 KiB), "slow" (runs until
// interrupted), "stall" (one sampler step and its preview, then silence on the open socket until
// interrupted), "drop-ws" (closes the socket mid-run); anything else renders a PNG of the
// latent's size. queued holds every prompt in the queue that long before it runs. ckpts are the
// checkpoints /object_info lists and /prompt's validation accepts; objectInfo counts the asks.
type fakeComfyUI struct {
	*httptest.Server
	t           *testing.T
	refuseWS    bool
	queued      atomic.Int64 // a time.Duration
	interrupted chan string
	objectInfo  atomic.Int64
	// objectInfoFails makes /object_info answer 500, as a node pack that raises while listing does.
	objectInfoFails atomic.Bool
	stop            chan struct{}
	wg              sync.WaitGroup

	mu      sync.Mutex
	ckpts   []string
	joined  map[string]chan struct{} // closed when a client id's socket is registered
	clients map[string]*websocket.Conn
	history map[string]any
	files   map[string][]byte
	graphs  []map[string]any
	deleted []string
	n       int
}

func newFakeComfyUI(t *testing.T, refuseWS bool) *fakeComfyUI {
	f := &fakeComfyUI{t: t, refuseWS: refuseWS, interrupted: make(chan string, 4), stop: make(chan struct{}),
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
		select {
		case f.interrupted <- body.PromptID:
		default:
		}
	})
	mux.HandleFunc("POST /queue", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Delete []string `json:"delete"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		f.mu.Lock()
		f.deleted = append(f.deleted, body.Delete...)
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
	id := fmt.Sprintf("%08d-aaaa-bbbb-cccc-%012d", f.n, f.n)
	f.graphs = append(f.graphs, graph)
	f.mu.Unlock()
	json.NewEncoder(w).Encode(map[string]any{"prompt_id": id, "number": f.n, "node_errors": map[string]any{}})
	f.wg.Add(1)
	go f.execute(id, body.ClientID, graph, int(width), int(height))
}

// execute plays a prompt's run: the messages ComfyUI sends, then its history and files.
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
	text, _ := input(graph, "6", "text").(string)
	steps := 4
	if s, ok := input(graph, "3", "steps").(float64); ok {
		steps = int(s)
	}
	ev := func(typ string, data map[string]any) {
		data["prompt_id"] = id
		f.send(client, map[string]any{"type": typ, "data": data})
	}
	ev("execution_start", map[string]any{"timestamp": 1})
	ev("execution_cached", map[string]any{"nodes": []string{}})
	for _, n := range []string{"4", "5", "6", "7", "3"} {
		ev("executing", map[string]any{"node": n, "display_node": n})
	}
	status := map[string]any{"status_str": "success", "completed": true, "messages": []any{}}
	switch text {
	case "drop-ws":
		f.mu.Lock()
		conn := f.clients[client]
		f.mu.Unlock()
		if conn != nil {
			conn.Close(websocket.StatusGoingAway, "server restarting")
		}
	case "slow", "stall":
		if text == "stall" {
			ev("progress", map[string]any{"value": 1, "max": steps, "node": "3"})
			f.send(client, append([]byte{0, 0, 0, 1, 0, 0, 0, 2}, testPNG(8, 8)...))
		}
		select {
		case <-f.stop:
		case <-time.After(time.Minute):
		case pid := <-f.interrupted:
			f.interrupted <- pid // leave it for the test to see
		}
		ev("execution_interrupted", map[string]any{"node_id": "3", "node_type": "KSampler", "executed": []string{}})
		return
	case "fail-node", "fail-huge":
		exc := "CUDA out of memory"
		if text == "fail-huge" {
			exc += ". Tried to allocate " + strings.Repeat("Speicher größer ", 570)
		}
		ev("execution_error", map[string]any{"node_id": "3", "node_type": "KSampler", "exception_message": exc, "exception_type": "torch.OutOfMemoryError"})
		status = map[string]any{"status_str": "error", "completed": false, "messages": []any{[]any{"execution_error", map[string]any{"node_id": "3", "node_type": "KSampler", "exception_message": exc, "exception_type": "torch.OutOfMemoryError"}}}}
		f.mu.Lock()
		f.history[id] = map[string]any{"prompt": []any{}, "outputs": map[string]any{}, "status": status}
		f.mu.Unlock()
		return
	}
	for i := 1; i <= steps; i++ {
		ev("progress", map[string]any{"value": i, "max": steps, "node": "3"})
		// A binary preview frame (type 1, format 2 = PNG, then the image), as ComfyUI sends.
		f.send(client, append([]byte{0, 0, 0, 1, 0, 0, 0, 2}, testPNG(8, 8)...))
	}
	name := fmt.Sprintf("studio_%05d_.png", f.n)
	out := map[string]any{"images": []any{map[string]any{"filename": name, "subfolder": "", "type": "output"}}}
	f.mu.Lock()
	f.files["output//"+name] = testPNG(width, height)
	f.files["temp//preview.png"] = testPNG(2, 2)
	f.history[id] = map[string]any{
		"prompt":  []any{f.n, id, graph, map[string]any{}, []string{"9"}},
		"outputs": map[string]any{"2": map[string]any{"images": []any{map[string]any{"filename": "preview.png", "subfolder": "", "type": "temp"}}}, "9": out},
		"status":  status,
	}
	f.mu.Unlock()
	ev("executing", map[string]any{"node": "8", "display_node": "8"})
	ev("executing", map[string]any{"node": "9", "display_node": "9"})
	ev("executed", map[string]any{"node": "9", "display_node": "9", "output": out})
	ev("executing", map[string]any{"node": nil})
	ev("execution_success", map[string]any{"timestamp": 2})
}
