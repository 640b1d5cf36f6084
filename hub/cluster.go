// cluster.go: a hub as one replica of several on one PostgreSQL database. Each replica drives, in
// memory, only the jobs it owns (jobs.owner): the ones it claimed for a worker connected to it,
// and the ones it took over because their worker or its result arrived here. Every write of an
// owned job is fenced on the owner, so a replica that lost a job can no longer change it; the
// others hear of it by NOTIFY and drop it. This file is the replica's life: its row in replicas,
// its listener, its tick (heartbeat, sweep, lost wake-ups). It must not know how jobs are matched
// to workers or what a frame says (cluster_jobs.go, cluster_sweep.go).

package hub

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"studioworker/internal/durable"
	"studioworker/protocol"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgChannel is the one NOTIFY channel the replicas share. Payloads are a verb and its words:
// "wake" (jobs to claim), "taken JOB REPLICA" (ownership moved), "cancel JOB WORKER", "session
// WORKER REPLICA GEN" (a worker connected to a replica: older sessions elsewhere are superseded),
// "revoke WORKER".
const pgChannel = "studio_hub"

// replicaTick is how often a replica writes that it lives, sweeps (if no other replica is
// sweeping), and looks for jobs to claim whether or not a wake-up was heard: NOTIFY is lost while a
// listener reconnects.
const replicaTick = time.Second

// errNotOwner is a write refused because another replica took the job over (or it was finished
// elsewhere) since this one loaded it: the job is dropped here, and whoever owns it now decides.
var errNotOwner = errors.New("hub: another replica owns this job now")

// cluster is the replica's own state. id is fixed for the process's life; a restarted hub is a
// new replica, and the sweep hands the old one's jobs back.
type cluster struct {
	id   string
	name string
	url  string
	// claims is the connection the scheduler claims jobs on, with synchronous_commit off for its
	// session (cluster_jobs.go claim). Only the scheduler loop touches it; leaveCluster closes it
	// once that loop has stopped.
	claims *sql.Conn
}

func newCluster(url string) *cluster {
	host, _ := os.Hostname()
	return &cluster{id: newID("r"), name: fmt.Sprintf("%s pid %d", host, os.Getpid()), url: url}
}

// startCluster writes the replica's row and starts its listener and its tick, both stopped by
// ctx (Hub.Close).
func (h *Hub) startCluster(ctx context.Context) error {
	c := h.cluster
	_, err := h.db.db.ExecContext(ctx, `INSERT INTO replicas(id, name, started_at, seen_at) VALUES($1, $2, $3, now())`,
		c.id, c.name, fmtTime(h.now()))
	if err != nil {
		return fmt.Errorf("hub: join the replicas: %w", err)
	}
	h.log.Info("joined the replicas of this database", "replica", c.id)
	h.loops.Add(2)
	go func() {
		defer h.loops.Done()
		h.listen(ctx)
	}()
	go func() {
		defer h.loops.Done()
		t := time.NewTicker(replicaTick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			h.clusterTick(ctx)
		}
	}()
	return nil
}

// leaveCluster removes the replica's row at a clean stop and gives its jobs back at once, instead
// of after replicaDeadAfter: its sessions are closed, so its leases wait for their workers.
func (h *Hub) leaveCluster() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c := h.cluster.claims; c != nil {
		_ = c.Close()
		h.cluster.claims = nil
	}
	if _, err := h.db.db.ExecContext(ctx, `DELETE FROM replicas WHERE id=$1`, h.cluster.id); err != nil {
		h.log.Warn("leave the replicas", "err", err)
		return
	}
	if n, err := h.sweep(ctx); err != nil {
		h.log.Warn("hand back this replica's jobs", "err", err)
	} else if n > 0 {
		h.log.Info("handed this replica's jobs back to the others", "jobs", n)
	}
}

// clusterTick: the replica says it lives (a row deleted by a sweep while it could not reach the
// database is written again), sweeps when no other replica is sweeping, and schedules.
func (h *Hub) clusterTick(ctx context.Context) {
	c := h.cluster
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := h.db.db.ExecContext(tctx, `INSERT INTO replicas(id, name, started_at, seen_at) VALUES($1, $2, $3, now())
		ON CONFLICT (id) DO UPDATE SET seen_at = now()`, c.id, c.name, fmtTime(h.now()))
	if err != nil {
		return // the store's keeper says the database is down; nothing else to do here
	}
	if _, err := h.sweep(tctx); err != nil && ctx.Err() == nil {
		h.log.Warn("sweep", "err", err)
	}
	if err := h.cleanReplicaTmp(tctx); err != nil && ctx.Err() == nil {
		h.log.Warn("clean the staging folders of dead replicas", "err", err)
	}
	h.kickScheduler()
}

// notify is a statement for a write's transaction: the replicas hear it once the write commits,
// never before.
func notify(tx *sql.Tx, words ...string) error {
	_, err := tx.Exec(`SELECT pg_notify($1, $2)`, pgChannel, strings.Join(words, " "))
	return err
}

// listen holds a connection of its own LISTENing on pgChannel, reconnecting while ctx lives.
func (h *Hub) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := h.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		h.log.Warn("lost the replicas' notifications; listening again in a second", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (h *Hub) listenOnce(ctx context.Context) error {
	cfg, err := pgConfig(h.cluster.url)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgChannel); err != nil {
		return err
	}
	// What was said while nobody listened is lost: look for work now.
	h.kickScheduler()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		h.heard(ctx, strings.Fields(n.Payload))
	}
}

// heard acts on one notification from any replica, this one's own included (each case is a
// no-op for the replica that sent it).
func (h *Hub) heard(ctx context.Context, words []string) {
	if len(words) == 0 {
		return
	}
	switch {
	case words[0] == "wake":
		h.kickScheduler()
	case words[0] == "taken" && len(words) == 3 && words[2] != h.cluster.id:
		// An open offer of it here is withdrawn; a run goes on, answered by the new owner.
		h.mu.Lock()
		if j := h.jobs[words[1]]; j != nil {
			h.dropJob(j, protocol.CancelCancelled, "")
		}
		h.mu.Unlock()
	case words[0] == "cancel" && len(words) == 3:
		h.mu.Lock()
		if j := h.jobs[words[1]]; j != nil && !j.status.Done() {
			h.dropJob(j, protocol.CancelCancelled, protocol.CancelCancelled)
		} else {
			h.sendTo(words[2], protocol.Cancel{JobID: words[1], Reason: protocol.CancelCancelled})
		}
		h.mu.Unlock()
	case words[0] == "session" && len(words) == 4 && words[2] != h.cluster.id:
		h.supersededElsewhere(words[1], words[3])
	case words[0] == "revoke" && len(words) == 2:
		h.revokedElsewhere(words[1])
	}
}

// cleanReplicaTmp removes the staging folders of replicas that are gone: what a killed replica was
// receiving when it died.
func (h *Hub) cleanReplicaTmp(ctx context.Context) error {
	base := filepath.Dir(h.dirs.tmp)
	ents, err := os.ReadDir(base)
	if err != nil {
		return fmt.Errorf("hub: clean %s: %w", base, err)
	}
	for _, e := range ents {
		name := e.Name()
		if name == h.cluster.id {
			continue
		}
		var one int
		err := h.db.db.QueryRowContext(ctx, `SELECT 1 FROM replicas WHERE id=$1`, name).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			if err := durable.RemoveAll(filepath.Join(base, name)); err != nil {
				return fmt.Errorf("hub: clean %s: %w", base, err)
			}
		} else if err != nil {
			return fmt.Errorf("hub: clean %s: %w", base, err)
		}
	}
	return nil
}
