// recovery.go: rebuilding the hub's memory from the database at Open, and removing the files a
// crash can leave behind. It runs before the scheduler loop and before any session, which is why
// it takes no lock. A job that was running keeps its lease for LeaseGrace, as if its worker had
// just disconnected, so a worker that outlived the hub reclaims it in its hello; an open offer was
// never durable, so it is simply queued again. It must not know about sessions or the HTTP API:
// nothing here runs after Open.

package hub

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"studioworker/internal/durable"
	"studioworker/protocol"
)

// load reads the workers, then the unfinished jobs in seq order so that each queue comes back
// oldest first. A running job whose worker is no longer registered has nobody to wait for: it is
// queued again at once.
func (h *Hub) load(ctx context.Context) error {
	db := h.db.db
	rows, err := db.QueryContext(ctx, `SELECT id, name, token_hash, last_seen FROM workers`)
	if err != nil {
		return fmt.Errorf("hub: load workers: %w", err)
	}
	for rows.Next() {
		var id, name, lastSeen string
		var hash []byte
		if err := rows.Scan(&id, &name, &hash, &lastSeen); err != nil {
			rows.Close()
			return fmt.Errorf("hub: load workers: %w", err)
		}
		w := &worker{id: id, name: name, lastSeen: parseTime(lastSeen), held: map[string]*job{}}
		copy(w.tokenHash[:], hash)
		h.workers[id] = w
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("hub: load workers: %w", err)
	}

	if h.cluster != nil {
		// A replica loads no jobs: it claims them as its workers have room, and takes over the
		// ones its workers bring back.
		return nil
	}
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM jobs`).Scan(&h.nextSeq); err != nil {
		return fmt.Errorf("hub: load jobs: %w", err)
	}
	// Counting finished jobs once at startup keeps the jobs-by-status gauge exact without a
	// query per scrape.
	crows, err := db.QueryContext(ctx, `SELECT status, COUNT(*) FROM jobs WHERE status IN ('completed','failed','cancelled') GROUP BY status`)
	if err != nil {
		return fmt.Errorf("hub: count jobs: %w", err)
	}
	for crows.Next() {
		var s string
		var n int64
		if err := crows.Scan(&s, &n); err != nil {
			crows.Close()
			return fmt.Errorf("hub: count jobs: %w", err)
		}
		h.met.jobStatus(protocol.JobStatus(s), n)
	}
	crows.Close()

	jrows, err := db.QueryContext(ctx, `SELECT id, seq, kind, model, vram_gb, input, input_file, input_type, status,
		worker_id, attempts, accepted_by, error, created_at FROM jobs WHERE status IN ('queued','offered','running') ORDER BY seq`)
	if err != nil {
		return fmt.Errorf("hub: load jobs: %w", err)
	}
	defer jrows.Close()
	now := h.now()
	for jrows.Next() {
		j := &job{}
		var kind, status, accepted, created, input string
		if err := jrows.Scan(&j.id, &j.seq, &kind, &j.model, &j.vram, &input, &j.inputFile, &j.inputType, &status,
			&j.holder, &j.attempts, &accepted, &j.errText, &created); err != nil {
			return fmt.Errorf("hub: load jobs: %w", err)
		}
		j.kind, j.input, j.created = protocol.Kind(kind), json.RawMessage(input), parseTime(created)
		if accepted != "" {
			j.acceptedBy = strings.Split(accepted, ",")
		}
		h.jobs[j.id] = j
		holder := j.holder
		j.holder = ""
		if protocol.JobStatus(status) == protocol.JobRunning && h.workers[holder] != nil {
			h.setStatus(j, protocol.JobRunning)
			h.setHolder(j, holder)
			h.startGrace(j, now)
			continue
		}
		h.enqueueJob(j)
	}
	return jrows.Err()
}

// cleanFiles removes what a crash can leave behind: partial uploads in tmp/, and complete files
// that no committed row points to (a crash between the rename and the commit).
func (h *Hub) cleanFiles(ctx context.Context) error {
	ents, err := os.ReadDir(h.dirs.tmp)
	if err != nil {
		return fmt.Errorf("hub: clean %s: %w", h.dirs.tmp, err)
	}
	for _, e := range ents {
		if err := durable.RemoveAll(filepath.Join(h.dirs.tmp, e.Name())); err != nil {
			return fmt.Errorf("hub: clean %s: %w", h.dirs.tmp, err)
		}
	}
	if h.cluster != nil {
		// Other replicas may be placing a file whose row is not committed yet: only their own
		// staging folders are known to be dead, once their replica's row is gone.
		return h.cleanReplicaTmp(ctx)
	}
	for _, c := range []struct {
		dir, query string
	}{
		{h.dirs.results, `SELECT 1 FROM jobs WHERE id=$1 AND result_file=$2`},
		{h.dirs.inputs, `SELECT 1 FROM jobs WHERE id=$1 AND input_file=$2 AND status IN ('queued','offered','running')`},
	} {
		ents, err := os.ReadDir(c.dir)
		if err != nil {
			return fmt.Errorf("hub: clean %s: %w", c.dir, err)
		}
		for _, e := range ents {
			id, _, _ := strings.Cut(e.Name(), ".")
			var one int
			err := h.db.db.QueryRowContext(ctx, c.query, id, e.Name()).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				h.log.Info("removing a file no job refers to", "file", filepath.Join(c.dir, e.Name()))
				if err := os.Remove(filepath.Join(c.dir, e.Name())); err != nil {
					return fmt.Errorf("hub: clean %s: %w", c.dir, err)
				}
			} else if err != nil {
				return fmt.Errorf("hub: clean %s: %w", c.dir, err)
			}
		}
	}
	return nil
}
