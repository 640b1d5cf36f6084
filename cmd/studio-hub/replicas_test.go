// replicas_test.go: two and three studio-hub processes on one real PostgreSQL database, workers
// over WebSocket spread over them, jobs submitted to all of them, and one replica SIGKILLed while
// the jobs run: every job ends completed, each result is stored once (a second send answered
// duplicate, never stored again), and the workers of the dead replica carry on through the others.

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"studioworker/hub"
	"studioworker/internal/pgtest"
	"studioworker/protocol"
)

func TestReplicasLoseNothingWhenOneIsKilled(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d replicas", n), func(t *testing.T) { replicasSurviveAKill(t, n) })
	}
}

func replicasSurviveAKill(t *testing.T, n int) {
	pg := pgtest.Start(t)
	url := pg.NewDatabase(t)
	data := filepath.Join(t.TempDir(), "data")
	args := []string{"--db", url, "--data", data, "--open-registration", "--admin-token", "replica-admin",
		"--replica-dead-after", "2s", "--lease-grace", "3s", "--offer-ttl", "2s", "--retry-cooloff", "500ms"}
	var procs []*hubProcess
	for range n {
		procs = append(procs, startHubProcess(t, args...))
	}
	clients := make([]*hub.Client, n)
	urls := make([]string, n)
	for i, p := range procs {
		clients[i] = &hub.Client{BaseURL: p.url, AdminToken: "replica-admin"}
		urls[i] = p.url
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const workers, jobs = 6, 240
	tally := newRunTally()
	var wg sync.WaitGroup
	wctx, stopWorkers := context.WithCancel(ctx)
	defer func() { stopWorkers(); wg.Wait() }()
	for i := range workers {
		creds, err := clients[i%n].Register(ctx, fmt.Sprintf("w%d", i), "any")
		if err != nil {
			t.Fatal(err)
		}
		lw := &loadWorker{creds: creds, urls: urls, tally: tally}
		wg.Add(1)
		go func() { defer wg.Done(); lw.run(wctx, i%n) }()
	}

	// Submit through every replica in turn; a POST the killed replica cannot answer goes to the
	// next one with the same Idempotency-Key, so it names the same job.
	ids := make([]string, jobs)
	killed := -1
	var killedMu sync.Mutex
	submit := func(k int) {
		key := fmt.Sprintf("job-%d", k)
		for try := 0; ; try++ {
			i := (k + try) % n
			killedMu.Lock()
			dead := i == killed
			killedMu.Unlock()
			if dead {
				continue
			}
			id, err := submitKeyed(ctx, urls[i], key)
			if err == nil {
				ids[k] = id
				return
			}
			if try > 3*n {
				t.Errorf("job %d could not be submitted: %v", k, err)
				return
			}
		}
	}
	for k := range jobs / 2 {
		submit(k)
	}
	// Kill a replica once some results are in: it has sessions, offers and leases then.
	deadline := time.Now().Add(time.Minute)
	for tally.stored() < jobs/8 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d results stored before the kill", tally.stored())
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	victim := n - 1
	killedMu.Lock()
	killed = victim
	killedMu.Unlock()
	procs[victim].kill(t)
	for k := jobs / 2; k < jobs; k++ {
		submit(k)
	}

	// Every job ends completed, as any surviving replica sees it.
	for _, id := range ids {
		if id == "" {
			continue
		}
		info := waitStatusWithin(t, clients[0], id, protocol.JobCompleted, time.Minute)
		var got struct{ Text string }
		if err := json.Unmarshal(info.Result, &got); err != nil || got.Text != id {
			t.Fatalf("job %s: stored result %s", id, info.Result)
		}
	}
	stopWorkers()
	wg.Wait()
	twice, runs, resends := tally.report()
	if len(twice) > 0 {
		t.Fatalf("results answered stored more than once: %v", twice)
	}
	if resends == 0 {
		t.Fatal("no result was sent again after the kill: the killed replica had nothing in flight, and the test showed nothing")
	}
	t.Logf("%d replicas, one killed: %d jobs completed, %d runs in all (a run beyond one per job is a lease the kill cost), %d results sent again through another replica", n, jobs, runs, resends)
}

func submitKeyed(ctx context.Context, base, key string) (string, error) {
	body := `{"kind":"llm","model":"m1","input":{"prompt":"x"}}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+protocol.PathJobs, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer replica-admin")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out protocol.JobCreated
	if resp.StatusCode != http.StatusCreated || json.NewDecoder(resp.Body).Decode(&out) != nil {
		return "", fmt.Errorf("submit: %d", resp.StatusCode)
	}
	return out.JobID, nil
}

// waitStatusWithin polls the job until it has status s, for at most limit.
func waitStatusWithin(t *testing.T, c *hub.Client, id string, s protocol.JobStatus, limit time.Duration) protocol.JobInfo {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		info, err := c.Job(context.Background(), id)
		if err == nil && info.Status == s {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s never %s: %+v %v", id, s, info, err)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

// runTally counts, across the workers, the runs of each job and the results answered stored.
type runTally struct {
	mu      sync.Mutex
	runs    map[string]int
	stores  map[string]int
	resends int // results sent again in a hello's outbox, after a connection dropped
}

func newRunTally() *runTally { return &runTally{runs: map[string]int{}, stores: map[string]int{}} }

func (r *runTally) ran(id string) { r.mu.Lock(); r.runs[id]++; r.mu.Unlock() }

func (r *runTally) resent() { r.mu.Lock(); r.resends++; r.mu.Unlock() }

func (r *runTally) storedOne(id string) { r.mu.Lock(); r.stores[id]++; r.mu.Unlock() }

func (r *runTally) stored() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.stores)
}

func (r *runTally) report() (twice []string, runs, resends int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	resends = r.resends
	for id, n := range r.stores {
		if n > 1 {
			twice = append(twice, id)
		}
	}
	for _, n := range r.runs {
		runs += n
	}
	return twice, runs, resends
}

// loadWorker is the smallest worker that survives its hub: it takes every offer, answers it at
// once with {"text": job id}, keeps each result until it is acknowledged, and when its connection
// drops it connects to the next replica and says, in its hello, which results it still holds.
type loadWorker struct {
	creds protocol.RegisterResponse
	urls  []string
	tally *runTally
	// unacked holds the results sent and not yet acknowledged, by job id.
	unacked map[string]bool
}

func (w *loadWorker) run(ctx context.Context, start int) {
	w.unacked = map[string]bool{}
	for i := start; ctx.Err() == nil; i++ {
		w.session(ctx, w.urls[i%len(w.urls)])
	}
}

func (w *loadWorker) session(ctx context.Context, base string) {
	hdr := http.Header{}
	hdr.Set("Authorization", "Bearer "+w.creds.AuthToken)
	hdr.Set(protocol.HeaderWorkerID, w.creds.WorkerID)
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	ws, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(base, "http")+protocol.PathWorkerWS,
		&websocket.DialOptions{HTTPHeader: hdr, Subprotocols: []string{protocol.Subprotocol}})
	cancel()
	if err != nil {
		return // a dead replica: the next one
	}
	defer ws.CloseNow()
	send := func(f protocol.Frame) bool {
		b, _ := protocol.Encode(f)
		return ws.Write(ctx, websocket.MessageText, b) == nil
	}
	var outbox []string
	for id := range w.unacked {
		outbox = append(outbox, id)
	}
	if !send(protocol.Hello{Protocol: 1, AgentVersion: "replica-test", Outbox: outbox, Capabilities: protocol.Capabilities{
		VRAMThresholdGB: 24, MaxConcurrentJobs: 4, AutoAccept: true,
		SupportedModelsPerKind: protocol.ModelsPerKind{protocol.KindLLM: {"m1"}}}}) {
		return
	}
	for _, id := range outbox {
		w.tally.resent()
		if !send(protocol.CompleteJSON{JobID: id, Result: result(id)}) {
			return
		}
	}
	// A run takes a little while (runFor), so that a kill finds runs in progress.
	finished := make(chan string, 16)
	var runs sync.WaitGroup
	defer runs.Wait()
	beat := time.NewTicker(500 * time.Millisecond)
	defer beat.Stop()
	frames := make(chan protocol.Frame, 64)
	go func() {
		defer close(frames)
		for {
			_, data, err := ws.Read(ctx)
			if err != nil {
				return
			}
			if f, err := protocol.Decode(data); err == nil {
				frames <- f
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			running := make([]string, 0, len(w.unacked))
			for id := range w.unacked {
				running = append(running, id)
			}
			if !send(protocol.Heartbeat{Status: protocol.Status{State: protocol.StateIdle, Accepting: true, Running: running}}) {
				return
			}
		case id := <-finished:
			if w.unacked[id] && !send(protocol.CompleteJSON{JobID: id, Result: result(id)}) {
				return
			}
		case f, ok := <-frames:
			if !ok {
				return
			}
			switch f := f.(type) {
			case protocol.Offer:
				id := f.Claim.JobID
				w.tally.ran(id)
				w.unacked[id] = true
				if !send(protocol.Accept{JobID: id}) {
					return
				}
				runs.Add(1)
				go func() {
					defer runs.Done()
					select {
					case <-time.After(runFor):
						select {
						case finished <- id:
						case <-ctx.Done():
						}
					case <-ctx.Done():
					}
				}()
			case protocol.CompleteAck:
				if f.Status == protocol.AckStored {
					w.tally.storedOne(f.JobID)
				}
				delete(w.unacked, f.JobID)
				if !send(protocol.ReadyForMore{}) {
					return
				}
			case protocol.Cancel:
				if w.unacked[f.JobID] {
					delete(w.unacked, f.JobID)
					send(protocol.ReadyForMore{})
				}
			}
		}
	}
}

// runFor is how long a loadWorker's run takes.
const runFor = 200 * time.Millisecond

func result(id string) json.RawMessage {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(map[string]string{"text": id})
	return bytes.TrimSpace(b.Bytes())
}
