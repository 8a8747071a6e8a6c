package cloudrun

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestRunJobWithEnvOverride(t *testing.T) {
	out := &syncBuffer{}
	h := newHarness(t, Config{Output: out})
	dir := t.TempDir()
	j := shellJob(`printf '%s %s %s %s\n' "$GREETING" "$NAME" "$CLOUD_RUN_JOB" "$CLOUD_RUN_TASK_ATTEMPT" > "$OUT/env"; printf '%s\n' "$CLOUD_RUN_EXECUTION" > "$OUT/execution"; echo "hello $NAME"; echo oops >&2`)
	j.Labels = map[string]string{"team": "sandrun"}
	j.Template.Template.Containers[0].Env = []*runpb.EnvVar{
		{Name: "GREETING", Values: &runpb.EnvVar_Value{Value: "hi"}},
		{Name: "NAME", Values: &runpb.EnvVar_Value{Value: "job"}},
		{Name: "OUT", Values: &runpb.EnvVar_Value{Value: dir}},
	}
	h.createJob(t, "greeter", j)

	op := h.runJob(t, "greeter", &runpb.RunJobRequest_Overrides{ContainerOverrides: []*runpb.RunJobRequest_Overrides_ContainerOverride{{
		Env: []*runpb.EnvVar{{Name: "NAME", Values: &runpb.EnvVar_Value{Value: "override"}}},
	}}})
	// The execution is known from the first response on.
	meta, err := op.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	namePattern := regexp.MustCompile(`^` + testParent + `/jobs/greeter/executions/greeter-[a-z0-9]{5}$`)
	if !namePattern.MatchString(meta.GetName()) {
		t.Fatalf("execution name %q does not match %v", meta.GetName(), namePattern)
	}

	e, err := op.Wait(t.Context()) // the official client's own wait
	if err != nil {
		t.Fatal(err)
	}
	if e.GetName() != meta.GetName() || e.GetSucceededCount() != 1 || e.GetFailedCount() != 0 || e.GetRunningCount() != 0 {
		t.Fatalf("finished execution = %v", e)
	}
	if got := readFile(t, filepath.Join(dir, "env")); got != "hi override greeter 0\n" {
		t.Errorf("the task saw %q, want %q", got, "hi override greeter 0\n")
	}
	// CLOUD_RUN_EXECUTION is the execution's ID, the last segment of its name.
	if got, want := readFile(t, filepath.Join(dir, "execution")), e.GetName()[strings.LastIndex(e.GetName(), "/")+1:]+"\n"; got != want {
		t.Errorf("the task saw CLOUD_RUN_EXECUTION %q, want %q", got, want)
	}
	if c := findCondition(t, e.GetConditions(), "Completed"); c.GetState() != runpb.Condition_CONDITION_SUCCEEDED {
		t.Errorf("Completed = %v, want succeeded", c)
	}
	for _, typ := range []string{"ResourcesAvailable", "Started"} {
		if c := findCondition(t, e.GetConditions(), typ); c.GetState() != runpb.Condition_CONDITION_SUCCEEDED {
			t.Errorf("%s = %v, want succeeded", typ, c)
		}
	}
	if e.GetReconciling() || e.GetStartTime() == nil || e.GetCompletionTime() == nil || e.GetTaskCount() != 1 ||
		e.GetParallelism() != 1 || e.GetJob() != "greeter" || e.GetLabels()["team"] != "sandrun" || e.GetUid() == "" || e.GetEtag() == "" {
		t.Errorf("execution fields = %v", e)
	}
	// The execution's template shows the override.
	if env := e.GetTemplate().GetContainers()[0].GetEnv(); len(env) != 3 || env[1].GetValue() != "override" {
		t.Errorf("execution env = %v", env)
	}

	// The job records its latest execution.
	got, err := h.jobs.GetJob(t.Context(), &runpb.GetJobRequest{Name: testParent + "/jobs/greeter"})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetExecutionCount() != 1 || got.GetLatestCreatedExecution().GetName() != e.GetName() ||
		got.GetLatestCreatedExecution().GetCompletionStatus() != runpb.ExecutionReference_EXECUTION_SUCCEEDED {
		t.Errorf("job after the run: count %d, latest %v", got.GetExecutionCount(), got.GetLatestCreatedExecution())
	}

	// Logs: per-task files behind the task's log URI, and the console.
	tasks := h.listTasks(t, e.GetName())
	if len(tasks) != 1 {
		t.Fatalf("%d tasks, want 1", len(tasks))
	}
	task := tasks[0]
	if got := readFile(t, logPath(t, task.GetLogUri(), "stdout.log")); got != "hello override\n" {
		t.Errorf("stdout.log = %q", got)
	}
	if got := readFile(t, logPath(t, task.GetLogUri(), "stderr.log")); got != "oops\n" {
		t.Errorf("stderr.log = %q", got)
	}
	if !strings.HasPrefix(task.GetLogUri(), e.GetLogUri()+"/") {
		t.Errorf("task log uri %q is not under the execution's %q", task.GetLogUri(), e.GetLogUri())
	}
	id := strings.TrimPrefix(e.GetName(), testParent+"/jobs/greeter/executions/")
	for _, line := range []string{id + "/task0: hello override\n", id + "/task0: oops\n"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("output %q lacks %q", out.String(), line)
		}
	}
}

