package reaper

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/session"
)

// TestReaperMetrics: a lost host, a lost publish and a session whose
// launches keep failing move the reaper's counters by what the passes did.
func TestReaperMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	t.Cleanup(func() { otel.SetMeterProvider(noop.NewMeterProvider()) })
	e := setup(t) // the reaper's instruments come from the provider above
	ctx := context.Background()

	// lost: its host's lease lapses while r1 runs; r2 waits for a new host.
	e.enqueue(t, "lost", "r1", "sleep 600")
	lease, err := e.store.Acquire(ctx, "lost", "exec-old", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.Start(ctx, lease, session.Item{RequestID: "r1"}); err != nil {
		t.Fatal(err)
	}
	e.enqueue(t, "lost", "r2", "true")
	// unpublished: its host recorded r3's completion and died before
	// publishing it.
	e.enqueue(t, "unpublished", "r3", "true")
	held, err := e.store.Acquire(ctx, "unpublished", "exec-u", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.Start(ctx, held, session.Item{RequestID: "r3"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Finish(ctx, held, time.Time{}, &api.Completion{RequestID: "r3", SessionID: "unpublished", Op: api.OpExec, Status: api.StatusOK}, nil, nil); err != nil {
		t.Fatal(err)
	}
	e.now = e.now.Add(11 * time.Second)
	if _, err := e.once(ctx); err != nil {
		t.Fatal(err)
	}
	// lost's new host takes it.
	if _, err := e.store.Acquire(ctx, "lost", "exec-lost", time.Hour); err != nil {
		t.Fatal(err)
	}

	// dying: every launch ends without taking the lease, until the reaper
	// gives up with LAUNCH_FAILED.
	e.enqueue(t, "dying", "r4", "true")
	passes := 1
	for rep := (Report{}); rep.LaunchFailed == 0; passes++ {
		if passes > DefaultMaxLaunchAttempts+2 {
			t.Fatal("the reaper never gave up on dying")
		}
		e.now = e.now.Add(session.DefaultLaunchTimeout + time.Second)
		if rep, err = e.once(ctx); err != nil {
			t.Fatal(err)
		}
	}

	got := collect(t, reader)
	want := map[string]map[string]int64{
		"sandrun.requests": {
			"answered_by=reaper,op=exec,outcome=HOST_LOST":     1,
			"answered_by=reaper,op=exec,outcome=LAUNCH_FAILED": 1,
		},
		"sandrun.reaper.hosts_lost":  {"": 1},
		"sandrun.reaper.republished": {"": 1},
		"sandrun.reaper.passes":      {"outcome=ok": int64(passes)},
		// lost's new host, then dying's relaunches (its first launch is
		// the one Enqueue claimed, which no dispatcher made here).
		"sandrun.host.launches": {"outcome=ok,pooled=false": int64(1 + DefaultMaxLaunchAttempts - 1)},
	}
	for name, series := range want {
		if !maps.Equal(got[name], series) {
			t.Errorf("%s = %v, want %v", name, got[name], series)
		}
	}
}

// collect reads the int64 sums the reader holds: name → attributes
// ("k=v,k=v", sorted) → value.
func collect(t *testing.T, reader sdkmetric.Reader) map[string]map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				var kv []string
				for _, a := range dp.Attributes.ToSlice() {
					kv = append(kv, fmt.Sprintf("%s=%s", a.Key, a.Value.Emit()))
				}
				slices.Sort(kv)
				if out[m.Name] == nil {
					out[m.Name] = map[string]int64{}
				}
				out[m.Name][strings.Join(kv, ",")] += dp.Value
			}
		}
	}
	return out
}
