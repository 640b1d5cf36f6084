// session_test.go: the session itself: a job end to end, a second connection superseding the
// first, log batches, unknown, malformed and oversized frames, wrong credentials before the
// upgrade, and the shutting_down close.

package hub

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"studioworker/protocol"
)

func TestJSONJobEndToEnd(t *testing.T) {
	e := startHub(t, nil)
	creds := e.register("gpu-1")
	w := e.connect(creds, hello(llmCaps, nil, nil))
	w.heartbeat(protocol.Status{State: protocol.StateIdle, Accepting: true})

	id := e.submit(llmJob("m1"))
	claim := w.offerFor(id)
	if claim.Kind != protocol.KindLLM || claim.Model != "m1" || string(claim.Input) != `{"prompt":"hi"}` {
		t.Fatalf("claim %+v", claim)
	}
	if claim.ExpiresAt.Location() != time.UTC || !claim.ExpiresAt.After(time.Now()) {
		t.Fatalf("expires_at %v: want a future UTC time", claim.ExpiresAt)
	}
	if info := e.waitJob(id, "offered", statusIs(protocol.JobOffered)); info.WorkerID != creds.WorkerID {
		t.Fatalf("offered to %q", info.WorkerID)
	}
	w.send(protocol.Accept{JobID: id})
	e.waitJob(id, "running", statusIs(protocol.JobRunning))
	w.send(protocol.Progress{JobID: id, Fraction: 0.5})
	if ack := w.complete(id, `{"text":"hello","finish_reason":"stop","usage":{"prompt_tokens":1,"completion_tokens":1}}`); ack.Status != protocol.AckStored {
		t.Fatalf("ack %+v", ack)
	}
	w.send(protocol.ReadyForMore{})
	info := e.waitJob(id, "completed", statusIs(protocol.JobCompleted))
	if info.WorkerID != creds.WorkerID || info.Attempts != 0 || info.Error != "" {
		t.Fatalf("info %+v", info)
	}
	var res protocol.LLMResult
	if err := json.Unmarshal(info.Result, &res); err != nil || res.Text != "hello" {
		t.Fatalf("result %s: %v", info.Result, err)
	}
	var sb strings.Builder
	ct, err := e.client.Result(context.Background(), id, &sb)
	if err != nil || ct != "application/json" || !strings.Contains(sb.String(), `"hello"`) {
		t.Fatalf("Result: %q %q %v", ct, sb.String(), err)
	}
	jobs, err := e.client.Jobs(context.Background())
	if err != nil || len(jobs) != 1 || jobs[0].JobID != id || jobs[0].Status != protocol.JobCompleted {
		t.Fatalf("Jobs: %+v %v", jobs, err)
	}
	workers, err := e.client.Workers(context.Background())
	if err != nil || len(workers) != 1 || !workers[0].Connected || workers[0].Name != "gpu-1" {
		t.Fatalf("Workers: %+v %v", workers, err)
	}
}

func TestSecondConnectionSupersedesTheFirst(t *testing.T) {
	e := startHub(t, nil)
	creds := e.register("a")
	first := e.connect(creds, hello(llmCaps, nil, nil))
	id := e.submit(llmJob("m1"))
	e.lease(first, id)
	second := e.connect(creds, hello(llmCaps, []string{id}, nil))
	if er := expect[protocol.Error](first); er.Code != protocol.ErrCodeSuperseded {
		t.Fatalf("got %+v", er)
	}
	if code := first.closeStatus(); code != protocol.CloseSuperseded {
		t.Fatalf("close %d, want 4002", code)
	}
	// The lease moved to the new session, untouched.
	if info := e.waitJob(id, "running", statusIs(protocol.JobRunning)); info.Attempts != 0 {
		t.Fatalf("info %+v", info)
	}
	if ack := second.complete(id, `{"text":"x"}`); ack.Status != protocol.AckStored {
		t.Fatalf("ack %+v", ack)
	}
}

func TestLogBatchIsAcked(t *testing.T) {
	e := startHub(t, nil)
	creds := e.register("a")
	a := e.connect(creds, hello(llmCaps, nil, nil))
	a.send(protocol.LogBatch{Seq: 7, Entries: protocol.List[protocol.LogEntry]{
		{TS: time.Now().UTC(), Level: protocol.LevelInfo, Source: "engine", Message: "loaded model"},
	}})
	if ack := expect[protocol.LogAck](a); ack.Seq != 7 {
		t.Fatalf("ack %+v", ack)
	}
	req, _ := e.client.send(context.Background(), "GET", "/v1/workers/"+creds.WorkerID+"/logs", "", nil)
	defer req.Body.Close()
	var entries []protocol.LogEntry
	if err := json.NewDecoder(req.Body).Decode(&entries); err != nil || len(entries) != 1 || entries[0].Message != "loaded model" {
		t.Fatalf("logs %+v %v", entries, err)
	}
}

