package e2e

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/google/uuid"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/client"
	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/cloudrun"
	"github.com/sandrun/sandrun/emulator/emulatortest"
	"github.com/sandrun/sandrun/emulator/official"
	"github.com/sandrun/sandrun/internal/dispatcher"
	"github.com/sandrun/sandrun/internal/hostcred"
	"github.com/sandrun/sandrun/internal/logging"
	"github.com/sandrun/sandrun/internal/outbox"
	"github.com/sandrun/sandrun/internal/pool"
	"github.com/sandrun/sandrun/internal/retry"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/system"
)

// sandrunBin is the sandrun program built for these tests.
var sandrunBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sandrun-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Searchable by every user: some tests run hosts as uid 1000.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sandrunBin = filepath.Join(dir, "sandrun")
	// Built with the images' tag (deploy/*.Dockerfile), so that the hosts
	// and the dispatcher under test run the Cloud Storage client as shipped.
	build := exec.Command("go", "build", "-tags", "disable_grpc_modules", "-o", sandrunBin, "github.com/sandrun/sandrun/cmd/sandrun")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build sandrun:", err)
		os.Exit(1)
	}
	code := m.Run()
	official.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// options change how a test's system runs.
type options struct {
	idleTimeout time.Duration
	leaseTTL    time.Duration
	// idleLeaseTTL is the lease of an idle host: leaseTTL unless set, so
	// that a host lost while idle is found as fast as a busy one.
	idleLeaseTTL time.Duration
	startDelay   time.Duration
	// ownDispatcher leaves the dispatcher to the test (see runDispatcher
	// and program); ownReaper the reaper.
	ownDispatcher, ownReaper bool
	// pool is the warm pool's policy (off when zero).
	pool pool.Policy
	// maxHosts bounds the running hosts (none when zero).
	maxHosts int
	// reaperInterval is the time between reaper passes (500 ms when zero).
	reaperInterval time.Duration
	// hostEnv is added to every host's environment.
	hostEnv []string
	// hostTokens sets how host tokens are minted and renewed (the
	// defaults when zero).
	hostTokens hostcred.Config
	// hostUser runs the hosts as this user, as the executor's image does
	// (uid 1000); the test must run as root.
	hostUser *syscall.Credential
	// storageDir keeps the local Cloud Storage on disk there, as sandrun
	// dev does (in memory when empty).
	storageDir string
}

// world is sandrun running on a local cloud for one test.
type world struct {
	t      *testing.T
	suite  *emulator.Suite
	sys    system.Config
	client *client.Client
	// store reads session state (Firestore only).
	store *session.Store
	ps    *pubsub.Client
	fs    *firestore.Client
	logs  *syncBuffer
	// stateDir holds the hosts' workspaces.
	stateDir string
	local    *system.Local
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs the system on a fresh local cloud until the test ends.
func start(t *testing.T, o options) *world {
	t.Helper()
	if o.idleTimeout == 0 {
		o.idleTimeout = time.Minute
	}
	if o.leaseTTL == 0 {
		o.leaseTTL = 10 * time.Second
	}
	if o.reaperInterval == 0 {
		o.reaperInterval = 500 * time.Millisecond
	}
	logs := &syncBuffer{}
	cfg := emulator.Config{CloudRun: cloudrun.Config{
		Env:       append([]string{"PATH=" + os.Getenv("PATH")}, o.hostEnv...),
		StopGrace: 2 * time.Second,
		Output:    logs,
		User:      o.hostUser,
	}, Logger: logging.New(logs, 0, "sandrun-local"), // the local Pub/Sub logs what it dead-letters
		StorageDir: o.storageDir}
	if onGoogleEmulators {
		// Firestore and Pub/Sub are Google's emulators, in a project of
		// the test's own (TestOnGoogleEmulators).
		cfg.ExternalFirestore, cfg.ExternalPubSub = official.Firestore(t), official.PubSub(t)
		cfg.Project = official.Project(t)
	}
	suite := emulatortest.Start(t, cfg)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	sys := system.Config{Project: suite.Project, Region: system.DefaultRegion, Job: system.DefaultJob,
		Bucket: "sandrun-test", Names: outbox.DefaultNames(), TTL: session.DefaultTTL, Pool: o.pool, Host: o.hostTokens}
	sys.Launch.MaxHosts = o.maxHosts
	ctx := context.Background()
	stateDir := t.TempDir()
	if u := o.hostUser; u != nil {
		// The hosts make their workspaces in it: it must be theirs, and
		// reachable (t.TempDir's parent is not).
		stateDir = hostUserDir(t, u)
	}
	local, err := system.StartLocal(ctx, sys, system.LocalConfig{
		Executor: sandrunBin, ExecutorArgs: []string{"executor"}, StateDir: stateDir,
		IdleTimeout: o.idleTimeout, LeaseTTL: o.leaseTTL, IdleLeaseTTL: cmp.Or(o.idleLeaseTTL, o.leaseTTL), ReaperInterval: o.reaperInterval,
		StartDelay: o.startDelay, Logger: logging.New(logs, -4, "sandrun-local"), LogLevel: "debug",
		NoDispatcher: o.ownDispatcher, NoReaper: o.ownReaper,
	})
	if err != nil {
		t.Fatalf("start sandrun: %v", err)
	}
	t.Cleanup(func() {
		if err := local.Close(); err != nil {
			t.Errorf("stop sandrun: %v", err)
		}
	})
	w := &world{t: t, suite: suite, sys: sys, logs: logs, stateDir: stateDir, local: local}
	w.client, err = client.New(ctx, client.Config{Project: sys.Project, Bucket: sys.Bucket})
	if err != nil {
		t.Fatalf("sandrun client: %v", err)
	}
	t.Cleanup(func() { w.client.Close() })
	w.ps, err = pubsub.NewClient(ctx, sys.Project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.ps.Close() })
	w.fs, err = firestore.NewClient(ctx, sys.Project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.fs.Close() })
	w.store = session.NewStore(w.fs, nil, session.Config{Bucket: sys.Bucket})
	return w
}

