package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/emulator/calls"
	"github.com/sandrun/sandrun/internal/pool"
	"github.com/sandrun/sandrun/internal/procfs"
)

// Counted is what one kind of request costs, read from the local cloud's
// record of every call (see critical.go for what belongs to a request and
// what its critical path is).
type Counted struct {
	Kind    string `json:"kind"`
	Samples int    `json:"samples"`
	// Path is the critical path seen most often, PathSeen in how many
	// samples; SerialRPCs its RPCs (by service) and PubSubHops its Pub/Sub
	// deliveries.
	Path            []string       `json:"path"`
	PathSeen        int            `json:"path_seen"`
	SerialRPCs      int            `json:"serial_rpcs"`
	SerialByService map[string]int `json:"serial_by_service"`
	PubSubHops      int            `json:"pubsub_hops"`
	PathBroken      int            `json:"path_broken,omitempty"`
	// SerialLow and SerialHigh are the fewest and most serial RPCs of any
	// sample's path.
	SerialLow         int   `json:"serial_low"`
	SerialHigh        int   `json:"serial_high"`
	PerRequest        Tally `json:"per_request"`
	RPCsLow, RPCsHigh int   `json:"-"`
	// CPU per request in milliseconds: this process (the dispatcher, the
	// reaper, the local cloud and the backend's client), the hosts, and
	// what the hosts ran (their reaped children).
	CPUSandrun, CPUHost, CPUCommand float64
}

// sample is one request's calls and CPU.
type sample struct {
	calls                  []calls.Call
	chain                  []calls.Call
	steps                  []string // the chain's calls as "program: service Method"
	chainErr               error
	tally                  Tally
	sandrun, host, command time.Duration
	completion             *api.Completion
}

// cpuSnapshot is the CPU this process and each running execution's tasks
// (and their reaped children) have used so far.
type cpuSnapshot struct {
	self       time.Duration
	executions map[string][2]time.Duration // own, children
}

func (e *environment) cpuNow() cpuSnapshot {
	snap := cpuSnapshot{executions: map[string][2]time.Duration{}}
	snap.self, _ = procfs.CPUTime(os.Getpid(), false)
	for _, execution := range e.suite.CloudRun.RunningExecutions() {
		var t [2]time.Duration
		for _, pid := range e.suite.CloudRun.TaskPIDs(execution) {
			own, err1 := procfs.CPUTime(pid, false)
			all, err2 := procfs.CPUTime(pid, true)
			if err1 == nil && err2 == nil {
				t[0] += own
				t[1] += all - own
			}
		}
		snap.executions[execution] = t
	}
	return snap
}

// hosts sums the CPU of the running executions' tasks: own, the host
// processes' alone, and total, with what they ran (children's time counts
// once a host has reaped them).
func (s cpuSnapshot) hosts() (own, total time.Duration) {
	for _, t := range s.executions {
		own += t[0]
		total += t[0] + t[1]
	}
	return own, total
}

// since returns the CPU used since earlier by this process and by the tasks
// of execution (its full name, or the last segment of it, as a host names
// it in its completions; a host that started meanwhile counts from zero).
func (s cpuSnapshot) since(earlier cpuSnapshot, execution string) (self, host, children time.Duration) {
	find := func(m map[string][2]time.Duration) [2]time.Duration {
		for name, t := range m {
			if execution != "" && (name == execution || strings.HasSuffix(name, "/"+execution)) {
				return t
			}
		}
		return [2]time.Duration{}
	}
	now, before := find(s.executions), find(earlier.executions)
	return s.self - earlier.self, now[0] - before[0], now[1] - before[1]
}

// countOne sends one request alone, waits settle after its completion for
// what it set off, and returns its calls and critical path.
func (e *environment) countOne(ctx context.Context, sessionID, command string, settle time.Duration) (sample, error) {
	cpu0 := e.cpuNow()
	e.suite.Calls.Keep()
	_, done, err := e.exec(ctx, sessionID, command)
	if err != nil {
		e.suite.Calls.Stop()
		return sample{}, err
	}
	time.Sleep(settle) // a bench: what the request set off runs meanwhile
	all := e.suite.Calls.Stop()
	s := sample{completion: done}
	s.sandrun, s.host, s.command = e.cpuNow().since(cpu0, done.ExecutionID)
	s.calls = requestCalls(all, sessionID)
	s.tally = tally(s.calls)
	program, err := programs()
	if err != nil {
		return s, err
	}
	publish, receipt := requestEnds(s.calls, done.RequestID)
	if publish == 0 || receipt == 0 {
		s.chainErr = fmt.Errorf("request %s: its publish or its completion's delivery was not recorded", done.RequestID)
		return s, nil
	}
	s.chain, s.chainErr = criticalPath(s.calls, publish, receipt, program)
	for _, c := range s.chain {
		s.steps = append(s.steps, program(c.Peer)+": "+c.Service+" "+c.Method)
	}
	return s, nil
}

