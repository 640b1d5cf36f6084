// cluster_sweep.go: the rescuer. A replica that stopped writing that it lives is dead to the
// others: its queued jobs go back to the pool, its leases wait LeaseGrace for their workers to come
// back on any replica, and a lease whose grace has run out with no replica driving it is requeued
// (or failed at max_attempts) with the retry cool-off, as a single hub's grace timer would. One
// replica sweeps at a time (an advisory lock); any may. It must not know about sessions or frames.

package hub

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// pgSweepKey is the advisory lock ("StudioSw") a sweep holds for its transaction.
const pgSweepKey int64 = 0x53747564696f5377

// sweep runs one sweep if no other replica is running one; it returns how many jobs it moved.
func (h *Hub) sweep(ctx context.Context) (int, error) {
	moved := 0
	now := h.now()
	graceUntil := now.Add(h.cfg.LeaseGrace).UnixMilli()
	coolUntil := now.Add(h.cfg.RetryCoolOff).UnixMilli()
	maxAttempts := h.cfg.MaxAttempts
	err := h.db.do(ctx, func(tx *sql.Tx) error {
		moved = 0
		var got bool
		if err := tx.QueryRow(`SELECT pg_try_advisory_xact_lock($1)`, pgSweepKey).Scan(&got); err != nil || !got {
			return err
		}
		if _, err := tx.Exec(`DELETE FROM replicas WHERE seen_at < now() - make_interval(secs => $1)`, h.cfg.ReplicaDeadAfter.Seconds()); err != nil {
			return err
		}
		count := func(res sql.Result, err error) error {
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			moved += int(n)
			return nil
		}
		// Offers are never durable: a dead replica's queued (or offered) jobs are anyone's.
		if err := count(tx.Exec(`UPDATE jobs SET owner='' WHERE status='queued' AND owner<>''
			AND owner NOT IN (SELECT id FROM replicas)`)); err != nil {
			return err
		}
		// Its leases keep their worker for the grace, as after a disconnect.
		if err := count(tx.Exec(`UPDATE jobs SET owner='', grace_until_ms=$1 WHERE status='running' AND owner<>''
			AND owner NOT IN (SELECT id FROM replicas)`, graceUntil)); err != nil {
			return err
		}
		if _, err := tx.Exec(`UPDATE workers SET replica='' WHERE replica<>'' AND replica NOT IN (SELECT id FROM replicas)`); err != nil {
			return err
		}
		rows, err := tx.Query(`SELECT id, worker_id, attempts FROM jobs WHERE status='running' AND owner=''
			AND grace_until_ms > 0 AND grace_until_ms <= $1 FOR UPDATE`, now.UnixMilli())
		if err != nil {
			return err
		}
		type lapsed struct {
			id, worker string
			attempts   int
		}
		var out []lapsed
		for rows.Next() {
			var l lapsed
			if err := rows.Scan(&l.id, &l.worker, &l.attempts); err != nil {
				rows.Close()
				return err
			}
			out = append(out, l)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, l := range out {
			attempts := l.attempts + 1
			why := fmt.Sprintf("lease lost: worker %s did not come back within the grace", l.worker)
			status, holder := "queued", ""
			if attempts >= maxAttempts {
				status, holder = "failed", l.worker
				why = fmt.Sprintf("%s (attempt %d of %d)", why, attempts, maxAttempts)
			}
			if _, err := tx.Exec(`UPDATE jobs SET status=$1, worker_id=$2, attempts=$3, error=$4, grace_until_ms=0, updated_at=$5
				WHERE id=$6`, status, holder, attempts, why, fmtTime(now), l.id); err != nil {
				return err
			}
			if _, err := tx.Exec(`DELETE FROM job_marks WHERE job_id=$1 AND kind='decline'`, l.id); err != nil {
				return err
			}
			if status == "queued" {
				if _, err := tx.Exec(`INSERT INTO job_marks(job_id, worker_id, kind, until_ms, reason) VALUES($1, $2, 'cooloff', $3, 'lost')
					ON CONFLICT (job_id, worker_id, kind) DO UPDATE SET until_ms = EXCLUDED.until_ms`, l.id, l.worker, coolUntil); err != nil {
					return err
				}
			}
			moved++
		}
		// Marks that have passed keep nobody from anything.
		if _, err := tx.Exec(`DELETE FROM job_marks WHERE until_ms < $1`, now.Add(-time.Minute).UnixMilli()); err != nil {
			return err
		}
		if moved > 0 {
			return notify(tx, "wake")
		}
		return nil
	})
	return moved, err
}
