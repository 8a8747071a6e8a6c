package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/google/uuid"

	"github.com/sandrun/sandrun/internal/procfs"
)

// echo is the Pub/Sub floor: a message published to one topic, received by
// a subscriber that publishes it to a second topic, and received from
// there. Those are the two hops a request and its completion make, on the
// same emulator, with nothing in between. When ordered, the first hop is
// configured as sandrun's requests are: an ordered subscription, and the
// same ordering key for the messages of one sender.
//
// When work is set, the echo runs it on each message between the two hops,
// as a host runs a request between receiving it and publishing its
// completion; a failure goes back in the second hop's message and fails
// the round trip.
type echo struct {
	in, out *pubsub.Publisher
	ordered bool
	work    func(ctx context.Context, key string) error
	mu      sync.Mutex
	waiters map[string]chan error
	stop    func()
}

func (env *environment) newEcho(ctx context.Context, ordered bool, work func(ctx context.Context, key string) error) (*echo, error) {
	ps := env.clients.PubSub
	id := "floor-" + uuid.NewString()[:8]
	topic := func(s string) string { return fmt.Sprintf("projects/%s/topics/%s", env.sys.Project, s) }
	sub := func(s string) string { return fmt.Sprintf("projects/%s/subscriptions/%s", env.sys.Project, s) }
	for _, t := range []string{id + "-a", id + "-b"} {
		if _, err := ps.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic(t)}); err != nil {
			return nil, err
		}
		if _, err := ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub(t), Topic: topic(t),
			AckDeadlineSeconds: 30, EnableMessageOrdering: ordered && t == id+"-a"}); err != nil {
			return nil, err
		}
	}
	e := &echo{in: ps.Publisher(id + "-a"), out: ps.Publisher(id + "-b"), ordered: ordered, work: work, waiters: map[string]chan error{}}
	e.in.EnableMessageOrdering = ordered
	// The same publishing settings as sandrun's: no batching delay.
	e.in.PublishSettings.DelayThreshold = time.Millisecond
	e.out.PublishSettings.DelayThreshold = time.Millisecond
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		ps.Subscriber(id+"-a").Receive(rctx, func(ctx context.Context, m *pubsub.Message) {
			m.Ack()
			out := &pubsub.Message{Data: m.Data, Attributes: m.Attributes}
			if e.work != nil {
				if err := e.work(ctx, string(m.Data)); err != nil {
					out.Attributes = map[string]string{"error": err.Error()}
				}
			}
			e.out.Publish(ctx, out)
		})
	}()
	go func() {
		defer wg.Done()
		ps.Subscriber(id+"-b").Receive(rctx, func(ctx context.Context, m *pubsub.Message) {
			m.Ack()
			e.mu.Lock()
			w := e.waiters[string(m.Data)]
			delete(e.waiters, string(m.Data))
			e.mu.Unlock()
			if w != nil {
				if msg, failed := m.Attributes["error"]; failed {
					w <- errors.New(msg)
				}
				close(w)
			}
		})
	}()
	e.stop = func() { cancel(); wg.Wait(); e.in.Stop(); e.out.Stop() }
	return e, nil
}