// programs returns what tells the programs apart by a call's peer: this
// process's connections are "sandrun" (the dispatcher, the reaper, the
// backend's client), all others are "hosts" (their /proc/PID/fd cannot be
// read: hosts are not dumpable).
func programs() (func(peer string) string, error) {
	ours, err := procfs.TCPPorts(os.Getpid())
	if err != nil {
		return nil, fmt.Errorf("read this process's connections: %w", err)
	}
	return func(peer string) string {
		if ours[peer] {
			return "sandrun"
		}
		return "hosts"
	}, nil
}

// requestEnds finds the Publish of request id and the delivery of its
// completion (the delivery caused by the Publish of a message with the
// request's id and a status).
func requestEnds(cs []calls.Call, id string) (publish, receipt int64) {
	var completion int64
	for _, c := range cs {
		if c.Method != "Publish" || !slices.Contains(c.Keys, "request_id="+id) {
			continue
		}
		if slices.ContainsFunc(c.Keys, func(k string) bool { return strings.HasPrefix(k, "status=") }) {
			completion = c.ID
		} else if publish == 0 {
			publish = c.ID
		}
	}
	for _, c := range cs {
		if c.Method == "StreamingPull.Deliver" && completion != 0 && c.Cause == completion && receipt == 0 {
			receipt = c.ID
		}
	}
	return publish, receipt
}

// summarize folds samples into a Counted: the most frequent path, and the
// tally of the sample with the median number of RPCs.
func summarize(kind string, samples []sample) Counted {
	out := Counted{Kind: kind, Samples: len(samples)}
	paths := map[string]int{}
	var best string
	for _, s := range samples {
		if s.chainErr != nil {
			out.PathBroken++
			continue
		}
		line := strings.Join(s.steps, " → ")
		paths[line]++
		n, _, _ := serialRPCs(s.chain)
		if out.SerialHigh == 0 || n < out.SerialLow {
			out.SerialLow = n
		}
		out.SerialHigh = max(out.SerialHigh, n)
		if paths[line] > paths[best] {
			best = line
		}
	}
	for _, s := range samples {
		if s.chainErr == nil && strings.Join(s.steps, " → ") == best {
			out.Path = s.steps
			out.SerialRPCs, out.PubSubHops, out.SerialByService = serialRPCs(s.chain)
			break
		}
	}
	out.PathSeen = paths[best]
	byRPCs := slices.Clone(samples)
	slices.SortFunc(byRPCs, func(a, b sample) int { return a.tally.RPCs - b.tally.RPCs })
	if len(byRPCs) > 0 {
		out.PerRequest = byRPCs[len(byRPCs)/2].tally
		out.RPCsLow, out.RPCsHigh = byRPCs[0].tally.RPCs, byRPCs[len(byRPCs)-1].tally.RPCs
	}
	var self, host, cmd time.Duration
	for _, s := range samples {
		self, host, cmd = self+s.sandrun, host+s.host, cmd+s.command
	}
	if n := float64(len(samples)); n > 0 {
		out.CPUSandrun, out.CPUHost, out.CPUCommand = ms(self)/n, ms(host)/n, ms(cmd)/n
	}
	return out
}

// result turns a Counted into a bench result: the value is the number of
// serial round trips on the critical path.
func (c Counted) result() Result {
	t := c.PerRequest
	note := fmt.Sprintf("critical path (%d of %d samples; %d broken; serial RPCs %d to %d across samples): %s. Serial RPCs by service: %s; Pub/Sub hops %d. "+
		"Per request (median sample; RPCs %d to %d across samples): %d RPCs and %d pushes (%s); Firestore %d reads, %d writes, %d deletes; "+
		"Cloud Storage %d ops; Pub/Sub %d published, %d delivered. CPU per request: this process (dispatcher, reaper, local cloud, client) %.1f ms, hosts %.1f ms, their commands %.1f ms",
		c.PathSeen, c.Samples, c.PathBroken, c.SerialLow, c.SerialHigh, strings.Join(c.Path, " → "), methodsLine(c.SerialByService), c.PubSubHops,
		c.RPCsLow, c.RPCsHigh, t.RPCs, t.Pushes, methodsLine(t.ByMethod), t.Reads, t.Writes, t.Deletes,
		t.StorageOps, t.Published, t.Delivered, c.CPUSandrun, c.CPUHost, c.CPUCommand)
	cc := c
	return Result{Name: "counted: " + c.Kind, Unit: "serial", Value: float64(c.SerialRPCs), Samples: c.Samples, Note: note, Counted: &cc}
}