func TestFailingTask(t *testing.T) {
	h := newHarness(t, Config{})
	h.createJob(t, "fails", shellJob("exit 3"))
	e := h.runAndWait(t, "fails", nil)
	if e.GetFailedCount() != 1 || e.GetSucceededCount() != 0 {
		t.Fatalf("failed %d, succeeded %d: want 1, 0", e.GetFailedCount(), e.GetSucceededCount())
	}
	c := findCondition(t, e.GetConditions(), "Completed")
	if c.GetState() != runpb.Condition_CONDITION_FAILED || c.GetExecutionReason() != runpb.Condition_NON_ZERO_EXIT_CODE ||
		!strings.Contains(c.GetMessage(), "-task0 failed with message: The container exited with an error (exit code 3).") {
		t.Errorf("Completed = %v", c)
	}
	task := h.listTasks(t, e.GetName())[0]
	if r := task.GetLastAttemptResult(); r.GetExitCode() != 3 || r.GetStatus().GetCode() == 0 {
		t.Errorf("last attempt = %v, want exit code 3 and an error status", r)
	}
	if c := findCondition(t, task.GetConditions(), "Completed"); c.GetState() != runpb.Condition_CONDITION_FAILED {
		t.Errorf("task Completed = %v", c)
	}
	job, err := h.jobs.GetJob(t.Context(), &runpb.GetJobRequest{Name: testParent + "/jobs/fails"})
	if err != nil {
		t.Fatal(err)
	}
	if st := job.GetLatestCreatedExecution().GetCompletionStatus(); st != runpb.ExecutionReference_EXECUTION_FAILED {
		t.Errorf("latest execution status = %v, want failed", st)
	}
}

