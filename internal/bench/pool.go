package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sandrun/sandrun/internal/pool"
	"github.com/sandrun/sandrun/internal/session"
)

// DefaultPoolStartDelay is the cold start the warm pool measurement
// simulates.
const DefaultPoolStartDelay = 5 * time.Second

// benchPool is the pool the measurement runs with: a few idle hosts,
// growing with the arrivals.
var benchPool = pool.Policy{Min: 2, Target: 4, Max: 24}

// pool measures new sessions arriving at a steady rate on a system whose
// every execution waits a simulated cold start, once with a warm pool and
// once without, each on a fresh system of its own. The floor of the pooled
// figure is a warm request on the same system.
func (r *runner) pool(ctx context.Context) error {
	delay := r.cfg.PoolStartDelay
	if delay <= 0 {
		delay = DefaultPoolStartDelay
	}
	// A warm-up of arrivals, not measured, lets the pool grow to the
	// arrival rate; then the measured ones.
	warmup, sessions, every := 20, 40, 500*time.Millisecond
	if r.cfg.Quick {
		warmup, sessions = 12, 12
	}
	for _, withPool := range []bool{true, false} {
		policy, name := pool.Policy{}, "new-session request, no pool"
		if withPool {
			policy, name = benchPool, "new-session request, warm pool"
		}
		env, err := startEnvironment(ctx, r.cfg, envSpec{StartDelay: delay, Pool: policy})
		if err != nil {
			return err
		}
		err = r.poolRun(ctx, env, name, withPool, delay, warmup, sessions, every)
		env.close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) poolRun(ctx context.Context, env *environment, name string, withPool bool, delay time.Duration, warmup, sessions int, every time.Duration) error {
	// A warm request on this system is the floor: a session's host, once
	// up, serves at the speed the pool aims for.
	var warmP50 float64
	if withPool {
		if err := waitIdle(ctx, env, benchPool.Min); err != nil {
			return err
		}
		const s = "bench-pool-warm"
		if _, _, err := env.exec(ctx, s, "true"); err != nil {
			return err
		}
		var ds []time.Duration
		for range 30 {
			d, _, err := env.exec(ctx, s, "true")
			if err != nil {
				return err
			}
			ds = append(ds, d)
		}
		var p99 float64
		warmP50, p99 = percentiles(ds)
		r.add(Result{Name: "warm request, warm-pool system", Unit: "ms", P50: warmP50, P99: p99, Samples: len(ds),
			Note: "the floor of the pooled new-session figure, on the same system"})
	}
	// New sessions arrive at a steady rate, each with one request.
	ds, hits, err := arrive(ctx, env, "bench-new", []phase{{warmup, every, false}, {sessions, every, true}})
	if err != nil {
		return err
	}
	p50, p99 := percentiles(ds)
	rate := time.Second / every
	res := Result{Name: name, Unit: "ms", P50: p50, P99: p99, Samples: len(ds)}
	note := fmt.Sprintf("%d new sessions after %d of warm-up, %d a second, every execution waiting a simulated %v cold start; pool hit rate %.0f%% (%d of %d)",
		len(ds), warmup, rate, delay, 100*float64(hits)/float64(len(ds)), hits, len(ds))
	if withPool {
		res.Floor, res.FloorName = warmP50, "a warm request on the same system"
		note += fmt.Sprintf("; pool min %d, target %d, max %d", benchPool.Min, benchPool.Target, benchPool.Max)
	} else {
		res.Floor, res.FloorName = float64(delay.Milliseconds()), "the simulated cold start"
	}
	res.Note = note
	r.add(res)
	return nil
}

// waitIdle waits until the pool holds n idle hosts.
func waitIdle(ctx context.Context, env *environment, n int) error {
	store := session.NewStore(env.clients.Firestore, env.clients.Storage, session.Config{Bucket: env.sys.Bucket})
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		members, err := store.PoolMembers(ctx)
		if err != nil {
			return err
		}
		idle := 0
		for _, m := range members {
			if m.Status == session.MemberIdle && m.Expires.After(time.Now()) {
				idle++
			}
		}
		if idle >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the pool did not reach %d idle hosts (has %d): %w", n, idle, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// phase is n new sessions arriving one every every; those of a measured
// phase are counted.
type phase struct {
	n        int
	every    time.Duration
	measured bool
}

// arrive starts new sessions (named prefix-NNN), each with one request, on
// the schedule the phases make, and returns the latencies of the measured
// ones and how many of those were pool hits.
func arrive(ctx context.Context, env *environment, prefix string, phases []phase) ([]time.Duration, int, error) {
	var mu sync.Mutex
	var ds []time.Duration
	hits := 0
	var firstErr error
	var wg sync.WaitGroup
	i := 0
	for _, ph := range phases {
		tick := time.NewTicker(ph.every)
		for k := range ph.n {
			if k > 0 || i > 0 {
				<-tick.C
			}
			wg.Add(1)
			go func(id string, measured bool) {
				defer wg.Done()
				d, done, err := env.exec(ctx, id, "true")
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					firstErr = err
					return
				}
				if !measured {
					return
				}
				ds = append(ds, d)
				if done.PoolHit {
					hits++
				}
			}(fmt.Sprintf("%s-%03d", prefix, i), ph.measured)
			i++
		}
		tick.Stop()
	}
	wg.Wait()
	return ds, hits, firstErr
}

// burstPeak is the pool's peak in the burst measurement's second run: a
// burst at four times the recent rate is 1 + 3, and 4 leaves a margin for
// the arrivals the rate estimate lags behind.
const burstPeak = 4

// burst measures the pool against a burst: new sessions at one a second for
// two minutes (30 s with --quick), then 20 at four a second, every execution
// waiting the simulated cold start; once with the pool's default peak and
// once with burstPeak, each on a fresh system. The figure is the burst's
// hit rate.
func (r *runner) burst(ctx context.Context) error {
	delay := r.cfg.PoolStartDelay
	if delay <= 0 {
		delay = DefaultPoolStartDelay
	}
	steady := 120
	if r.cfg.Quick {
		steady = 30
	}
	for _, peak := range []float64{0, burstPeak} {
		policy := benchPool
		policy.Peak = peak
		name := "burst: pool hit rate, default peak"
		if peak > 0 {
			name = fmt.Sprintf("burst: pool hit rate, peak %g", peak)
		}
		if err := r.burstRun(ctx, name, policy, delay, steady); err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) burstRun(ctx context.Context, name string, policy pool.Policy, delay time.Duration, steady int) error {
	env, err := startEnvironment(ctx, r.cfg, envSpec{StartDelay: delay, Pool: policy})
	if err != nil {
		return err
	}
	defer env.close()
	if err := waitIdle(ctx, env, policy.Min); err != nil {
		return err
	}
	const burst = 20
	ds, hits, err := arrive(ctx, env, "bench-burst", []phase{{steady, time.Second, false}, {burst, 250 * time.Millisecond, true}})
	if err != nil {
		return err
	}
	p50, p99 := percentiles(ds)
	r.add(Result{Name: name, Unit: "%", Value: 100 * float64(hits) / float64(len(ds)), Samples: len(ds),
		Note: fmt.Sprintf("%d new sessions at 4 a second after %d at 1 a second, every execution waiting a simulated %v cold start; %d of %d were pool hits; their latency p50 %.1f ms, p99 %.1f ms; pool min %d, target %d, max %d, peak %g (0: the default)",
			burst, steady, delay, hits, len(ds), p50, p99, policy.Min, policy.Target, policy.Max, policy.Peak)})
	return nil
}
