// cluster_workers.go: workers registered on another replica of the same PostgreSQL database, read
// into this hub's memory the first time they knock. On SQLite there is one hub and every worker is
// loaded at Open, so nothing here runs. It must not know about jobs or sessions.

package hub

import (
	"context"
	"database/sql"
	"errors"
)

// loadWorker reads worker id from the database when this hub does not know it yet and shares its
// database with other replicas (a worker registered through another one). A wrong id costs one
// indexed read and is then refused as unknown, as on a single hub.
func (h *Hub) loadWorker(ctx context.Context, id string) {
	if h.db.dialect != "postgres" || id == "" {
		return
	}
	h.mu.Lock()
	_, known := h.workers[id]
	h.mu.Unlock()
	if known {
		return
	}
	var name string
	var hash []byte
	err := h.db.db.QueryRowContext(ctx, `SELECT name, token_hash FROM workers WHERE id=$1`, id).Scan(&name, &hash)
	if err != nil {
		if !errors.Is(err, sql.ErrNoRows) {
			h.log.Warn("read a worker registered elsewhere", "worker_id", id, "err", err)
		}
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, known := h.workers[id]; !known {
		w := &worker{id: id, name: name, held: map[string]*job{}}
		copy(w.tokenHash[:], hash)
		h.workers[id] = w
	}
}
