// api_workers.go: the admin view of workers: the list with their live state, and the log entries
// they shipped. It only reads: it must not know about sessions beyond what worker.info reports.

package hub

import (
	"net/http"
	"slices"
	"strings"

	"studioworker/protocol"
)

// Workers lists the registered workers, connected ones first, then by name.
func (h *Hub) Workers() []protocol.WorkerInfo {
	h.mu.Lock()
	out := make([]protocol.WorkerInfo, 0, len(h.workers))
	for _, w := range h.workers {
		if !w.revoked {
			out = append(out, w.info())
		}
	}
	h.mu.Unlock()
	slices.SortFunc(out, func(a, b protocol.WorkerInfo) int {
		if a.Connected != b.Connected {
			if a.Connected {
				return -1
			}
			return 1
		}
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.WorkerID, b.WorkerID)
	})
	return out
}

func (h *Hub) handleWorkers(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, protocol.List[protocol.WorkerInfo](h.Workers()))
}

func (h *Hub) handleLogs(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	id := r.PathValue("id")
	h.mu.Lock()
	known := h.workers[id] != nil
	h.mu.Unlock()
	if !known {
		writeError(w, http.StatusNotFound, "no such worker")
		return
	}
	rows, err := h.db.db.QueryContext(r.Context(), `SELECT ts, level, source, message, job_id FROM worker_logs
		WHERE worker_id=$1 ORDER BY id DESC LIMIT $2`, id, limit)
	if err != nil {
		h.log.Error("read logs", "err", err)
		h.writeStoreError(w, err, "read the logs")
		return
	}
	defer rows.Close()
	out := protocol.List[protocol.LogEntry]{}
	for rows.Next() {
		var e protocol.LogEntry
		var ts, level string
		if err := rows.Scan(&ts, &level, &e.Source, &e.Message, &e.JobID); err != nil {
			writeError(w, http.StatusInternalServerError, "could not read the logs")
			return
		}
		e.TS, e.Level = parseTime(ts), protocol.LogLevel(level)
		out = append(out, e)
	}
	slices.Reverse(out)
	writeJSON(w, http.StatusOK, out)
}