// warmSettle is how long a warm request's sample waits after the
// completion for what the request set off (its acknowledgements, a
// renewal), and the floor's round trip after each of its own.
const warmSettle = 300 * time.Millisecond

// counts counts, on a system of its own with no reaper passes in the way,
// what a warm request, a new session's first request (without a pool, and
// with one: a hit and a miss) and an idle host-minute cost, one request at
// a time.
func (r *runner) counts(ctx context.Context) error {
	n, newN, rounds, idleWindow := 30, 10, 4, 2*time.Minute
	if r.cfg.Quick {
		n, newN, rounds, idleWindow = 10, 3, 2, 70*time.Second
	}
	// The reaper would add its passes to whatever request they overlap.
	env, err := startEnvironment(ctx, r.cfg, envSpec{ReaperInterval: time.Hour})
	if err != nil {
		return err
	}
	defer env.close()
	const warm = "bench-count-warm"
	_, first, err := env.exec(ctx, warm, "true")
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	// Each kind: n samples of command, the i-th in session(i).
	kinds := []struct {
		kind, command string
		n             int
		session       func(i int) string
		wait          time.Duration
	}{
		{"warm request (true)", "true", n, func(int) string { return warm }, warmSettle},
		// A request that changes a file: it is answered once the
		// workspace's checkpoint holds the change (the uploads are on its
		// path).
		{"warm request writing a file", "date +%N > f", n, func(int) string { return warm }, warmSettle},
		{"new session, no pool", "true", newN, func(i int) string { return fmt.Sprintf("bench-count-new-%03d", i) }, time.Second},
	}
	for _, k := range kinds {
		var samples []sample
		for i := range k.n {
			s, err := env.countOne(ctx, k.session(i), k.command, k.wait)
			if err != nil {
				return err
			}
			samples = append(samples, s)
		}
		r.add(summarize(k.kind, samples).result())
	}

	if err := r.countFloor(ctx, env, n); err != nil {
		return err
	}
	if err := r.countIdle(ctx, env, warm, first.ExecutionID, idleWindow); err != nil {
		return err
	}
	return r.countPool(ctx, rounds)
}

// countFloor counts the throughput floor's round trip (see commandRecord:
// two ordered Pub/Sub hops, bash -c true and one Firestore create between
// them) as the requests are counted, from the local cloud's record of
// every call: n round trips one after another, each followed by the
// settle a warm request's sample waits (so that acknowledgements go out
// one by one, as a request's do, not batched), per round trip. It puts
// what a request costs beside what the same work costs without sandrun,
// through the same clients and the same local cloud. The floor's calls
// name no session; calls that name one, or that a host made, are the
// idle system's and are left out.
func (r *runner) countFloor(ctx context.Context, env *environment, n int) error {
	work, cleanup, err := env.newFloorWork("true")
	if err != nil {
		return err
	}
	defer cleanup()
	e, err := env.newEcho(ctx, true, work.do)
	if err != nil {
		return err
	}
	defer e.stop()
	for range 3 { // the first round trips open the streams
		if _, err := e.roundTrip(ctx, "sender"); err != nil {
			return err
		}
	}
	time.Sleep(300 * time.Millisecond)
	cpu0, _ := procfs.CPUTime(os.Getpid(), true)
	env.suite.Calls.Keep()
	for range n {
		if _, err := e.roundTrip(ctx, "sender"); err != nil {
			env.suite.Calls.Stop()
			return err
		}
		time.Sleep(warmSettle)
	}
	kept := env.suite.Calls.Stop()
	cpu1, _ := procfs.CPUTime(os.Getpid(), true)
	program, err := programs()
	if err != nil {
		return err
	}
	var floor []calls.Call
	for _, c := range kept {
		if program(c.Peer) == "hosts" || slices.ContainsFunc(c.Keys, func(k string) bool { return keySession(k) != "" }) {
			continue
		}
		floor = append(floor, c)
	}
	t := tally(floor)
	per := float64(n)
	r.add(Result{Name: "counted: floor round trip (the same work)", Unit: "RPCs", Value: float64(t.RPCs) / per, Samples: n,
		Note: fmt.Sprintf("%d round trips of the throughput floor, per round trip: %.1f RPCs and %.1f pushes (over the %d: %s); Firestore %.1f reads, %.1f writes, %.1f deletes; Pub/Sub %.1f published, %.1f delivered. CPU per round trip: this process (local cloud, echo) and its bash %.1f ms",
			n, float64(t.RPCs)/per, float64(t.Pushes)/per, n, methodsLine(t.ByMethod), float64(t.Reads)/per, float64(t.Writes)/per, float64(t.Deletes)/per,
			float64(t.Published)/per, float64(t.Delivered)/per, ms(cpu1-cpu0)/per)})
	return nil
}

