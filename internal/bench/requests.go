package bench

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/sandrun/sandrun/api"
)

// megabyteCommand prints 1 MB.
const megabyteCommand = `head -c 1000000 /dev/zero | tr '\0' x`

// exec runs a command in a session and returns the time from publish to
// completion received.
func (e *environment) exec(ctx context.Context, sessionID, command string) (time.Duration, *api.Completion, error) {
	req := &api.Request{RequestID: uuid.NewString(), SessionID: sessionID, Op: api.OpExec, Command: command}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	start := time.Now()
	done, err := e.client.Do(ctx, req)
	if err != nil {
		return 0, nil, err
	}
	d := time.Since(start)
	if done.Status != api.StatusOK || done.ExitCode != 0 {
		return 0, nil, fmt.Errorf("%q in session %s: %s %+v exit %d", command, sessionID, done.Status, done.Error, done.ExitCode)
	}
	return d, done, nil
}

func (r *runner) iterations() int {
	if r.cfg.Quick {
		return 30
	}
	return 200
}

// warm measures requests to a session that already has a host.
func (r *runner) warm(ctx context.Context) error {
	n := r.iterations()
	plain, err := r.pubsubFloor(ctx, n, false)
	if err != nil {
		return err
	}
	p50, p99 := percentiles(plain)
	r.add(Result{Name: "floor: two Pub/Sub hops, unordered", Unit: "ms", P50: p50, P99: p99, Samples: len(plain)})
	hops, err := r.pubsubFloor(ctx, n, true)
	if err != nil {
		return err
	}
	hopP50, hopP99 := percentiles(hops)
	r.add(Result{Name: "floor: two Pub/Sub hops, first one ordered", Unit: "ms", P50: hopP50, P99: hopP99, Samples: len(hops),
		Note: "as sandrun's requests are: one ordering key per session, on an ordered subscription"})
	const s = "bench-warm"
	if _, _, err := r.exec(ctx, s, "true"); err != nil { // the host starts
		return err
	}
	for _, c := range []struct{ name, command string }{{"true", "true"}, {"1 MB of output", megabyteCommand}} {
		sh, err := shellFloor(ctx, c.command, n)
		if err != nil {
			return err
		}
		shP50, _ := percentiles(sh)
		var ds, toAccept, queued, ran, toReceive []time.Duration
		for range n {
			sent := time.Now()
			d, done, err := r.exec(ctx, s, c.command)
			if err != nil {
				return err
			}
			received := sent.Add(d)
			ds = append(ds, d)
			// Where the time went, by the clocks of this one machine.
			toAccept = append(toAccept, done.Timing.AcceptedAt.Sub(sent))
			queued = append(queued, seconds(done.Timing.QueueSeconds))
			ran = append(ran, seconds(done.Timing.RunSeconds))
			toReceive = append(toReceive, received.Sub(done.Timing.FinishedAt))
		}
		p50, p99 := percentiles(ds)
		a, _ := percentiles(toAccept)
		q, _ := percentiles(queued)
		rn, _ := percentiles(ran)
		rc, _ := percentiles(toReceive)
		r.add(Result{Name: "warm request: " + c.name, Unit: "ms", P50: p50, P99: p99, Samples: n,
			Floor: hopP50 + shP50, FloorName: fmt.Sprintf("two Pub/Sub hops, ordered (%.2f) + sh -c (%.2f)", hopP50, shP50),
			Note: fmt.Sprintf("p50s: publish to accepted %.1f ms, accepted to started %.1f, run %.1f, finished to received %.1f", a, q, rn, rc)})
	}
	return nil
}

// cold measures requests to new sessions, each of which gets a host.
func (r *runner) cold(ctx context.Context) error {
	n := 20
	if r.cfg.Quick {
		n = 5
	}
	var ds, launch []time.Duration
	for i := range n {
		d, done, err := r.exec(ctx, fmt.Sprintf("bench-cold-%03d", i), "true")
		if err != nil {
			return err
		}
		ds = append(ds, d)
		launch = append(launch, time.Duration(done.Timing.LaunchSeconds*float64(time.Second)))
	}
	p50, p99 := percentiles(ds)
	lp50, lp99 := percentiles(launch)
	warmP50 := 0.0
	for _, res := range r.report.Results {
		if res.Name == "warm request: true" {
			warmP50 = res.P50
		}
	}
	note := fmt.Sprintf("starting the host (launch requested to lease taken): p50 %.1f ms, p99 %.1f ms", lp50, lp99)
	if r.cfg.StartDelay > 0 {
		note += fmt.Sprintf("; every execution waits a simulated cold start of %v", r.cfg.StartDelay)
	}
	r.add(Result{Name: "new-session request", Unit: "ms", P50: p50, P99: p99, Samples: n,
		Floor: warmP50, FloorName: "a warm request (true)", Note: note})
	return nil
}