// hostUserDir returns a new directory that belongs to u, removed when the
// test ends.
func hostUserDir(t *testing.T, u *syscall.Credential) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sandrun-e2e-host-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, int(u.Uid), int(u.Gid)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// do sends a request and waits for its completion.
func (w *world) do(req *api.Request) *api.Completion {
	w.t.Helper()
	if req.RequestID == "" {
		req.RequestID = uuid.NewString()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done, err := w.client.Do(ctx, req)
	if err != nil {
		w.t.Fatalf("%s %q in session %s: %v", req.Op, req.Command, req.SessionID, err)
	}
	return done
}

// exec runs a command and fails the test unless it completed ok.
func (w *world) exec(sessionID, command string) *api.Completion {
	w.t.Helper()
	done := w.do(&api.Request{SessionID: sessionID, Op: api.OpExec, Command: command})
	if done.Status != api.StatusOK {
		w.t.Fatalf("exec %q: %s %+v (stderr %q)", command, done.Status, done.Error, done.Stderr)
	}
	return done
}

// publishRaw publishes message data as a backend might, right or wrong.
func (w *world) publishRaw(data []byte, attrs map[string]string, orderingKey string) {
	w.t.Helper()
	p := w.ps.Publisher(w.sys.Names.Requests)
	p.EnableMessageOrdering = orderingKey != ""
	defer p.Stop()
	if _, err := p.Publish(context.Background(), &pubsub.Message{Data: data, Attributes: attrs, OrderingKey: orderingKey}).Get(context.Background()); err != nil {
		w.t.Fatalf("publish: %v", err)
	}
}

// tap is a subscription that records every message of a topic.
type tap struct {
	mu   sync.Mutex
	msgs []*pubsub.Message
	cond chan struct{}
}

// subscribe records every message published to topic from now on.
func (w *world) subscribe(topic string) *tap {
	w.t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("projects/%s/subscriptions/tap-%s", w.sys.Project, uuid.NewString()[:8])
	if _, err := w.ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: name, Topic: fmt.Sprintf("projects/%s/topics/%s", w.sys.Project, topic), AckDeadlineSeconds: 30,
	}); err != nil {
		w.t.Fatalf("create tap: %v", err)
	}
	tp := &tap{cond: make(chan struct{}, 1)}
	rctx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		// Pub/Sub may end the stream (UNKNOWN, UNAVAILABLE): pull again.
		retry.Reconnect(rctx, retry.Stream, nil, "tap", func(ctx context.Context) error {
			return w.ps.Subscriber(name).Receive(ctx, func(ctx context.Context, m *pubsub.Message) {
				m.Ack()
				tp.mu.Lock()
				tp.msgs = append(tp.msgs, m)
				tp.mu.Unlock()
				select {
				case tp.cond <- struct{}{}:
				default:
				}
			})
		})
	}()
	w.t.Cleanup(func() { cancel(); <-stopped })
	return tp
}