func TestImages(t *testing.T) {
	script := filepath.Join(t.TempDir(), "entrypoint")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"entrypoint $*\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	relative, err := filepath.Rel(cwd, script)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, Config{Images: map[string]string{"example/hello": "sh", "example/script": relative}})
	tests := []struct {
		image   string
		command []string
		args    []string
		want    string // "" for success, else part of the failure message
	}{
		{image: "example/hello", args: []string{"-c", "echo from the image"}},
		{image: "example/script", args: []string{"a", "b"}},
		{image: "example/hello", command: []string{"./relative"}, want: `executable "./relative"`},
		{image: "example/hello", command: []string{"true"}},
		{image: "example/unknown", command: []string{"true"}},
		{image: "example/unknown", want: `image "example/unknown" has no local program`},
		{image: "example/hello", command: []string{"no-such-program-here"}, want: `executable "no-such-program-here" not found`},
		{image: "example/hello", command: []string{"/nonexistent/prog"}, want: `executable "/nonexistent/prog"`},
	}
	for i, tt := range tests {
		id := fmt.Sprintf("image-%d", i)
		h.createJob(t, id, &runpb.Job{Template: &runpb.ExecutionTemplate{Template: &runpb.TaskTemplate{
			Containers: []*runpb.Container{{Image: tt.image, Command: tt.command, Args: tt.args}},
			Retries:    &runpb.TaskTemplate_MaxRetries{MaxRetries: 0},
		}}})
		e := h.runAndWait(t, id, nil)
		msg := findCondition(t, e.GetConditions(), "Completed").GetMessage()
		switch {
		case tt.want == "" && e.GetSucceededCount() != 1:
			t.Errorf("%+v: failed: %s", tt, msg)
		case tt.want != "" && (e.GetFailedCount() != 1 || !strings.Contains(msg, "Application failed to start: "+tt.want)):
			t.Errorf("%+v: Completed message %q, want one about %q", tt, msg, tt.want)
		case tt.image == "example/script":
			task := h.listTasks(t, e.GetName())[0]
			if got := readFile(t, logPath(t, task.GetLogUri(), "stdout.log")); got != "entrypoint a b\n" {
				t.Errorf("the image's program printed %q", got)
			}
		}
	}
}

func TestTaskTimeout(t *testing.T) {
	h := newHarness(t, Config{StopGrace: 300 * time.Millisecond})
	h.createJob(t, "slow", shellJob("sleep 30"))
	h.createJob(t, "stubborn", shellJob(`trap "" TERM; sleep 30`))
	for _, tt := range []struct {
		job    string
		signal int32
	}{
		{"slow", 15},    // SIGTERM ends it
		{"stubborn", 9}, // it ignores SIGTERM: SIGKILL after StopGrace
	} {
		start := time.Now()
		e := h.runAndWait(t, tt.job, &runpb.RunJobRequest_Overrides{Timeout: durationpb.New(300 * time.Millisecond)})
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s: took %v", tt.job, took)
		}
		c := findCondition(t, e.GetConditions(), "Completed")
		if e.GetFailedCount() != 1 || c.GetState() != runpb.Condition_CONDITION_FAILED ||
			!strings.HasSuffix(c.GetMessage(), "failed with message: The configured timeout was reached.") {
			t.Errorf("%s: failed %d, Completed %v", tt.job, e.GetFailedCount(), c)
		}
		task := h.listTasks(t, e.GetName())[0]
		if r := task.GetLastAttemptResult(); r.GetStatus().GetCode() != int32(codes.DeadlineExceeded) || r.GetTermSignal() != tt.signal {
			t.Errorf("%s: last attempt = %v, want DEADLINE_EXCEEDED and signal %d", tt.job, r, tt.signal)
		}
		if task.GetTimeout().AsDuration() != 300*time.Millisecond {
			t.Errorf("%s: task timeout %v, want the override", tt.job, task.GetTimeout().AsDuration())
		}
	}
}

