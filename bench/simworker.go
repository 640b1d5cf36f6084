// simworker.go: simulated workers that speak the protocol directly, many per process, for the
// figures that need more workers than processes.

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"studioworker/protocol"
)

// simWorker is a light client of the real protocol for the hub scale figure: hello, heartbeats at
// the interval the hub asks for, and every offer accepted and answered at once with complete_json
// and ready_for_more. It stands in for ten thousand real workers a 2-core machine cannot run; the
// hub cannot tell the difference on the wire. The fleet is made cheap so that it, not the hub,
// is not what a figure measures: one goroutine per worker (its reader), a few that beat for all,
// one heartbeat encoded once, and no context per read or write (stop closes the sockets).
type simWorker struct {
	ws        *websocket.Conn
	heartbeat time.Duration
	lastHB    atomic.Int64 // unix nanos of the last heartbeat sent, 0 once answered
	dead      atomic.Bool  // its session ended: no more heartbeats
	name      string
}

// simFleet owns the simulated workers' goroutines and what they observed.
type simFleet struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ws     []*simWorker

	mu       sync.Mutex
	offered  map[string]time.Time
	acked    map[string]time.Time // complete_ack arrivals, for a figure that waits for each job to end
	changed  chan struct{}
	hbAcks   []time.Duration // heartbeat → heartbeat_ack round trips
	failures []string        // the first 20
	failed   int             // all of them
}

const maxSimRecords = 1 << 16

func newSimFleet() *simFleet {
	return &simFleet{offered: map[string]time.Time{}, acked: map[string]time.Time{}, changed: make(chan struct{})}
}

func simCapabilities(name string) protocol.Capabilities {
	return protocol.Capabilities{
		MachineName: name, Username: "bench", AgentVersion: "bench-sim", Engine: "synthetic",
		VRAMTotalGB: 24, VRAMThresholdGB: 24, AutoAccept: true, MaxConcurrentJobs: 1,
		TaskKinds:              protocol.List[protocol.Kind]{protocol.KindLLM},
		SupportedModels:        protocol.List[string]{"synthetic"},
		SupportedModelsPerKind: protocol.ModelsPerKind{protocol.KindLLM: {"synthetic"}},
		GPUs:                   protocol.List[protocol.GPUInfo]{{Index: 0, Name: "Simulated", UUID: "sim-" + name, VRAMTotalMB: 24576}},
	}
}

// dialSim connects one simulated worker and completes hello/welcome.
func dialSim(ctx context.Context, serverURL, id, token, name string) (*simWorker, error) {
	u := "ws" + strings.TrimPrefix(serverURL, "http") + protocol.PathWorkerWS
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	h.Set(protocol.HeaderWorkerID, id)
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h, Subprotocols: []string{protocol.Subprotocol}})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", name, err)
	}
	ws.SetReadLimit(protocol.MaxFrameBytes)
	fail := func(err error) (*simWorker, error) {
		ws.CloseNow()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	hello := protocol.Hello{Protocol: protocol.Version, AgentVersion: "bench-sim", Capabilities: simCapabilities(name)}
	if err := writeFrame(ctx, ws, hello); err != nil {
		return fail(err)
	}
	_, b, err := ws.Read(ctx)
	if err != nil {
		return fail(fmt.Errorf("read welcome: %w", err))
	}
	f, err := protocol.Decode(b)
	if err != nil {
		return fail(err)
	}
	w, ok := f.(protocol.Welcome)
	if !ok {
		return fail(fmt.Errorf("want welcome, got %s", f.FrameType()))
	}
	return &simWorker{ws: ws, heartbeat: w.Heartbeat(), name: name}, nil
}

func writeFrame(ctx context.Context, ws *websocket.Conn, f protocol.Frame) error {
	b, err := protocol.Encode(f)
	if err != nil {
		return err
	}
	return ws.Write(ctx, websocket.MessageText, b)
}

// start runs the fleet's workers until stop. Heartbeats start at a random point of the first
// interval so the fleet does not beat in step.
func (sf *simFleet) start(ws []*simWorker) {
	ctx, cancel := context.WithCancel(context.Background())
	sf.cancel = cancel
	sf.ws = ws
	for _, w := range ws {
		sf.wg.Add(1)
		go func() {
			defer sf.wg.Done()
			sf.read(ctx, w)
		}()
	}
	// Each beater owns every beaters-th worker, in the order of their random phases, so a write
	// that stalls delays only its own share of the fleet.
	shards := make([][]*simWorker, min(beaters, len(ws)))
	for i, w := range ws {
		shards[i%len(shards)] = append(shards[i%len(shards)], w)
	}
	for _, shard := range shards {
		sf.wg.Add(1)
		go func() {
			defer sf.wg.Done()
			sf.beat(ctx, shard)
		}()
	}
}

// beaters is how many goroutines send the fleet's heartbeats.
const beaters = 16

func (sf *simFleet) stop() {
	if sf.cancel != nil {
		sf.cancel()
		for _, w := range sf.ws {
			w.ws.CloseNow() // ends every read and write: they run without a context
		}
	}
	sf.wg.Wait()
}

func (sf *simFleet) fail(err error) {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	sf.failed++
	if len(sf.failures) < 20 {
		sf.failures = append(sf.failures, err.Error())
	}
}

