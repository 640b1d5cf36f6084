// replicas.go: the replicas figure — throughput and offer latency with 1, 2 and 3 studio-hub
// replicas on one PostgreSQL database, beside one hub on SQLite, in the same run. The PostgreSQL
// server is Debian's, started by internal/pgtest in the figure's folder. It must not know how the
// replicas share their jobs, only what a worker and an admin client see.

package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"studioworker/internal/pgtest"
)

// replicaSetup is one configuration of the figure: replicas hubs on the store.
type replicaSetup struct {
	store    string // "sqlite" or "postgres"
	replicas int
}

func runReplicas(ctx context.Context, e *env) (figureResult, error) {
	var res figureResult
	dir, err := e.dir("replicas")
	if err != nil {
		return res, err
	}
	pg, err := pgtest.Launch(dir)
	if err != nil {
		return res, fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer pg.Kill()
	setups := []replicaSetup{{"sqlite", 1}, {"postgres", 1}, {"postgres", 2}, {"postgres", 3}}
	var base, pg1 replicaFigures
	for i, s := range setups {
		f, err := measureReplicas(ctx, e, pg, filepath.Join(dir, fmt.Sprintf("%s-%d", s.store, s.replicas)), s)
		if err != nil {
			return res, fmt.Errorf("%d %s replicas: %w", s.replicas, s.store, err)
		}
		what := fmt.Sprintf("%d replica(s) on PostgreSQL", s.replicas)
		if s.store == "sqlite" {
			what = "one hub on SQLite (baseline)"
			base = f
		}
		key := fmt.Sprintf("replicas %s %d", s.store, s.replicas)
		res.detail(key+" jobs_per_s", f.rates)
		res.detail(key+" offer_ms", f.offer)
		tput := row{Figure: fmt.Sprintf("throughput, 8 workers × 8 slots, %s, median round", what), Key: key + " throughput", Value: f.rates.P50, Unit: "jobs/s"}
		offer := row{Figure: fmt.Sprintf("↳ offer latency p99 (POST → the worker starts it), %s", what), Key: key + " offer p99", Value: f.offer.P99, Unit: "ms"}
		if s.store == "postgres" && s.replicas == 1 {
			pg1 = f
		}
		if i > 0 {
			tput = tput.withBaseline("one hub on SQLite", base.rates.P50)
			offer = offer.withBaseline("one hub on SQLite", base.offer.P99)
			if s.replicas > 1 {
				offer = offer.withGoal("≤ 2× one hub's", f.offer.P99 <= 2*base.offer.P99)
			}
		}
		res.add(tput)
		res.add(offer)
		if s.store == "postgres" && s.replicas > 1 {
			// What replication itself costs: the same store, one replica against several.
			res.add(row{Figure: fmt.Sprintf("↳ the same p99 beside one replica on PostgreSQL, %s", what), Key: key + " offer p99 vs one replica",
				Value: f.offer.P99, Unit: "ms"}.withBaseline("one replica on PostgreSQL", pg1.offer.P99).
				withGoal("≤ 2× one replica's", f.offer.P99 <= 2*pg1.offer.P99))
		}
	}
	res.detail("jobs_per_round", e.size.replicaJobs)
	res.detail("offer_window_s", e.size.replicaOffers.Seconds())
	return res, nil
}

type replicaFigures struct {
	rates summary // jobs per second, per round
	offer summary // ms
}

// measureReplicas starts the setup's hubs, 8 workers of 8 slots spread over them, and measures
// rounds of zero-work jobs submitted through every replica in turn, then the latency from a POST
// (to each replica in turn) until a worker starts the job.
func measureReplicas(ctx context.Context, e *env, pg *pgtest.Server, dir string, s replicaSetup) (replicaFigures, error) {
	var out replicaFigures
	var db []string
	var url string
	if s.store == "postgres" {
		var err error
		if url, err = pg.CreateDatabase(); err != nil {
			return out, err
		}
		db = []string{"--db", url, "--data", filepath.Join(dir, "data")}
	}
	var hubs []*hubProc
	defer func() {
		for _, h := range hubs {
			h.stop()
		}
	}()
	for i := range s.replicas {
		addr, err := freeAddr()
		if err != nil {
			return out, err
		}
		hdir := filepath.Join(dir, fmt.Sprintf("hub-%d", i))
		args := db
		if args == nil {
			args = []string{"--db", filepath.Join(hdir, "hub.db")}
		}
		h, err := startHubOn(ctx, e, hdir, addr, args)
		if err != nil {
			return out, err
		}
		hubs = append(hubs, h)
	}
	const workers, slots = 8, 8
	var fleets []*fleet
	defer func() {
		for _, f := range fleets {
			f.stop()
		}
	}()
	for i, h := range hubs {
		n := workers / s.replicas
		if i < workers%s.replicas {
			n++
		}
		f, err := startFleet(ctx, filepath.Join(dir, fmt.Sprintf("workers-%d", i)), h.client(), h.URL(), n, slots)
		if err != nil {
			return out, err
		}
		fleets = append(fleets, f)
	}
	var pgdb *sql.DB
	if url != "" {
		var err error
		if pgdb, err = sql.Open("pgx", url); err != nil {
			return out, err
		}
		defer pgdb.Close()
	}
	completed := func() (int, error) {
		if pgdb == nil {
			m, err := hubs[0].metrics(ctx)
			if err != nil {
				return 0, err
			}
			c, _ := jobsDone(m)
			return c, nil
		}
		return pgCompleted(ctx, pgdb)
	}
	var rates []float64
	done := 0
	for range e.size.replicaRounds {
		for i, f := range fleets {
			if err := f.pause(ctx, true); err != nil {
				return out, err
			}
			if err := waitAllPaused(ctx, hubs[i].client(), len(f.workers), 10*time.Second); err != nil {
				return out, err
			}
		}
		n := e.size.replicaJobs
		if err := parallelDo(ctx, n, 16, func(k int) error {
			_, err := hubs[k%len(hubs)].client().Submit(ctx, zeroWorkJob())
			return err
		}); err != nil {
			return out, err
		}
		t0 := time.Now()
		for _, f := range fleets {
			if err := f.pause(ctx, false); err != nil {
				return out, err
			}
		}
		deadline := t0.Add(2 * time.Minute)
		for {
			c, err := completed()
			if err != nil {
				return out, err
			}
			if c >= done+n {
				break
			}
			if time.Now().After(deadline) {
				return out, fmt.Errorf("%d of %d jobs completed after 2 minutes", c-done, n)
			}
			select {
			case <-ctx.Done():
				return out, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
		rates = append(rates, float64(n)/time.Since(t0).Seconds())
		done += n
		for _, f := range fleets {
			f.probe.forget()
		}
	}
	out.rates = summarize(rates)

	// Offer latency on the idle fleet: 4 submitters, one job at a time each, the POSTs going to
	// each replica in turn, each timed until some worker (of any replica) starts the job.
	end := time.Now().Add(e.size.replicaOffers)
	var mu sync.Mutex
	var lat []time.Duration
	next := 0
	err := parallelDo(ctx, 4, 4, func(int) error {
		for time.Now().Before(end) {
			mu.Lock()
			h := hubs[next%len(hubs)]
			next++
			mu.Unlock()
			t0 := time.Now()
			id, err := h.client().Submit(ctx, zeroWorkJob())
			if err != nil {
				return err
			}
			at, err := startedAnywhere(ctx, fleets, id, 10*time.Second)
			if err != nil {
				return err
			}
			mu.Lock()
			lat = append(lat, at.Sub(t0))
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return out, err
	}
	out.offer = summarize(millis(lat))
	return out, nil
}

// pgCompleted counts the completed jobs of a replicas' database: every replica's metrics count
// only the jobs it drives.
func pgCompleted(ctx context.Context, db *sql.DB) (int, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM jobs WHERE status='completed'`).Scan(&n)
	return n, err
}

// startedAnywhere waits until a worker of any fleet starts job id.
func startedAnywhere(ctx context.Context, fleets []*fleet, id string, timeout time.Duration) (time.Time, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type got struct {
		at  time.Time
		err error
	}
	ch := make(chan got, len(fleets))
	for _, f := range fleets {
		go func() {
			at, err := f.probe.waitStarted(wctx, id, timeout)
			ch <- got{at, err}
		}()
	}
	var last error
	for range fleets {
		g := <-ch
		if g.err == nil {
			return g.at, nil
		}
		if !errors.Is(g.err, context.Canceled) {
			last = g.err
		}
	}
	return time.Time{}, last
}