func TestTaskCountAndIndexes(t *testing.T) {
	h := newHarness(t, Config{})
	dir := t.TempDir()
	h.createJob(t, "fan", shellJob(fmt.Sprintf(`echo "$CLOUD_RUN_TASK_COUNT" > %s/$CLOUD_RUN_TASK_INDEX`, dir)))
	e := h.runAndWait(t, "fan", &runpb.RunJobRequest_Overrides{TaskCount: 3})
	if e.GetTaskCount() != 3 || e.GetSucceededCount() != 3 {
		t.Fatalf("task count %d, succeeded %d: want 3, 3", e.GetTaskCount(), e.GetSucceededCount())
	}
	for i := range 3 {
		if got := readFile(t, filepath.Join(dir, fmt.Sprint(i))); got != "3\n" {
			t.Errorf("task %d saw CLOUD_RUN_TASK_COUNT %q", i, got)
		}
	}

	// Tasks list by index, in pages.
	it := h.tasks.ListTasks(t.Context(), &runpb.ListTasksRequest{Parent: e.GetName(), PageSize: 2})
	var names []string
	for i := int32(0); ; i++ {
		task, err := it.Next()
		if err != nil {
			break
		}
		if task.GetIndex() != i || task.GetName() != fmt.Sprintf("%s/tasks/%s-task%d", e.GetName(), e.GetName()[strings.LastIndex(e.GetName(), "/")+1:], i) {
			t.Errorf("task %d: index %d, name %s", i, task.GetIndex(), task.GetName())
		}
		if task.GetJob() != "fan" || task.GetExecution() != e.GetName()[strings.LastIndex(e.GetName(), "/")+1:] ||
			task.GetExecutionEnvironment() != runpb.ExecutionEnvironment_EXECUTION_ENVIRONMENT_GEN2 ||
			task.GetRetried() != 0 || task.GetStartTime() == nil || task.GetCompletionTime() == nil || task.GetLogUri() == "" {
			t.Errorf("task %d = %v", i, task)
		}
		names = append(names, task.GetName())
	}
	if len(names) != 3 {
		t.Fatalf("listed %d tasks, want 3", len(names))
	}
	got, err := h.tasks.GetTask(t.Context(), &runpb.GetTaskRequest{Name: names[1]})
	if err != nil || got.GetIndex() != 1 {
		t.Errorf("GetTask = %v, %v", got, err)
	}
	_, err = h.tasks.GetTask(t.Context(), &runpb.GetTaskRequest{Name: e.GetName() + "/tasks/nope-task9"})
	wantCode(t, err, codes.NotFound, "get a missing task")
}

func TestParallelismOneRunsTasksInTurn(t *testing.T) {
	h := newHarness(t, Config{})
	lock := filepath.Join(t.TempDir(), "lock")
	// A task fails if another one holds the lock.
	j := shellJob(fmt.Sprintf(`mkdir %[1]s || exit 1; sleep 0.1; rmdir %[1]s`, lock))
	j.Template.TaskCount, j.Template.Parallelism = 3, 1
	h.createJob(t, "serial", j)
	e := h.runAndWait(t, "serial", nil)
	if e.GetParallelism() != 1 || e.GetSucceededCount() != 3 {
		t.Fatalf("parallelism %d, succeeded %d (failed %d): want 1, 3", e.GetParallelism(), e.GetSucceededCount(), e.GetFailedCount())
	}
	tasks := h.listTasks(t, e.GetName())
	slices.SortFunc(tasks, func(a, b *runpb.Task) int { return a.GetStartTime().AsTime().Compare(b.GetStartTime().AsTime()) })
	for i := 1; i < len(tasks); i++ {
		if tasks[i].GetStartTime().AsTime().Before(tasks[i-1].GetCompletionTime().AsTime()) {
			t.Errorf("task %d started at %v, before task %d completed at %v", tasks[i].GetIndex(), tasks[i].GetStartTime().AsTime(),
				tasks[i-1].GetIndex(), tasks[i-1].GetCompletionTime().AsTime())
		}
	}
}

