package emulator_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"cloud.google.com/go/storage"
	"go.uber.org/goleak"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/emulatortest"
	"github.com/sandrun/sandrun/emulator/faults"
)

// cloudRunOptions reach the suite's Cloud Run Admin API, as sandrun's
// jobrunner does with CLOUDRUN_EMULATOR_HOST.
func cloudRunOptions(s *emulator.Suite) []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(s.CloudRunAddr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}

// createJob creates a job whose task runs script with sh.
func createJob(t *testing.T, jobs *run.JobsClient, s *emulator.Suite, id, script string) string {
	t.Helper()
	ctx := context.Background()
	parent := "projects/" + s.Project + "/locations/us-central1"
	op, err := jobs.CreateJob(ctx, &runpb.CreateJobRequest{Parent: parent, JobId: id, Job: &runpb.Job{
		Template: &runpb.ExecutionTemplate{Template: &runpb.TaskTemplate{
			Containers: []*runpb.Container{{Image: "busybox", Command: []string{"sh", "-c"}, Args: []string{script}}},
			Retries:    &runpb.TaskTemplate_MaxRetries{MaxRetries: 0},
		}},
	}})
	if err != nil {
		t.Fatalf("create job: %v", err)
	}
	if _, err := op.Wait(ctx); err != nil {
		t.Fatalf("create job: %v", err)
	}
	return parent + "/jobs/" + id
}