// roundTrip sends one message through both hops and waits for it. An
// ordered echo uses sender as the ordering key.
func (e *echo) roundTrip(ctx context.Context, sender string) (time.Duration, error) {
	key := uuid.NewString()
	w := make(chan error, 1)
	e.mu.Lock()
	e.waiters[key] = w
	e.mu.Unlock()
	start := time.Now()
	m := &pubsub.Message{Data: []byte(key)}
	if e.ordered {
		m.OrderingKey = sender
	}
	if _, err := e.in.Publish(ctx, m).Get(ctx); err != nil {
		return 0, err
	}
	select {
	case err := <-w:
		if err != nil {
			return 0, err
		}
		return time.Since(start), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// pubsubFloor measures n sequential round trips.
func (r *runner) pubsubFloor(ctx context.Context, n int, ordered bool) ([]time.Duration, error) {
	e, err := r.newEcho(ctx, ordered, nil)
	if err != nil {
		return nil, err
	}
	defer e.stop()
	var ds []time.Duration
	for i := 0; i < n+3; i++ {
		d, err := e.roundTrip(ctx, "sender")
		if err != nil {
			return nil, err
		}
		if i >= 3 { // the first ones open streams
			ds = append(ds, d)
		}
	}
	return ds, nil
}

// pubsubThroughput measures round trips per second with workers senders,
// each with one round trip in flight, for d, each round trip doing work (if
// not nil) between its hops. It also returns the CPU this process and the
// children it reaped (the floor's commands) spent per round trip: the
// floor's CPU, to set beside sandrun's.
func (r *runner) pubsubThroughput(ctx context.Context, workers int, d time.Duration, work func(ctx context.Context, key string) error) (rate float64, cpuPerTrip time.Duration, err error) {
	e, err := r.newEcho(ctx, true, work)
	if err != nil {
		return 0, 0, err
	}
	defer e.stop()
	var done atomic.Int64
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	cpu, _ := procfs.CPUTime(os.Getpid(), true)
	start := time.Now()
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := e.roundTrip(ctx, fmt.Sprint("sender-", i)); err == nil {
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	after, _ := procfs.CPUTime(os.Getpid(), true)
	n := done.Load()
	if n == 0 {
		return 0, 0, fmt.Errorf("no round trip completed in %v with %d senders", d, workers)
	}
	return float64(n) / elapsed.Seconds(), (after - cpu) / time.Duration(n), nil
}

// commandRecord is the throughput floor's work on each request: the least
// any system that runs users' commands from a queue must do between taking
// a request and publishing its completion, done as plainly as it can be.
//
//   - Run the command: fork and exec of bash -c with the script (a host runs
//     bash, not sh), in a process group of its own as a host starts it,
//     stdout and stderr going to a file created for the request, waited for,
//     its exit status checked. What sandrun's package shell does on top (the
//     wrapper that saves the session's cwd and environment, its exec of env,
//     the state file, capped output pipes) is sandrun's feature, so its cost
//     is counted against sandrun, not in the floor.
//   - Record the request durably: one Firestore document created under the
//     request's ID in the local Firestore, holding its exit status. Pub/Sub
//     delivers at least once, so a system that promises each request exactly
//     one outcome, also when its host is lost, must keep a record keyed by
//     the request and written before the completion goes out; one create,
//     which fails if the record exists, is the least that does it. Sandrun's
//     several writes per request are its way of doing this; one is the floor.
//
// One limit of this floor: all its commands start from this one process,
// whose forks Go serializes (syscall.ForkLock is held until the child has
// exec'd), while sandrun's hosts fork in processes of their own. At 100
// sessions on a loaded machine the floor can therefore fall below what the
// work allows, even below sandrun; read its ratio there with that in mind.
type commandRecord struct {
	script  string
	bash    string
	outDir  string
	records *firestore.CollectionRef
}

// newCommandRecord prepares the floor's work: script is run for every
// request, with its output in a file under outDir, and recorded in a
// collection of its own.
func (env *environment) newCommandRecord(script, outDir string) (*commandRecord, error) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		return nil, fmt.Errorf("find bash for the throughput floor: %w", err)
	}
	return &commandRecord{script: script, bash: bash, outDir: outDir,
		records: env.clients.Firestore.Collection("floor-" + uuid.NewString()[:8])}, nil
}

// newFloorWork is newCommandRecord with its output in a directory of its
// own, which the returned function removes.
func (env *environment) newFloorWork(script string) (*commandRecord, func(), error) {
	dir, err := os.MkdirTemp("", "sandrun-bench-floor-")
	if err != nil {
		return nil, nil, err
	}
	work, err := env.newCommandRecord(script, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return work, func() { os.RemoveAll(dir) }, nil
}

// do runs the command for the request key and records its outcome.
func (c *commandRecord) do(ctx context.Context, key string) error {
	out, err := os.CreateTemp(c.outDir, "out-")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.CommandContext(ctx, c.bash, "-c", c.script)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("bash -c %q: %w", c.script, err)
	}
	if _, err := c.records.Doc(key).Create(ctx, map[string]any{"exit_code": cmd.ProcessState.ExitCode(), "finished_at": time.Now()}); err != nil {
		return fmt.Errorf("record request %s: %w", key, err)
	}
	return nil
}

// shellFloor runs script with a bare sh -c, output to a file as the host
// keeps it, n times.
func shellFloor(ctx context.Context, script string, n int) ([]time.Duration, error) {
	f, err := os.CreateTemp("", "sandrun-bench-out-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	var ds []time.Duration
	for range n {
		f.Truncate(0)
		f.Seek(0, 0)
		cmd := exec.CommandContext(ctx, "sh", "-c", script)
		cmd.Stdout, cmd.Stderr = f, f
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("sh -c %q: %w", script, err)
		}
		ds = append(ds, time.Since(start))
	}
	return ds, nil
}

// Machine describes where the figures were taken.
type Machine struct {
	CPUs    int    `json:"cpus"`
	Go      string `json:"go"`
	Load    string `json:"load,omitempty"`
	MemoryB int64  `json:"memory_bytes,omitempty"`
}

func (m Machine) String() string {
	return fmt.Sprintf("%d CPUs, %.1f GiB, %s, load average %s", m.CPUs, float64(m.MemoryB)/(1<<30), m.Go, m.Load)
}

func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.Load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb)
		m.MemoryB = kb << 10
	}
	return m
}