// beat sends the heartbeats of ws, each at its own phase of the interval (the same for all).
func (sf *simFleet) beat(ctx context.Context, ws []*simWorker) {
	if len(ws) == 0 {
		return
	}
	every := ws[0].heartbeat
	phase := make([]time.Duration, len(ws))
	for i := range ws {
		phase[i] = time.Duration(rand.Int64N(int64(every)))
	}
	sort.Sort(byPhase{ws, phase})
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	start := time.Now()
	for round := time.Duration(0); ; round++ {
		for i, w := range ws {
			if w.dead.Load() {
				continue
			}
			t.Reset(time.Until(start.Add(round*every + phase[i])))
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			w.lastHB.Store(time.Now().UnixNano())
			// A write that stalls (the hub stopped reading this session) would hold back the
			// rest of the shard until the hub closed them as silent: it is cut off and named.
			wctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := w.ws.Write(wctx, websocket.MessageText, simHeartbeat)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					sf.fail(fmt.Errorf("heartbeat of %s: %w", w.name, err))
				}
				w.dead.Store(true)
			}
		}
	}
}

// simHeartbeat is every simulated worker's heartbeat, encoded once: an idle worker's heartbeat
// does not change.
var simHeartbeat = func() []byte {
	b, err := protocol.Encode(protocol.Heartbeat{
		Status: protocol.Status{State: protocol.StateIdle, Running: protocol.List[string]{}, Accepting: true},
		GPUs:   protocol.List[protocol.GPUStat]{{Index: 0, VRAMTotalMB: 24576}},
	})
	if err != nil {
		panic(err)
	}
	return b
}()

// byPhase sorts workers and their phases together.
type byPhase struct {
	ws    []*simWorker
	phase []time.Duration
}

func (p byPhase) Len() int           { return len(p.ws) }
func (p byPhase) Less(i, j int) bool { return p.phase[i] < p.phase[j] }
func (p byPhase) Swap(i, j int) {
	p.ws[i], p.ws[j] = p.ws[j], p.ws[i]
	p.phase[i], p.phase[j] = p.phase[j], p.phase[i]
}

// read answers what the hub sends w until stop closes its socket (ctx then says it was stop).
func (sf *simFleet) read(ctx context.Context, w *simWorker) {
	defer w.dead.Store(true)
	result := json.RawMessage(`{"text":"ok","finish_reason":"stop","usage":{"prompt_tokens":1,"completion_tokens":1}}`)
	for {
		_, b, err := w.ws.Read(context.Background())
		if err != nil {
			if ctx.Err() == nil {
				sf.fail(fmt.Errorf("read of %s: %w", w.name, err))
			}
			return
		}
		now := time.Now()
		f, err := protocol.Decode(b)
		if err != nil {
			sf.fail(err)
			return
		}
		switch f := f.(type) {
		case protocol.Offer:
			sf.recordOffer(f.Claim.JobID, now)
			id := f.Claim.JobID
			for _, out := range []protocol.Frame{protocol.Accept{JobID: id}, protocol.CompleteJSON{JobID: id, Result: result}, protocol.ReadyForMore{}} {
				if err := writeFrame(context.Background(), w.ws, out); err != nil {
					if ctx.Err() == nil {
						sf.fail(fmt.Errorf("answer an offer: %w", err))
					}
					return
				}
			}
		case protocol.CompleteAck:
			sf.recordAck(f.JobID, now)
		case protocol.HeartbeatAck:
			if sent := w.lastHB.Swap(0); sent != 0 {
				sf.recordHBAck(now.Sub(time.Unix(0, sent)))
			}
		case protocol.Error:
			sf.fail(fmt.Errorf("hub error %s: %s", f.Code, f.Message))
		}
	}
}

func (sf *simFleet) recordOffer(id string, at time.Time) {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if len(sf.offered) < maxSimRecords {
		sf.offered[id] = at
	}
	close(sf.changed)
	sf.changed = make(chan struct{})
}

func (sf *simFleet) recordAck(id string, at time.Time) {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if len(sf.acked) < maxSimRecords {
		sf.acked[id] = at
	}
	close(sf.changed)
	sf.changed = make(chan struct{})
}

func (sf *simFleet) recordHBAck(d time.Duration) {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if len(sf.hbAcks) < maxSimRecords {
		sf.hbAcks = append(sf.hbAcks, d)
	}
}

var errNotSeen = errors.New("no such frame")

// waitOffered returns when a simulated worker received the offer of job id.
func (sf *simFleet) waitOffered(ctx context.Context, id string, timeout time.Duration) (time.Time, error) {
	return sf.wait(ctx, sf.offered, id, timeout)
}

// waitAcked returns when a simulated worker received the complete_ack of job id.
func (sf *simFleet) waitAcked(ctx context.Context, id string, timeout time.Duration) (time.Time, error) {
	return sf.wait(ctx, sf.acked, id, timeout)
}

// wait returns when seen (offered or acked) has id.
func (sf *simFleet) wait(ctx context.Context, seen map[string]time.Time, id string, timeout time.Duration) (time.Time, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		sf.mu.Lock()
		at, ok := seen[id]
		ch := sf.changed
		sf.mu.Unlock()
		if ok {
			return at, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-t.C:
			return time.Time{}, fmt.Errorf("%w for job %s after %v (fleet failures: %v)", errNotSeen, id, timeout, sf.failureList())
		}
	}
}

func (sf *simFleet) failureList() []string {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	out := append([]string(nil), sf.failures...)
	if sf.failed > len(out) {
		out = append(out, fmt.Sprintf("… %d failures in all", sf.failed))
	}
	return out
}

func (sf *simFleet) heartbeatAcks() []time.Duration {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	return append([]time.Duration(nil), sf.hbAcks...)
}