func TestMaxRetries(t *testing.T) {
	h := newHarness(t, Config{})
	dir := t.TempDir()
	// Attempts 0 and 1 fail; attempt 2 succeeds.
	j := shellJob(fmt.Sprintf(`echo "$CLOUD_RUN_TASK_ATTEMPT" >> %s/attempts; [ "$CLOUD_RUN_TASK_ATTEMPT" = 2 ]`, dir))
	j.Template.Template.Retries = &runpb.TaskTemplate_MaxRetries{MaxRetries: 2}
	h.createJob(t, "flaky", j)
	e := h.runAndWait(t, "flaky", nil)
	if e.GetSucceededCount() != 1 || e.GetRetriedCount() != 1 || e.GetFailedCount() != 0 {
		t.Errorf("succeeded %d, retried %d, failed %d: want 1, 1, 0", e.GetSucceededCount(), e.GetRetriedCount(), e.GetFailedCount())
	}
	if got := readFile(t, filepath.Join(dir, "attempts")); got != "0\n1\n2\n" {
		t.Errorf("attempts = %q, want 0, 1, 2", got)
	}
	task := h.listTasks(t, e.GetName())[0]
	if task.GetRetried() != 2 || task.GetMaxRetries() != 2 || !strings.HasSuffix(task.GetLogUri(), "task0-attempt2") {
		t.Errorf("task: retried %d, max retries %d, log uri %s", task.GetRetried(), task.GetMaxRetries(), task.GetLogUri())
	}

	// When the retries run out, the task fails.
	j = shellJob(fmt.Sprintf(`echo "$CLOUD_RUN_TASK_ATTEMPT" >> %s/doomed; exit 1`, dir))
	j.Template.Template.Retries = &runpb.TaskTemplate_MaxRetries{MaxRetries: 1}
	h.createJob(t, "doomed", j)
	e = h.runAndWait(t, "doomed", nil)
	if e.GetFailedCount() != 1 || e.GetRetriedCount() != 1 {
		t.Errorf("failed %d, retried %d: want 1, 1", e.GetFailedCount(), e.GetRetriedCount())
	}
	if got := readFile(t, filepath.Join(dir, "doomed")); got != "0\n1\n" {
		t.Errorf("attempts = %q, want 0, 1", got)
	}
}

