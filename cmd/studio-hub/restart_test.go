// restart_test.go: what a worker meets when the real hub process is killed and started again on
// the same database: every queued job (open offers too, which are not durable) is offered again
// promptly once it reconnects, a completed JSON job still reads with its result, and a job whose
// accept died with the hub may run twice, the second result answered as the contract says. It
// must not know the hub's internals: it sees only the job API and the worker's frames.

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"studioworker/hub"
	"studioworker/protocol"
)

// jobFields reads GET /v1/jobs/{id} as the wire has it, so a field left out shows as missing.
func jobFields(t *testing.T, base, token, id string) map[string]json.RawMessage {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+protocol.PathJobs+"/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET job %s: %d %v", id, resp.StatusCode, err)
	}
	return out
}

func llmRequest() protocol.JobRequest {
	return protocol.JobRequest{Kind: protocol.KindLLM, Model: "m1", Input: protocol.Object(`{"prompt":"x"}`)}
}

func TestQueuedJobsAreOfferedPromptlyAfterARestart(t *testing.T) {
	// A long offer TTL: an offer that comes again after the restart cannot be an expiry's.
	args := []string{"--db", filepath.Join(t.TempDir(), "hub.db"), "--open-registration", "--admin-token", "restart-admin", "--offer-ttl", "60s"}
	p := startHubProcess(t, args...)
	c := &hub.Client{BaseURL: p.url, AdminToken: "restart-admin"}
	ctx := context.Background()
	creds, err := c.Register(ctx, "restart-worker", "any")
	if err != nil {
		t.Fatal(err)
	}
	models := protocol.ModelsPerKind{protocol.KindLLM: {"m1"}}
	w := connect(t, p.url, creds, models, nil) // 4 slots

	done, _ := c.Submit(ctx, llmRequest())
	w.take(done)
	w.send(protocol.CompleteJSON{JobID: done, Result: protocol.Object(`{"text":"kept"}`)})
	if a, ok := w.next().(protocol.CompleteAck); !ok || a.Status != protocol.AckStored {
		t.Fatalf("want complete_ack stored, got %+v", a)
	}
	w.send(protocol.ReadyForMore{})
	// Four open offers at the kill (one per slot), three queued behind them.
	want := map[string]bool{}
	for range 7 {
		id, err := c.Submit(ctx, llmRequest())
		if err != nil {
			t.Fatal(err)
		}
		want[id] = true
	}
	for range 4 {
		if o, ok := w.next().(protocol.Offer); !ok || !want[o.Claim.JobID] {
			t.Fatalf("want an offer of a new job, got %+v", o)
		}
	}
	p.kill(t)
	w.ws.CloseNow()

	p2 := startHubProcess(t, args...)
	c2 := &hub.Client{BaseURL: p2.url, AdminToken: "restart-admin"}
	if res := jobFields(t, p2.url, "restart-admin", done)["result"]; string(res) != `{"text":"kept"}` {
		t.Fatalf("the completed JSON job reads with result %s after the restart", res)
	}
	t0 := time.Now()
	w2 := connect(t, p2.url, creds, models, nil)
	for stored := 0; stored < len(want); {
		switch f := w2.next().(type) {
		case protocol.Offer:
			if !want[f.Claim.JobID] {
				t.Fatalf("offer of %s, not one of the jobs queued at the kill", f.Claim.JobID)
			}
			w2.send(protocol.Accept{JobID: f.Claim.JobID})
			w2.send(protocol.CompleteJSON{JobID: f.Claim.JobID, Result: protocol.Object(`{"text":"after"}`)})
		case protocol.CompleteAck:
			if f.Status != protocol.AckStored {
				t.Fatalf("complete_ack %+v", f)
			}
			stored++
			w2.send(protocol.ReadyForMore{})
		default:
			t.Fatalf("unexpected %T %+v", f, f)
		}
	}
	// Promptly: in the time a few commits take, not an offer TTL nor a lease grace.
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("the %d queued jobs took %v to be offered and completed after the reconnect", len(want), d)
	}
	for id := range want {
		if info := waitStatus(t, c2, id, protocol.JobCompleted); info.Attempts != 0 {
			t.Fatalf("job %s: %+v (an open offer lost in a restart is not an attempt)", id, info)
		}
	}
	if res := jobFields(t, p2.url, "restart-admin", done)["result"]; string(res) != `{"text":"kept"}` {
		t.Fatalf("the completed JSON job reads with result %s", res)
	}
}

// TestAcceptLostInACrashCanMakeARejectedResult shows when the recovery figure of the bench can
// see `rejected` (issue 17): the hub commits an accept in its next batch while the worker starts
// the job at once, so a SIGKILL in between leaves the job queued. When another worker is back
// first and accepts it, it holds the lease; the first worker's result is then answered
// `rejected`, as contract §4 says for a job another worker holds, and the job ran twice. Nothing
// is lost and nothing is stored twice: the other worker's result is the one stored.
func TestAcceptLostInACrashCanMakeARejectedResult(t *testing.T) {
	args := []string{"--db", filepath.Join(t.TempDir(), "hub.db"), "--open-registration", "--admin-token", "crash-admin"}
	p := startHubProcess(t, args...)
	c := &hub.Client{BaseURL: p.url, AdminToken: "crash-admin"}
	ctx := context.Background()
	credsA, err := c.Register(ctx, "a", "any")
	if err != nil {
		t.Fatal(err)
	}
	credsB, err := c.Register(ctx, "b", "any")
	if err != nil {
		t.Fatal(err)
	}
	models := protocol.ModelsPerKind{protocol.KindLLM: {"m1"}}
	a := connect(t, p.url, credsA, models, nil)
	id, _ := c.Submit(ctx, llmRequest())
	if o, ok := a.next().(protocol.Offer); !ok || o.Claim.JobID != id {
		t.Fatalf("want the offer of %s, got %+v", id, o)
	}
	// a accepts and runs the job; the hub dies before its accept is read or committed.
	p.kill(t)
	a.ws.CloseNow()

	p2 := startHubProcess(t, args...)
	c2 := &hub.Client{BaseURL: p2.url, AdminToken: "crash-admin"}
	waitStatus(t, c2, id, protocol.JobQueued)
	b := connect(t, p2.url, credsB, models, nil) // back first
	b.take(id)
	waitStatus(t, c2, id, protocol.JobRunning)
	// a comes back with the result in its outbox and delivers it.
	a2 := connectHello(t, p2.url, credsA, protocol.Hello{Protocol: 1, AgentVersion: "crash-test", Outbox: []string{id},
		Capabilities: protocol.Capabilities{VRAMThresholdGB: 24, MaxConcurrentJobs: 4, SupportedModelsPerKind: models}})
	a2.send(protocol.CompleteJSON{JobID: id, Result: protocol.Object(`{"text":"from a"}`)})
	if ack, ok := a2.next().(protocol.CompleteAck); !ok || ack.Status != protocol.AckRejected {
		t.Fatalf("a's result: want complete_ack rejected (b holds the job), got %+v", ack)
	}
	b.send(protocol.CompleteJSON{JobID: id, Result: protocol.Object(`{"text":"from b"}`)})
	if ack, ok := b.next().(protocol.CompleteAck); !ok || ack.Status != protocol.AckStored {
		t.Fatalf("b's result: want complete_ack stored, got %+v", ack)
	}
	if info := waitStatus(t, c2, id, protocol.JobCompleted); info.WorkerID != credsB.WorkerID || string(info.Result) != `{"text":"from b"}` {
		t.Fatalf("info %+v", info)
	}
}
