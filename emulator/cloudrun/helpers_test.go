package cloudrun

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

const testParent = "projects/sandrun-test/locations/us-central1"

// harness is a server on a loopback port and the official clients connected
// to it, all closed when the test ends.
type harness struct {
	srv   *Server
	jobs  *run.JobsClient
	execs *run.ExecutionsClient
	tasks *run.TasksClient
}

// newHarness starts a server configured by cfg, with test defaults: the
// test's PATH, a work directory of the test, a short stop grace.
func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	if cfg.WorkDir == "" {
		cfg.WorkDir = t.TempDir()
	}
	if cfg.Env == nil {
		cfg.Env = []string{"PATH=" + os.Getenv("PATH")}
	}
	if cfg.StopGrace == 0 {
		cfg.StopGrace = 2 * time.Second
	}
	srv := New(cfg)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	served := make(chan error, 1)
	go func() { served <- g.Serve(lis) }()

	ctx := context.Background()
	opts := []option.ClientOption{
		option.WithEndpoint(lis.Addr().String()),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
	h := &harness{srv: srv}
	h.jobs, err = run.NewJobsClient(ctx, opts...)
	if err == nil {
		h.execs, err = run.NewExecutionsClient(ctx, opts...)
	}
	if err == nil {
		h.tasks, err = run.NewTasksClient(ctx, opts...)
	}
	t.Cleanup(func() {
		for _, c := range []interface{ Close() error }{h.jobs, h.execs, h.tasks} {
			if c != nil {
				c.Close()
			}
		}
		closeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Close(closeCtx); err != nil {
			t.Errorf("close server: %v", err)
		}
		g.Stop()
		<-served
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// shellJob is a job whose one container runs script with sh -c, without
// retries.
func shellJob(script string) *runpb.Job {
	return &runpb.Job{Template: &runpb.ExecutionTemplate{Template: &runpb.TaskTemplate{
		Containers: []*runpb.Container{{
			Name:    "main",
			Image:   "local/shell",
			Command: []string{"sh", "-c"},
			Args:    []string{script},
		}},
		Retries: &runpb.TaskTemplate_MaxRetries{MaxRetries: 0},
	}}}
}

func (h *harness) createJob(t *testing.T, id string, j *runpb.Job) *runpb.Job {
	t.Helper()
	op, err := h.jobs.CreateJob(t.Context(), &runpb.CreateJobRequest{Parent: testParent, JobId: id, Job: j})
	if err != nil {
		t.Fatalf("create job %s: %v", id, err)
	}
	got, err := op.Wait(t.Context())
	if err != nil {
		t.Fatalf("wait for job %s: %v", id, err)
	}
	return got
}

func (h *harness) runJob(t *testing.T, id string, ov *runpb.RunJobRequest_Overrides) *run.RunJobOperation {
	t.Helper()
	op, err := h.jobs.RunJob(t.Context(), &runpb.RunJobRequest{Name: testParent + "/jobs/" + id, Overrides: ov})
	if err != nil {
		t.Fatalf("run job %s: %v", id, err)
	}
	return op
}

// wait waits for a RunJob operation with WaitOperation, which returns as soon
// as the execution finishes (op.Wait polls with a backoff of a second or
// more), and returns the finished execution.
func (h *harness) wait(t *testing.T, op *run.RunJobOperation) *runpb.Execution {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for {
		lro, err := h.jobs.WaitOperation(ctx, &longrunningpb.WaitOperationRequest{Name: op.Name(), Timeout: durationpb.New(10 * time.Second)})
		if err != nil {
			t.Fatalf("wait for %s: %v", op.Name(), err)
		}
		if lro.GetDone() {
			break
		}
	}
	e, err := op.Poll(ctx)
	if err != nil || !op.Done() {
		t.Fatalf("poll %s: done=%v, %v", op.Name(), op.Done(), err)
	}
	return e
}

// runAndWait runs job id and waits for the execution to finish.
func (h *harness) runAndWait(t *testing.T, id string, ov *runpb.RunJobRequest_Overrides) *runpb.Execution {
	t.Helper()
	return h.wait(t, h.runJob(t, id, ov))
}

func (h *harness) listTasks(t *testing.T, execution string) []*runpb.Task {
	t.Helper()
	var tasks []*runpb.Task
	it := h.tasks.ListTasks(t.Context(), &runpb.ListTasksRequest{Parent: execution})
	for task, err := range it.All() {
		if err != nil {
			t.Fatalf("list tasks of %s: %v", execution, err)
		}
		tasks = append(tasks, task)
	}
	return tasks
}

// findCondition returns the condition of type typ.
func findCondition(t *testing.T, conds []*runpb.Condition, typ string) *runpb.Condition {
	t.Helper()
	for _, c := range conds {
		if c.GetType() == typ {
			return c
		}
	}
	t.Fatalf("no %s condition in %v", typ, conds)
	return nil
}

func wantCode(t *testing.T, err error, code codes.Code, what string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: got %v, want code %v", what, err, code)
	}
}

// eventually polls cond every 10 ms until it holds, failing the test after
// timeout. It is for states nothing can be awaited on, such as a process of
// another process tree having died.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readPID waits for a task to write a pid to file and returns it.
func readPID(t *testing.T, file string) int {
	t.Helper()
	var pid int
	eventually(t, 10*time.Second, "pid in "+file, func() bool {
		b, err := os.ReadFile(file)
		if err != nil || !bytes.HasSuffix(b, []byte("\n")) {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// logPath turns a file:// log URI into the path of one of its log files.
func logPath(t *testing.T, uri, file string) string {
	t.Helper()
	dir, ok := strings.CutPrefix(uri, "file://")
	if !ok {
		t.Fatalf("log uri %q is not a file:// URI", uri)
	}
	return filepath.Join(dir, file)
}

// serverGoroutines returns the stacks of goroutines running code of this
// package outside its tests.
func serverGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "/emulator/cloudrun.") && !strings.Contains(g, "_test.go") {
			out = append(out, g)
		}
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for the server's concurrent writes.
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
