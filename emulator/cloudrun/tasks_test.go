package cloudrun

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
)

func TestRunJobWithArgsOverride(t *testing.T) {
	h := newHarness(t, Config{})
	out := filepath.Join(t.TempDir(), "args")
	// The command prints each of its arguments on a line of its own.
	h.createJob(t, "echoer", &runpb.Job{Template: &runpb.ExecutionTemplate{Template: &runpb.TaskTemplate{
		Containers: []*runpb.Container{{
			Name:    "main",
			Image:   "local/shell",
			Command: []string{"sh", "-c", `printf '[%s]\n' "$@" > "$OUT"`, "sh"},
			Args:    []string{"job-a", "job-b"},
			Env:     []*runpb.EnvVar{{Name: "OUT", Values: &runpb.EnvVar_Value{Value: out}}},
		}},
		Retries: &runpb.TaskTemplate_MaxRetries{MaxRetries: 0},
	}}})
	tests := []struct {
		name string
		ov   *runpb.RunJobRequest_Overrides_ContainerOverride
		want []string // the args the task gets
	}{
		{"no override", nil, []string{"job-a", "job-b"}},
		{"args", &runpb.RunJobRequest_Overrides_ContainerOverride{Args: []string{"over ride", "--flag=x", "3"}}, []string{"over ride", "--flag=x", "3"}},
		{"args of the named container", &runpb.RunJobRequest_Overrides_ContainerOverride{Name: "main", Args: []string{"named"}}, []string{"named"}},
		{"clear args", &runpb.RunJobRequest_Overrides_ContainerOverride{ClearArgs: true}, nil},
	}
	for _, tt := range tests {
		var ov *runpb.RunJobRequest_Overrides
		if tt.ov != nil {
			ov = &runpb.RunJobRequest_Overrides{ContainerOverrides: []*runpb.RunJobRequest_Overrides_ContainerOverride{tt.ov}}
		}
		e := h.runAndWait(t, "echoer", ov)
		if e.GetSucceededCount() != 1 {
			t.Fatalf("%s: execution = %v", tt.name, e)
		}
		want := "[]\n" // printf with no arguments prints its format once
		if len(tt.want) > 0 {
			want = "[" + strings.Join(tt.want, "]\n[") + "]\n"
		}
		if got := readFile(t, out); got != want {
			t.Errorf("%s: the task got the arguments %q, want %q", tt.name, got, want)
		}
		// The execution's and the task's container show the args that ran.
		if got := e.GetTemplate().GetContainers()[0].GetArgs(); !slices.Equal(got, tt.want) {
			t.Errorf("%s: execution args %q, want %q", tt.name, got, tt.want)
		}
		if got := h.listTasks(t, e.GetName())[0].GetContainers()[0].GetArgs(); !slices.Equal(got, tt.want) {
			t.Errorf("%s: task args %q, want %q", tt.name, got, tt.want)
		}
	}
	// The job itself keeps its own args.
	j, err := h.jobs.GetJob(t.Context(), &runpb.GetJobRequest{Name: testParent + "/jobs/echoer"})
	if err != nil {
		t.Fatal(err)
	}
	if got := j.GetTemplate().GetTemplate().GetContainers()[0].GetArgs(); !slices.Equal(got, []string{"job-a", "job-b"}) {
		t.Errorf("job args after the runs = %q", got)
	}
}

func TestEachAttemptRunsInAFreshWorkingDirectory(t *testing.T) {
	h := newHarness(t, Config{})
	dir := t.TempDir()
	// Each attempt records its working directory and what it held, leaves a
	// file behind, and the first attempt of every task fails.
	j := shellJob(fmt.Sprintf(`f=%s/"$CLOUD_RUN_EXECUTION-$CLOUD_RUN_TASK_INDEX-$CLOUD_RUN_TASK_ATTEMPT"
pwd -P > "$f"; ls -A >> "$f"
echo left > leftover; mkdir -p sub && touch sub/more
[ "$CLOUD_RUN_TASK_ATTEMPT" = 1 ]`, dir))
	j.Template.TaskCount = 2
	j.Template.Template.Retries = &runpb.TaskTemplate_MaxRetries{MaxRetries: 1}
	h.createJob(t, "fresh", j)

	seen := map[string]string{} // working directory -> the attempt that had it
	for range 2 {
		e := h.runAndWait(t, "fresh", nil)
		if e.GetSucceededCount() != 2 || e.GetRetriedCount() != 2 {
			t.Fatalf("execution: succeeded %d, retried %d, want 2, 2: %v", e.GetSucceededCount(), e.GetRetriedCount(), e)
		}
		id := e.GetName()[strings.LastIndex(e.GetName(), "/")+1:]
		for task := range 2 {
			for attempt := range 2 {
				who := fmt.Sprintf("%s-%d-%d", id, task, attempt)
				wd, listing, _ := strings.Cut(readFile(t, filepath.Join(dir, who)), "\n")
				if listing != "" {
					t.Errorf("attempt %s started in %s holding %q, want an empty directory", who, wd, listing)
				}
				if !filepath.IsAbs(wd) {
					t.Errorf("attempt %s: working directory %q", who, wd)
				}
				if other, ok := seen[wd]; ok {
					t.Errorf("attempts %s and %s both ran in %s", other, who, wd)
				}
				seen[wd] = who
			}
		}
	}
	if len(seen) != 8 {
		t.Errorf("%d working directories for 8 attempts: %v", len(seen), seen)
	}
}

func TestRunningCountWhileATaskRuns(t *testing.T) {
	h := newHarness(t, Config{})
	dir := t.TempDir()
	// Two tasks, one at a time; each blocks until the test writes to its
	// FIFO.
	for i := range 2 {
		if err := syscall.Mkfifo(filepath.Join(dir, fmt.Sprintf("release%d", i)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	j := shellJob(fmt.Sprintf(`read line < %s/release"$CLOUD_RUN_TASK_INDEX"`, dir))
	j.Template.TaskCount, j.Template.Parallelism = 2, 1
	h.createJob(t, "blocked", j)
	op := h.runJob(t, "blocked", nil)
	name := mustMetadata(t, op).GetName()

	for i := range int32(2) {
		var e *runpb.Execution
		eventually(t, 10*time.Second, fmt.Sprintf("task %d running", i), func() bool {
			var err error
			e, err = h.execs.GetExecution(t.Context(), &runpb.GetExecutionRequest{Name: name})
			if err != nil {
				t.Fatal(err)
			}
			return e.GetRunningCount() == 1 && e.GetSucceededCount() == i
		})
		if !e.GetReconciling() || e.GetStartTime() == nil || e.GetCompletionTime() != nil || e.GetFailedCount() != 0 ||
			findCondition(t, e.GetConditions(), "Completed").GetState() != runpb.Condition_CONDITION_RECONCILING {
			t.Errorf("while task %d runs: %v", i, e)
		}
		tasks := h.listTasks(t, name)
		if r := tasks[i]; !r.GetReconciling() || r.GetStartTime() == nil || r.GetCompletionTime() != nil {
			t.Errorf("running task %d = %v", i, r)
		}
		if i == 0 && tasks[1].GetStartTime() != nil {
			t.Errorf("task 1 started while task 0 runs, with parallelism 1: %v", tasks[1])
		}
		// Let the task end: opening the FIFO waits for its reader.
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("release%d", i)), []byte("go\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e := h.wait(t, op)
	if e.GetRunningCount() != 0 || e.GetSucceededCount() != 2 {
		t.Errorf("finished execution: running %d, succeeded %d, want 0, 2", e.GetRunningCount(), e.GetSucceededCount())
	}
}