// throughput measures completed requests per second across many sessions,
// each with one request in flight at a time, against two floors with as
// many round trips in flight: the echo alone (two ordered Pub/Sub hops,
// the floor of the figures before issue 18's cuts, kept so that they stay
// comparable), and the echo doing between its hops what every request
// needs, the command run and its outcome recorded (see commandRecord). The
// second is the headline: the same work without sandrun.
func (r *runner) throughput(ctx context.Context) error {
	sessions := []int{1, 10, 100}
	d := 10 * time.Second
	if r.cfg.Quick {
		sessions, d = []int{1, 10}, 3*time.Second
	}
	if len(r.cfg.ThroughputSessions) > 0 {
		sessions = r.cfg.ThroughputSessions
	}
	work, cleanup, err := r.newFloorWork("true")
	if err != nil {
		return err
	}
	defer cleanup()
	for _, k := range sessions {
		hops, hopsCPU, err := r.pubsubThroughput(ctx, k, d, nil)
		if err != nil {
			return err
		}
		hopsName := fmt.Sprintf("two Pub/Sub hops, ordered, %d senders", k)
		r.add(Result{Name: fmt.Sprintf("floor: throughput, %d sessions, Pub/Sub hops only", k), Unit: "req/s", Value: hops,
			Note: fmt.Sprintf("%s, nothing between them; CPU per request (local cloud and echo) %.1f ms", hopsName, ms(hopsCPU))})
		floor, floorCPU, err := r.pubsubThroughput(ctx, k, d, work.do)
		if err != nil {
			return err
		}
		floorName := fmt.Sprintf("two Pub/Sub hops, ordered, + bash -c true + one Firestore create, %d senders", k)
		r.add(Result{Name: fmt.Sprintf("floor: throughput, %d sessions, the same work", k), Unit: "req/s", Value: floor,
			Note: fmt.Sprintf("%s: between the hops, the command run as a shell runs it and the request recorded once; CPU per request (local cloud, echo and bash) %.1f ms", floorName, ms(floorCPU))})
		ids := make([]string, k)
		var wg sync.WaitGroup
		errs := make(chan error, k)
		for i := range ids {
			ids[i] = fmt.Sprintf("bench-tput-%d-%03d", k, i)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, _, err := r.exec(ctx, ids[i], "true"); err != nil { // hosts start first
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return err
		}
		var done, failed atomic.Int64
		rctx, cancel := context.WithTimeout(ctx, d)
		cpu0 := r.cpuNow()
		start := time.Now()
		for _, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for rctx.Err() == nil {
					if _, _, err := r.exec(rctx, id, "true"); err == nil {
						done.Add(1)
					} else if rctx.Err() == nil {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		cancel()
		elapsed := time.Since(start)
		rate := float64(done.Load()) / elapsed.Seconds()
		cpu1 := r.cpuNow()
		own0, total0 := cpu0.hosts()
		own1, total1 := cpu1.hosts()
		hostsOwn, hostsCPU, selfCPU := own1-own0, total1-total0, cpu1.self-cpu0.self
		res := Result{Name: fmt.Sprintf("throughput, %d sessions", k), Unit: "req/s", Value: rate,
			Floor: floor, FloorName: floorName}
		// Where the machine's CPU went: the hosts (and the commands they
		// ran), and this process (the local cloud, dispatcher, reaper and
		// client).
		res.Note = fmt.Sprintf("CPU per request: hosts %.2f ms, local cloud + dispatcher + reaper + client %.2f ms; %.0f%% of the machine's %d CPUs busy with them",
			ms(hostsCPU)/float64(done.Load()), ms(selfCPU)/float64(done.Load()),
			100*(hostsCPU+selfCPU).Seconds()/elapsed.Seconds()/float64(runtime.NumCPU()), runtime.NumCPU())
		if failed.Load() > 0 {
			res.Note += fmt.Sprintf("; %d requests failed", failed.Load())
		}
		// Of the hosts' CPU, the host processes' own, without the commands.
		res.Note += fmt.Sprintf("; of the hosts' CPU per request, the host processes' own %.2f ms", ms(hostsOwn)/float64(done.Load()))
		r.add(res)
		r.add(Result{Name: fmt.Sprintf("throughput, %d sessions, against the hops only", k), Unit: "req/s", Value: rate,
			Floor: hops, FloorName: hopsName, Note: "the ratio of the figures before issue 18's cuts"})
	}
	return nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