func TestUnknownFrameTypeIsIgnored(t *testing.T) {
	e := startHub(t, nil)
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	a.sendRaw([]byte(`{"type":"from_the_future","x":1}`))
	a.heartbeat(protocol.Status{State: protocol.StateIdle, Accepting: true})
	e.waitMetric("studio_hub_unknown_frames_total 1")
}

// TestUnknownFramesAreLoggedOnceAMinute: a worker that sends unknown frames in a loop costs the
// hub a counter, not a log line per frame.
func TestUnknownFramesAreLoggedOnceAMinute(t *testing.T) {
	e := startHub(t, nil)
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	for range 300 {
		a.sendRaw([]byte(`{"type":"from_the_future","x":1}`))
	}
	a.send(protocol.LogBatch{Seq: 1, Entries: protocol.List[protocol.LogEntry]{{TS: time.Now().UTC(), Level: protocol.LevelInfo, Source: "w", Message: "after"}}})
	expect[protocol.LogAck](a) // read in order: every unknown frame before it has been handled
	e.waitMetric("studio_hub_unknown_frames_total 300")
	if n := strings.Count(e.logs.String(), "ignoring a frame of unknown type"); n != 1 {
		t.Errorf("%d log lines for 300 unknown frames, want 1", n)
	}
}

func TestInvalidUTF8IsClosedWith1007(t *testing.T) {
	e := startHub(t, nil)
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	a.sendRaw([]byte("{\"type\":\"log_batch\",\"seq\":1,\"entries\":[{\"message\":\"\xff\xfe\"}]}"))
	if code := a.closeStatus(); code != websocket.StatusInvalidFramePayloadData {
		t.Fatalf("closed with %d, want 1007", code)
	}
}

func TestMalformedFramesGetProtocolErrorAndClose(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame string
	}{
		{"not json", `{"type":`},
		{"missing field", `{"type":"accept"}`},
		{"null list", `{"type":"heartbeat","status":{"state":"idle","running":null,"accepting":true},"gpus":[]}`},
		{"hub frame from a worker", `{"type":"welcome","worker_id":"x","server_version":"y"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startHub(t, nil)
			a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
			a.sendRaw([]byte(tc.frame))
			if er := expect[protocol.Error](a); er.Code != protocol.ErrCodeProtocolError || er.Message == "" {
				t.Fatalf("got %+v", er)
			}
			if code := a.closeStatus(); code != websocket.StatusProtocolError {
				t.Fatalf("close %d, want 1002", code)
			}
		})
	}
	t.Run("first frame not hello", func(t *testing.T) {
		e := startHub(t, nil)
		a := e.connectRaw(e.register("a"))
		a.send(protocol.Heartbeat{Status: protocol.Status{State: protocol.StateIdle}})
		if er := expect[protocol.Error](a); er.Code != protocol.ErrCodeProtocolError {
			t.Fatalf("got %+v", er)
		}
		if code := a.closeStatus(); code != websocket.StatusProtocolError {
			t.Fatalf("close %d", code)
		}
	})
}

func TestOversizedFrameClosesWith1009(t *testing.T) {
	e := startHub(t, nil)
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	big := `{"type":"progress","job_id":"x","fraction":0.1,"message":"` + strings.Repeat("a", protocol.MaxFrameBytes) + `"}`
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	_ = a.ws.Write(ctx, websocket.MessageText, []byte(big)) // the hub may close before it is all written
	if code := a.closeStatus(); code != websocket.StatusMessageTooBig {
		t.Fatalf("close %d, want 1009", code)
	}
	e.waitMetric("studio_hub_frame_errors_total 1")
}

func TestWrongCredentialsAre401BeforeTheUpgrade(t *testing.T) {
	e := startHub(t, nil)
	creds := e.register("a")
	for _, tc := range []struct {
		name  string
		creds protocol.RegisterResponse
	}{
		{"unknown worker", protocol.RegisterResponse{WorkerID: "w-nobody", AuthToken: creds.AuthToken}},
		{"wrong token", protocol.RegisterResponse{WorkerID: creds.WorkerID, AuthToken: "wrong-token-value"}},
		{"no token", protocol.RegisterResponse{WorkerID: creds.WorkerID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, resp, err := e.dial(tc.creds)
			if err == nil || resp == nil || resp.StatusCode != 401 {
				t.Fatalf("dial: %v %v", err, resp)
			}
		})
	}
	if strings.Contains(e.logs.String(), creds.AuthToken) || strings.Contains(e.logs.String(), "wrong-token-value") {
		t.Fatal("a token appears in the log")
	}
}

func TestCloseSendsShuttingDown(t *testing.T) {
	e := startHub(t, nil)
	a := e.connect(e.register("a"), hello(llmCaps, nil, nil))
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- e.hub.Close(ctx) }()
	if er := expect[protocol.Error](a); er.Code != protocol.ErrCodeShuttingDown {
		t.Fatalf("got %+v", er)
	}
	if code := a.closeStatus(); code != websocket.StatusServiceRestart {
		t.Fatalf("close %d, want 1012", code)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}
