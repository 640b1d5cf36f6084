// revoke_test.go: a revoked worker's token stops working and its live session ends with 4001.

package hub

import (
	"context"
	"net/http"
	"testing"

	"github.com/coder/websocket"

	"studioworker/protocol"
)

// TestRevokeEndsTheSessionAndTheToken: DELETE /v1/workers/{id} sends error{auth_failed} and
// closes with 4001, refuses the token from then on, and drops the worker from the list.
func TestRevokeEndsTheSessionAndTheToken(t *testing.T) {
	e := startHub(t, nil)
	creds := e.register("to be revoked")
	a := e.connect(creds, hello(llmCaps, nil, nil))
	req, err := http.NewRequest(http.MethodDelete, e.srv.URL+"/v1/workers/"+creds.WorkerID, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.hub.AdminToken())
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %s", resp.Status)
	}
	if f := expect[protocol.Error](a); f.Code != protocol.ErrCodeAuthFailed {
		t.Errorf("error frame %+v, want auth_failed", f)
	}
	if code := a.closeStatus(); code != websocket.StatusCode(protocol.CloseAuthFailed) {
		t.Errorf("closed with %d, want 4001", code)
	}
	if _, resp, err := e.dial(creds); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the revoked token dialled again: err %v, resp %v", err, resp)
	}
	for _, w := range e.hub.Workers() {
		if w.WorkerID == creds.WorkerID {
			t.Errorf("a revoked worker is still listed: %+v", w)
		}
	}
	if err := e.hub.Revoke(context.Background(), creds.WorkerID); err != ErrNoSuchWorker {
		t.Errorf("a second revoke: %v, want ErrNoSuchWorker", err)
	}
}
