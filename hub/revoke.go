// revoke.go ends a worker's access (contract §6 "Revocation"): its token stops working at once for
// the WebSocket and every worker HTTP call, a live session gets error{auth_failed} and close 4001
// (the worker's run then exits 3), and its registration is deleted. Its leases follow the usual
// disconnect path (grace, then requeue, with the retry cool-off keeping the job from it). It must
// not know how a worker reacts beyond what the contract says.

package hub

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"

	"github.com/coder/websocket"

	"studioworker/protocol"
)

// ErrNoSuchWorker is Revoke's answer for an id that is not registered.
var ErrNoSuchWorker = errors.New("hub: no such worker")

// Revoke ends worker id's access now and deletes its registration.
func (h *Hub) Revoke(ctx context.Context, id string) error {
	if err := h.dbDown(); err != nil {
		return err // refused before the session is closed: a revocation is done once it is written
	}
	h.loadWorker(ctx, id) // registered, or connected, through another replica
	h.mu.Lock()
	w := h.workers[id]
	if w == nil || w.revoked {
		h.mu.Unlock()
		return ErrNoSuchWorker
	}
	w.revoked = true
	w.tokenHash = [32]byte{} // no token hashes to all zeros: nothing authenticates as it again
	if w.conn != nil {
		w.conn.closeWith(errFrame(protocol.ErrCodeAuthFailed, "this worker was revoked by the Studio: register it again"),
			websocket.StatusCode(protocol.CloseAuthFailed), "revoked")
	}
	h.mu.Unlock()
	if err := h.db.do(context.WithoutCancel(ctx), func(tx *sql.Tx) error {
		if _, err := tx.Exec(`DELETE FROM workers WHERE id=$1`, id); err != nil {
			return err
		}
		if h.cluster != nil {
			return notify(tx, "revoke", id) // its session may be on another replica
		}
		return nil
	}); err != nil {
		return fmt.Errorf("hub: revoke %s: %w", id, err)
	}
	h.log.Info("worker revoked", "worker_id", id)
	return nil
}

func (h *Hub) handleRevoke(w http.ResponseWriter, r *http.Request) {
	switch err := h.Revoke(r.Context(), r.PathValue("id")); {
	case errors.Is(err, ErrNoSuchWorker):
		writeError(w, http.StatusNotFound, "no such worker")
	case err != nil:
		h.log.Error("revoke worker", "err", err)
		h.writeStoreError(w, err, "revoke the worker")
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