func TestStartDelay(t *testing.T) {
	const delay = 300 * time.Millisecond
	h := newHarness(t, Config{StartDelay: delay})
	dir := t.TempDir()
	h.createJob(t, "cold", shellJob("true"))
	op := h.runJob(t, "cold", nil)
	e, err := h.execs.GetExecution(t.Context(), &runpb.GetExecutionRequest{Name: mustMetadata(t, op).GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if e.GetStartTime() != nil || e.GetRunningCount() != 0 || !e.GetReconciling() ||
		findCondition(t, e.GetConditions(), "Started").GetState() != runpb.Condition_CONDITION_PENDING ||
		findCondition(t, e.GetConditions(), "ResourcesAvailable").GetState() != runpb.Condition_CONDITION_RECONCILING {
		t.Errorf("during the cold start: %v", e)
	}
	e = h.wait(t, op)
	if took := e.GetStartTime().AsTime().Sub(e.GetCreateTime().AsTime()); took < delay {
		t.Errorf("started %v after creation, want at least %v", took, delay)
	}

	// The annotation overrides the server's delay.
	j := shellJob("true")
	j.Annotations = map[string]string{StartDelayAnnotation: "0s"}
	h.createJob(t, "warm", j)
	e = h.runAndWait(t, "warm", nil)
	if took := e.GetStartTime().AsTime().Sub(e.GetCreateTime().AsTime()); took >= delay {
		t.Errorf("warm job started %v after creation, want less than %v", took, delay)
	}

	// Cancelling during the cold start: no task ever runs.
	j = shellJob(fmt.Sprintf("touch %s/ran", dir))
	j.Annotations = map[string]string{StartDelayAnnotation: "1h"}
	j.Template.TaskCount = 2
	h.createJob(t, "frozen", j)
	op = h.runJob(t, "frozen", nil)
	cop, err := h.execs.CancelExecution(t.Context(), &runpb.CancelExecutionRequest{Name: mustMetadata(t, op).GetName()})
	if err != nil {
		t.Fatal(err)
	}
	e = h.wait(t, op)
	if e.GetCancelledCount() != 2 || e.GetStartTime() != nil ||
		findCondition(t, e.GetConditions(), "Completed").GetExecutionReason() != runpb.Condition_CANCELLED {
		t.Errorf("cancelled during the cold start: %v", e)
	}
	if ce, err := cop.Wait(t.Context()); err != nil || ce.GetCancelledCount() != 2 {
		t.Errorf("cancel operation = %v, %v", ce, err)
	}
	if fileExists(filepath.Join(dir, "ran")) {
		t.Error("a task ran although the execution was cancelled before it started")
	}
}

func TestListAndDeleteExecutions(t *testing.T) {
	h := newHarness(t, Config{})
	h.createJob(t, "a", shellJob("true"))
	h.createJob(t, "b", shellJob("true"))
	var want []string // newest first
	for range 3 {
		want = slices.Insert(want, 0, h.runAndWait(t, "a", nil).GetName())
	}
	other := h.runAndWait(t, "b", nil).GetName()

	list := func(parent string, pageSize int32) []string {
		var names []string
		it := h.execs.ListExecutions(t.Context(), &runpb.ListExecutionsRequest{Parent: parent, PageSize: pageSize})
		for e, err := range it.All() {
			if err != nil {
				t.Fatalf("list %s: %v", parent, err)
			}
			names = append(names, e.GetName())
		}
		return names
	}
	if got := list(testParent+"/jobs/a", 2); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("executions of a = %v, want %v", got, want)
	}
	if got := list(testParent+"/jobs/-", 0); fmt.Sprint(got) != fmt.Sprint(append([]string{other}, want...)) {
		t.Errorf("executions of every job = %v", got)
	}

	// A running execution cannot be deleted; a finished one can.
	h.createJob(t, "sleeper", shellJob("sleep 600"))
	op := h.runJob(t, "sleeper", nil)
	running := mustMetadata(t, op).GetName()
	_, err := h.execs.DeleteExecution(t.Context(), &runpb.DeleteExecutionRequest{Name: running})
	wantCode(t, err, codes.FailedPrecondition, "delete a running execution")
	if _, err := h.execs.CancelExecution(t.Context(), &runpb.CancelExecutionRequest{Name: running}); err != nil {
		t.Fatal(err)
	}
	h.wait(t, op)
	_, err = h.execs.CancelExecution(t.Context(), &runpb.CancelExecutionRequest{Name: running})
	wantCode(t, err, codes.FailedPrecondition, "cancel a finished execution")

	dop, err := h.execs.DeleteExecution(t.Context(), &runpb.DeleteExecutionRequest{Name: want[0]})
	if err != nil {
		t.Fatal(err)
	}
	if deleted, err := dop.Wait(t.Context()); err != nil || deleted.GetDeleteTime() == nil {
		t.Errorf("delete = %v, %v", deleted, err)
	}
	_, err = h.execs.GetExecution(t.Context(), &runpb.GetExecutionRequest{Name: want[0]})
	wantCode(t, err, codes.NotFound, "get a deleted execution")
	_, err = h.tasks.GetTask(t.Context(), &runpb.GetTaskRequest{Name: want[0] + "/tasks/" + want[0][strings.LastIndex(want[0], "/")+1:] + "-task0"})
	wantCode(t, err, codes.NotFound, "get a task of a deleted execution")
	if got := list(testParent+"/jobs/a", 0); len(got) != 2 {
		t.Errorf("after the delete, a has %v", got)
	}
	_, err = h.execs.GetExecution(t.Context(), &runpb.GetExecutionRequest{Name: testParent + "/jobs/a/executions/"})
	wantCode(t, err, codes.InvalidArgument, "get a malformed execution name")
}

func mustMetadata(t *testing.T, op interface {
	Metadata() (*runpb.Execution, error)
}) *runpb.Execution {
	t.Helper()
	e, err := op.Metadata()
	if err != nil || e.GetName() == "" {
		t.Fatalf("operation metadata = %v, %v; want the execution", e, err)
	}
	return e
}