// TestSuiteLeavesNothingBehind uses every service through its official
// client, stops the suite, and checks that no goroutine and no process of
// it remains.
func TestSuiteLeavesNothingBehind(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := emulator.Start(ctx, emulator.Config{Buckets: []string{"b"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetEnv(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	pidFile := filepath.Join(t.TempDir(), "pids")
	func() {
		ps, err := pubsub.NewClient(ctx, s.Project)
		if err != nil {
			t.Fatal(err)
		}
		defer ps.Close()
		fs, err := firestore.NewClient(ctx, s.Project)
		if err != nil {
			t.Fatal(err)
		}
		defer fs.Close()
		gcs, err := storage.NewClient(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer gcs.Close()
		jobs, err := run.NewJobsClient(ctx, cloudRunOptions(s)...)
		if err != nil {
			t.Fatal(err)
		}
		defer jobs.Close()

		topic := "projects/" + s.Project + "/topics/top"
		if _, err := ps.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
			t.Fatal(err)
		}
		p := ps.Publisher("top")
		if _, err := p.Publish(ctx, &pubsub.Message{Data: []byte("x")}).Get(ctx); err != nil {
			t.Fatal(err)
		}
		p.Stop()
		// A listener open when the suite stops must not keep it alive.
		it := fs.Collection("c").Snapshots(ctx)
		if _, err := it.Next(); err != nil {
			t.Fatal(err)
		}
		defer it.Stop()
		w := gcs.Bucket("b").Object("o").NewWriter(ctx)
		io.WriteString(w, "data")
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		// A task that would run for ten minutes, with a child.
		job := createJob(t, jobs, s, "sleeper", "sleep 600 & echo $$ $! > "+pidFile+"; wait")
		if _, err := jobs.RunJob(ctx, &runpb.RunJobRequest{Name: job}); err != nil {
			t.Fatal(err)
		}
		pids = waitPIDs(t, pidFile)
	}()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("task process %d still runs after Close", pid)
		}
	}
}

// alive reports whether a process runs: it exists and is not a zombie
// waiting for a parent (here init) to reap it.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// waitPIDs waits for a task to write its pids to file. Nothing signals the
// write, so it looks every few milliseconds.
func waitPIDs(t *testing.T, file string) []int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(file)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			var pids []int
			for _, f := range strings.Fields(string(b)) {
				pid, err := strconv.Atoi(f)
				if err != nil {
					t.Fatalf("pid file holds %q", b)
				}
				pids = append(pids, pid)
			}
			return pids
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no pids in %s after 30 s", file)
	return nil
}

// TestFaultsReachOfficialClients injects a fault into each service through
// the admin endpoint and sees it arrive in the official client.
func TestFaultsReachOfficialClients(t *testing.T) {
	s := emulatortest.Start(t, emulator.Config{Buckets: []string{"b"}})
	ctx := context.Background()
	admin := &emulator.AdminClient{Addr: s.AdminAddr}

	// Firestore: every commit aborts twice; the client's transaction retries
	// until it succeeds.
	fs, err := firestore.NewClient(ctx, s.Project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	if err := admin.AddFault(ctx, faults.Rule{Service: faults.Firestore, Method: "Commit", Rate: 1, Code: "ABORTED", Times: 2}); err != nil {
		t.Fatal(err)
	}
	attempts := 0
	err = fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		attempts++
		return tx.Set(fs.Doc("c/d"), map[string]any{"n": 1})
	})
	if err != nil || attempts != 3 {
		t.Fatalf("transaction: %v after %d attempts, want success after 3", err, attempts)
	}
	// UNAVAILABLE on reads reaches the caller as such.
	if err := admin.AddFault(ctx, faults.Rule{Service: faults.Firestore, Method: "BatchGetDocuments", Rate: 1, Code: "PERMISSION_DENIED", Times: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Doc("c/d").Get(ctx); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("get with an injected PERMISSION_DENIED: %v", err)
	}

	// Cloud Storage: 503s that the client retries by itself.
	gcs, err := storage.NewClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gcs.Close() })
	if err := admin.AddFault(ctx, faults.Rule{Service: faults.Storage, Method: "GET", Rate: 1, HTTPStatus: 503, Times: 2}); err != nil {
		t.Fatal(err)
	}
	w := gcs.Bucket("b").Object("o").NewWriter(ctx)
	io.WriteString(w, "data")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := gcs.Bucket("b").Object("o").NewReader(ctx)
	if err != nil {
		t.Fatalf("read through two 503s: %v", err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if string(b) != "data" {
		t.Fatalf("read %q", b)
	}

	// Cloud Run: RESOURCE_EXHAUSTED on launch, as a quota would.
	jobs, err := run.NewJobsClient(ctx, cloudRunOptions(s)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jobs.Close() })
	job := createJob(t, jobs, s, "quick", "true")
	if err := admin.AddFault(ctx, faults.Rule{Service: faults.CloudRun, Method: "RunJob", Rate: 1, Code: "RESOURCE_EXHAUSTED", Times: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := jobs.RunJob(ctx, &runpb.RunJobRequest{Name: job}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("RunJob with an injected quota error: %v", err)
	}

	// Pub/Sub: latency on publish.
	ps, err := pubsub.NewClient(ctx, s.Project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	if _, err := ps.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/" + s.Project + "/topics/top"}); err != nil {
		t.Fatal(err)
	}
	if err := admin.AddFault(ctx, faults.Rule{Service: faults.PubSub, Method: "Publish", Latency: faults.Duration(300 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	p := ps.Publisher("top")
	defer p.Stop()
	start := time.Now()
	if _, err := p.Publish(ctx, &pubsub.Message{Data: []byte("x")}).Get(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("publish took %v with 300ms of injected latency", took)
	}

	rules, err := admin.Faults(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var report []string
	for _, r := range rules {
		if r.Matched == 0 {
			report = append(report, r.Rule.Service+" "+r.Rule.Method)
		}
	}
	if len(report) > 0 {
		t.Fatalf("rules that matched no call: %s", strings.Join(report, ", "))
	}
}

// TestPubSubErrorsReachTheOfficialClient injects gRPC errors into Publish:
// a permanent one reaches the caller of the official publisher with its
// code, and transient ones are retried by the publisher until it succeeds.
func TestPubSubErrorsReachTheOfficialClient(t *testing.T) {
	s := emulatortest.Start(t, emulator.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := &emulator.AdminClient{Addr: s.AdminAddr}
	ps, err := pubsub.NewClient(ctx, s.Project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	if _, err := ps.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/" + s.Project + "/topics/top"}); err != nil {
		t.Fatal(err)
	}
	sub := &pubsubpb.Subscription{Name: "projects/" + s.Project + "/subscriptions/sub", Topic: "projects/" + s.Project + "/topics/top"}
	if _, err := ps.SubscriptionAdminClient.CreateSubscription(ctx, sub); err != nil {
		t.Fatal(err)
	}
	p := ps.Publisher("top")
	defer p.Stop()

	if err := admin.AddFault(ctx, faults.Rule{Service: faults.PubSub, Method: "Publish", Rate: 1, Code: "PERMISSION_DENIED", Times: 1}); err != nil {
		t.Fatal(err)
	}
	_, err = p.Publish(ctx, &pubsub.Message{Data: []byte("denied")}).Get(ctx)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "injected fault") {
		t.Fatalf("publish with an injected PERMISSION_DENIED: %v", err)
	}

	// The rule is spent: the next publish goes through, past two UNAVAILABLEs.
	if err := admin.AddFault(ctx, faults.Rule{Service: faults.PubSub, Method: "Publish", Rate: 1, Code: "UNAVAILABLE", Times: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Publish(ctx, &pubsub.Message{Data: []byte("retried")}).Get(ctx); err != nil {
		t.Fatalf("publish through two injected UNAVAILABLEs: %v", err)
	}
	rules, err := admin.Faults(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 2 || rules[0].Injected != 1 || rules[1].Injected != 2 || rules[1].Matched < 3 {
		t.Fatalf("fault rules after the publishes: %+v", rules)
	}

	// A failed publish stored nothing, a retried one stored its message
	// once: the subscription sees "retried", then "end".
	if _, err := p.Publish(ctx, &pubsub.Message{Data: []byte("end")}).Get(ctx); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen []string
	)
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	err = ps.Subscriber("sub").Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, string(m.Data))
		if slices.Contains(seen, "end") && slices.Contains(seen, "retried") {
			rcancel()
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if err != nil || ctx.Err() != nil {
		t.Fatalf("receive: %v (%v); received %q", err, ctx.Err(), seen)
	}
	if slices.Sort(seen); !slices.Equal(seen, []string{"end", "retried"}) {
		t.Errorf("received %q, want end and retried once each", seen)
	}
}

// TestLatencyDelaysOfficialClients injects latency into Firestore and Cloud
// Storage calls and sees the official clients' calls take at least that
// long.
func TestLatencyDelaysOfficialClients(t *testing.T) {
	const latency = 300 * time.Millisecond
	s := emulatortest.Start(t, emulator.Config{Buckets: []string{"b"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := &emulator.AdminClient{Addr: s.AdminAddr}
	fs, gcs := emulatortest.Clients(t, s)

	tests := []struct {
		name string
		rule faults.Rule
		call func() error
	}{
		{"firestore commit", faults.Rule{Service: faults.Firestore, Method: "Commit"}, func() error {
			_, err := fs.Doc("c/d").Set(ctx, map[string]any{"n": 1})
			return err
		}},
		{"firestore get", faults.Rule{Service: faults.Firestore, Method: "BatchGetDocuments"}, func() error {
			_, err := fs.Doc("c/d").Get(ctx)
			return err
		}},
		{"storage write", faults.Rule{Service: faults.Storage, Method: "/upload/"}, func() error {
			w := gcs.Bucket("b").Object("o").NewWriter(ctx)
			io.WriteString(w, "data")
			return w.Close()
		}},
		{"storage read", faults.Rule{Service: faults.Storage, Method: "GET"}, func() error {
			r, err := gcs.Bucket("b").Object("o").NewReader(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.ReadAll(r)
			return err
		}},
	}
	for _, tt := range tests {
		tt.rule.Latency = faults.Duration(latency)
		if err := admin.AddFault(ctx, tt.rule); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err := tt.call()
		took := time.Since(start)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if took < latency {
			t.Errorf("%s took %v with %v of injected latency", tt.name, took, latency)
		}
		if err := admin.ClearFaults(ctx, tt.rule.Service); err != nil {
			t.Fatal(err)
		}
	}
}

// TestKillExecutionThroughAdmin kills a running execution the way the
// reliability tests do, and the execution fails.
func TestKillExecutionThroughAdmin(t *testing.T) {
	s := emulatortest.Start(t, emulator.Config{})
	ctx := context.Background()
	jobs, err := run.NewJobsClient(ctx, cloudRunOptions(s)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jobs.Close() })
	pidFile := filepath.Join(t.TempDir(), "pids")
	job := createJob(t, jobs, s, "victim", "echo $$ > "+pidFile+"; sleep 600")
	op, err := jobs.RunJob(ctx, &runpb.RunJobRequest{Name: job})
	if err != nil {
		t.Fatal(err)
	}
	waitPIDs(t, pidFile)
	// The task can write its pid a moment before the server records it
	// as running.
	for deadline := time.Now().Add(10 * time.Second); len(s.CloudRun.RunningExecutions()) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the task runs but its execution is not running")
		}
		time.Sleep(10 * time.Millisecond)
	}
	killed, err := (&emulator.AdminClient{Addr: s.AdminAddr}).KillExecution(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	exec, err := op.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if exec.GetName() != killed || exec.GetFailedCount() != 1 {
		t.Fatalf("killed %s; execution %s finished with %d failed tasks", killed, exec.GetName(), exec.GetFailedCount())
	}
}