// waitFor waits until match holds for the tap's messages, or fails.
func (tp *tap) waitFor(t *testing.T, what string, timeout time.Duration, match func([]*pubsub.Message) bool) []*pubsub.Message {
	t.Helper()
	deadline := time.After(timeout)
	for {
		tp.mu.Lock()
		msgs := append([]*pubsub.Message(nil), tp.msgs...)
		tp.mu.Unlock()
		if match(msgs) {
			return msgs
		}
		select {
		case <-tp.cond:
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s; have %d messages", timeout, what, len(msgs))
		}
	}
}

// decodeCompletions decodes the tap's messages as completions.
func decodeCompletions(t *testing.T, msgs []*pubsub.Message) []api.Completion {
	t.Helper()
	var out []api.Completion
	for _, m := range msgs {
		var c api.Completion
		if err := json.Unmarshal(m.Data, &c); err != nil {
			t.Fatalf("completion is not JSON: %q", m.Data)
		}
		out = append(out, c)
	}
	return out
}

// byRequest counts messages per request_id attribute.
func byRequest(msgs []*pubsub.Message) map[string][]*pubsub.Message {
	out := map[string][]*pubsub.Message{}
	for _, m := range msgs {
		id := m.Attributes[api.AttrRequestID]
		out[id] = append(out[id], m)
	}
	return out
}

// waitDoc waits until the Firestore document at path exists and its data
// satisfies cond, watching it with a listener.
func (w *world) waitDoc(path, what string, timeout time.Duration, cond func(map[string]any) bool) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	it := w.fs.Doc(path).Snapshots(ctx)
	defer it.Stop()
	for {
		snap, err := it.Next()
		if err != nil {
			w.t.Fatalf("waiting for %s to %s: %v", path, what, err)
		}
		if snap.Exists() && cond(snap.Data()) {
			return
		}
	}
}

// waitRunning waits until the session's host started the request: its
// mark in the lease document (the inbox item stays queued until it
// finishes).
func (w *world) waitRunning(sessionID, requestID string) {
	w.t.Helper()
	w.waitDoc("sessions/"+sessionID+"/runtime/lease", "start "+requestID, time.Minute, func(d map[string]any) bool {
		running, _ := d["running"].(map[string]any)
		_, ok := running[requestID]
		return ok
	})
}

// waitNoHost waits until the session's host went idle and left.
func (w *world) waitNoHost(sessionID string) {
	w.t.Helper()
	w.waitDoc("sessions/"+sessionID+"/runtime/lease", "lose its host", time.Minute, func(d map[string]any) bool { return d["execution"] == "" })
}

// runDispatcher runs a dispatcher until the returned stop is called, which
// stops it as SIGTERM does and waits for it to finish what it holds.
func (w *world) runDispatcher() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- system.RunDispatcher(ctx, &w.sys, dispatcher.Config{}, nil, logging.New(w.logs, -4, w.sys.Project))
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				w.t.Errorf("dispatcher: %v", err)
			}
		})
	}
	w.t.Cleanup(stop)
	return stop
}

// hostPID returns the pid of the executor hosting the session: the
// entrypoint of the execution that holds its lease.
func (w *world) hostPID(t *testing.T, sessionID string) int {
	t.Helper()
	execution, err := w.store.HostOf(context.Background(), sessionID)
	if err != nil {
		t.Fatal(err)
	}
	pids := w.suite.CloudRun.TaskPIDs(w.sys.JobName() + "/executions/" + execution)
	if execution == "" || len(pids) != 1 {
		t.Fatalf("session %s: host %q runs as %v", sessionID, execution, pids)
	}
	return pids[0]
}

// peakRSS reads a process's peak resident memory in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

func trimLines(s string) []string { return strings.Split(strings.TrimRight(s, "\n"), "\n") }
