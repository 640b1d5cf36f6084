// submit_cut_test.go: a client that hangs up on POST /v1/jobs once its body is sent, against the
// real hub process over real sockets: the job it made is offered, and its retry with the same
// Idempotency-Key names that job and makes no second one. It must not know the hub's internals:
// it sees only the wire, the job API and what a worker is offered.

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"studioworker/hub"
	"studioworker/protocol"
)

func TestSubmitCutAfterItsBodyIsOfferedAndItsRetryMakesNoSecondJob(t *testing.T) {
	p := startHubProcess(t, "--db", filepath.Join(t.TempDir(), "hub.db"), "--open-registration", "--admin-token", "cut-admin")
	c := &hub.Client{BaseURL: p.url, AdminToken: "cut-admin"}
	ctx := context.Background()
	creds, err := c.Register(ctx, "cut-worker", "any")
	if err != nil {
		t.Fatal(err)
	}
	w := connect(t, p.url, creds, protocol.ModelsPerKind{protocol.KindLLM: {"m1"}}, nil)

	const key = "client-retry-7"
	body := `{"kind":"llm","model":"m1","input":{"prompt":"cut"}}`
	addr := strings.TrimPrefix(p.url, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	// The whole request, then the close: the hub has everything it needs, and nobody to answer.
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer cut-admin\r\nContent-Type: application/json\r\n"+
		"Idempotency-Key: %s\r\nContent-Length: %d\r\n\r\n%s", protocol.PathJobs, addr, key, len(body), body)
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}

	o, ok := w.next().(protocol.Offer)
	if !ok {
		t.Fatalf("want the offer of the cut submit, got %+v", o)
	}
	id := o.Claim.JobID

	retry := func() string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, p.url+protocol.PathJobs, bytes.NewBufferString(body))
		req.Header.Set("Authorization", "Bearer cut-admin")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var created protocol.JobCreated
		if err := json.NewDecoder(resp.Body).Decode(&created); err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("retry: %d %v", resp.StatusCode, err)
		}
		return created.JobID
	}
	// While the job is offered, and again once it is completed (then it is read from the database).
	if got := retry(); got != id {
		t.Fatalf("the retry made job %s, the cut submit %s", got, id)
	}
	w.send(protocol.Accept{JobID: id})
	w.send(protocol.CompleteJSON{JobID: id, Result: protocol.Object(`{"text":"once"}`)})
	if a, ok := w.next().(protocol.CompleteAck); !ok || a.Status != protocol.AckStored {
		t.Fatalf("want complete_ack stored, got %+v", a)
	}
	waitStatus(t, c, id, protocol.JobCompleted)
	if got := retry(); got != id {
		t.Fatalf("the retry after completion made job %s, the cut submit %s", got, id)
	}
	jobs, err := c.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].JobID != id || jobs[0].Status != protocol.JobCompleted {
		t.Fatalf("want the one job %s, completed; the hub has %+v", id, jobs)
	}
}