// countIdle counts what the warm session's host costs while it idles, per
// minute, once its lease has gone idle.
func (r *runner) countIdle(ctx context.Context, env *environment, sessionID, execution string, window time.Duration) error {
	time.Sleep(20 * time.Second) // past the idle-lease threshold (the lease TTL, 15 s)
	cpu0 := env.cpuNow()
	env.suite.Calls.Keep()
	select {
	case <-ctx.Done():
		env.suite.Calls.Stop()
		return ctx.Err()
	case <-time.After(window):
	}
	kept := env.suite.Calls.Stop()
	program, err := programs()
	if err != nil {
		return err
	}
	// The host's calls: those naming its session, and those it made (by
	// its connections) naming nothing.
	var hosts []calls.Call
	for _, c := range requestCalls(kept, sessionID) {
		if program(c.Peer) == "hosts" || slices.ContainsFunc(c.Keys, func(k string) bool { return keySession(k) == sessionID }) {
			hosts = append(hosts, c)
		}
	}
	t := tally(hosts)
	self, host, _ := env.cpuNow().since(cpu0, execution)
	per := window.Minutes()
	r.add(Result{Name: "counted: idle host-minute", Unit: "RPCs/min", Value: float64(t.RPCs) / per,
		Note: fmt.Sprintf("one idle host for %v, per minute: %.1f RPCs and %.1f pushes (over the window: %s); Firestore %.1f reads, %.1f writes, %.1f deletes; Cloud Storage %.1f ops; CPU this process %.1f ms, host %.1f ms",
			window, float64(t.RPCs)/per, float64(t.Pushes)/per, methodsLine(t.ByMethod), float64(t.Reads)/per, float64(t.Writes)/per, float64(t.Deletes)/per,
			float64(t.StorageOps)/per, ms(self)/per, ms(host)/per),
		Counted: &Counted{Kind: "idle host-minute", PerRequest: t}})
	return nil
}

// countPool counts a new session's first request on a system with a warm
// pool: a pool hit, and a miss (the pool emptied by two other new sessions
// just before).
func (r *runner) countPool(ctx context.Context, rounds int) error {
	policy := pool.Policy{Min: 2, Target: 2, Max: 4}
	env, err := startEnvironment(ctx, r.cfg, envSpec{StartDelay: 2 * time.Second, Pool: policy, ReaperInterval: time.Hour})
	if err != nil {
		return err
	}
	defer env.close()
	var hits, misses []sample
	for i := range rounds {
		if err := waitIdle(ctx, env, policy.Min); err != nil {
			return err
		}
		s, err := env.countOne(ctx, fmt.Sprintf("bench-count-hit-%03d", i), "true", time.Second)
		if err != nil {
			return err
		}
		if err := waitIdle(ctx, env, policy.Min); err != nil {
			return err
		}
		// Two new sessions take the idle hosts; the next one misses.
		errs := make(chan error, policy.Min)
		for j := range policy.Min {
			go func() {
				_, _, err := env.exec(ctx, fmt.Sprintf("bench-count-fill-%03d-%d", i, j), "true")
				errs <- err
			}()
		}
		for range policy.Min {
			if err := <-errs; err != nil {
				return err
			}
		}
		m, err := env.countOne(ctx, fmt.Sprintf("bench-count-miss-%03d", i), "true", time.Second)
		if err != nil {
			return err
		}
		for _, x := range []sample{s, m} {
			if x.completion.PoolHit {
				hits = append(hits, x)
			} else {
				misses = append(misses, x)
			}
		}
	}
	r.add(summarize("new session, pool hit", hits).result())
	r.add(summarize("new session, pool miss", misses).result())
	return nil
}
