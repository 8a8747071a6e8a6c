package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/emulator/faults"
	"github.com/sandrun/sandrun/internal/session"
)

// refused measures what a burst of new sessions whose launches Cloud Run
// refuses (as at a quota) does to a warm session: the warm session's
// requests, while the burst waits for hosts, against the same requests
// before the burst. Launching is apart from handling requests, so the
// ratio should stay near 1.
func (r *runner) refused(ctx context.Context) error {
	burst, n := 1000, 30
	if r.cfg.Quick {
		burst, n = 250, 10
	}
	const warm = "bench-refused-warm"
	if _, _, err := r.exec(ctx, warm, "true"); err != nil { // the host starts
		return err
	}
	measure := func() ([]time.Duration, error) {
		var ds []time.Duration
		for range n {
			d, _, err := r.exec(ctx, warm, "true")
			if err != nil {
				return nil, err
			}
			ds = append(ds, d)
		}
		return ds, nil
	}
	before, err := measure()
	if err != nil {
		return err
	}
	bp50, bp99 := percentiles(before)
	r.add(Result{Name: "warm request, no launch refused", Unit: "ms", P50: bp50, P99: bp99, Samples: n})

	rule := faults.Rule{Service: faults.CloudRun, Method: "RunJob", Rate: 1, Code: "RESOURCE_EXHAUSTED"}
	if err := r.suite.Faults.Add(rule); err != nil {
		return err
	}
	defer r.suite.Faults.Clear(faults.CloudRun)
	run := uuid.NewString()[:6]
	ids := make([]string, burst)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-refused-%s-%04d", run, i)
	}
	start := time.Now()
	if err := r.sendEach(ctx, ids, func(id string) *api.Request {
		return &api.Request{RequestID: uuid.NewString(), SessionID: id, Op: api.OpExec, Command: "true"}
	}); err != nil {
		return err
	}
	published := time.Since(start)
	during, err := measure()
	if err != nil {
		return err
	}
	p50, p99 := percentiles(during)
	r.add(Result{Name: fmt.Sprintf("warm request, %d new sessions refused", burst), Unit: "ms", P50: p50, P99: p99, Samples: n,
		Floor: bp50, FloorName: "the same warm request before the burst",
		Note: fmt.Sprintf("every RunJob fails RESOURCE_EXHAUSTED; the burst's %d requests were published in %.1f s, then the warm requests ran while the dispatcher took them in and their launches were refused; p99 ratio %.2f",
			burst, published.Seconds(), p99/bp99)})

	// Once the dispatcher has taken the whole burst in, what is left is
	// the launches being retried and refused: apart from taking in the
	// burst's messages, this is what launching costs the warm session.
	store := session.NewStore(r.clients.Firestore, r.clients.Storage, session.Config{Bucket: r.sys.Bucket})
	for {
		waiting, err := store.WaitingForHost(ctx)
		if err != nil {
			return err
		}
		if len(waiting) >= burst {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	retrying, err := measure()
	if err != nil {
		return err
	}
	p50, p99 = percentiles(retrying)
	r.add(Result{Name: fmt.Sprintf("warm request, %d sessions waiting, launches retried", burst), Unit: "ms", P50: p50, P99: p99, Samples: n,
		Floor: bp50, FloorName: "the same warm request before the burst",
		Note: fmt.Sprintf("after all %d sessions were recorded waiting for a host, %.1f s after the publish began; their launches kept being retried and refused; p99 ratio %.2f",
			burst, time.Since(start).Seconds(), p99/bp99)})

	// The burst's sessions are destroyed, which answers their requests.
	return r.sendEach(ctx, ids, func(id string) *api.Request {
		return &api.Request{RequestID: uuid.NewString(), SessionID: id, Op: api.OpSessionDestroy}
	})
}

// sendEach publishes one request per session, 16 at a time, without
// waiting for completions.
func (r *runner) sendEach(ctx context.Context, ids []string, req func(id string) *api.Request) error {
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, id := range ids {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := r.client.Send(ctx, req(id)); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}
