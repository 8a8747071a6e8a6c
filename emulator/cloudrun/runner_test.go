package cloudrun

import (
	"context"
	"fmt"
	"github.com/sandrun/sandrun/internal/procfs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
)

// familyScript runs in a task: it starts a child (a subshell) that starts a
// grandchild, writes the pids of the main process, the child and the
// grandchild into dir, and sleeps.
func familyScript(dir string) string {
	return fmt.Sprintf(`(sleep 600 & echo $! > %[1]s/grandchild.tmp; mv %[1]s/grandchild.tmp %[1]s/grandchild; wait) &
echo $! > %[1]s/child
echo $$ > %[1]s/main
sleep 600`, dir)
}

// family waits for familyScript's pids.
func family(t *testing.T, dir string) []int {
	t.Helper()
	return []int{readPID(t, filepath.Join(dir, "main")), readPID(t, filepath.Join(dir, "child")), readPID(t, filepath.Join(dir, "grandchild"))}
}

func TestCancelEndsTheWholeProcessGroup(t *testing.T) {
	h := newHarness(t, Config{StopGrace: DefaultStopGrace})
	dir := t.TempDir()
	h.createJob(t, "sleeper", shellJob(familyScript(dir)))
	op := h.runJob(t, "sleeper", nil)
	name := mustMetadata(t, op).GetName()
	pids := family(t, dir)
	waitRunning(t, h.srv, name)

	start := time.Now()
	cop, err := h.execs.CancelExecution(t.Context(), &runpb.CancelExecutionRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		eventually(t, time.Second-time.Since(start), fmt.Sprintf("process %d ends", pid), func() bool { return procfs.Gone(pid) })
	}
	e, err := cop.Wait(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c := findCondition(t, e.GetConditions(), "Completed")
	if e.GetCancelledCount() != 1 || e.GetFailedCount() != 0 || c.GetExecutionReason() != runpb.Condition_CANCELLED ||
		c.GetMessage() != "The execution was cancelled." {
		t.Errorf("cancelled execution: cancelled %d, failed %d, Completed %v", e.GetCancelledCount(), e.GetFailedCount(), c)
	}
	if run := h.wait(t, op); run.GetCancelledCount() != 1 {
		t.Errorf("the RunJob operation ended with %v", run)
	}
	task := h.listTasks(t, name)[0]
	if findCondition(t, task.GetConditions(), "Completed").GetExecutionReason() != runpb.Condition_CANCELLED ||
		task.GetLastAttemptResult().GetStatus().GetCode() != int32(codes.Canceled) {
		t.Errorf("cancelled task = %v", task)
	}
	if got := h.srv.RunningExecutions(); slices.Contains(got, name) {
		t.Errorf("running executions %v still hold %s", got, name)
	}
}

func TestTaskProcessesDieWithTheTask(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux reaches processes outside the task's process group")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("needs bash")
	}
	h := newHarness(t, Config{})
	dir := t.TempDir()
	// With job control on (set -m), bash puts each background job in a
	// process group of its own: only the task's session holds it.
	bashJob := func(script string) *runpb.Job {
		j := shellJob(script)
		j.Template.Template.Containers[0].Command = []string{"bash", "-c"}
		return j
	}
	h.createJob(t, "leaves", bashJob(fmt.Sprintf(`set -m; sleep 600 & echo $! > %s/bg; exit 0`, dir)))
	h.createJob(t, "stays", bashJob(fmt.Sprintf(`set -m; sleep 600 & echo $! > %s/bg2; sleep 600`, dir)))

	// The main process exits: what it left behind dies with the container.
	e := h.runAndWait(t, "leaves", nil)
	if e.GetSucceededCount() != 1 {
		t.Fatalf("execution = %v", e)
	}
	bg := readPID(t, filepath.Join(dir, "bg"))
	if !procfs.Gone(bg) { // the execution ends once its processes have
		t.Errorf("background process %d outlived its task", bg)
	}

	// Cancelled: the background process in another group dies too.
	op := h.runJob(t, "stays", nil)
	bg2 := readPID(t, filepath.Join(dir, "bg2"))
	if _, err := h.execs.CancelExecution(t.Context(), &runpb.CancelExecutionRequest{Name: mustMetadata(t, op).GetName()}); err != nil {
		t.Fatal(err)
	}
	h.wait(t, op)
	if !procfs.Gone(bg2) {
		t.Errorf("background process %d outlived its cancelled task", bg2)
	}
}

func TestKillExecutionFailsTasksAndRetries(t *testing.T) {
	h := newHarness(t, Config{})
	dir := t.TempDir()
	// The first attempt sleeps until killed; the retry succeeds.
	j := shellJob(fmt.Sprintf(`if [ "$CLOUD_RUN_TASK_ATTEMPT" = 0 ]; then echo $$ > %s/pid; sleep 600; fi`, dir))
	j.Template.Template.Retries = &runpb.TaskTemplate_MaxRetries{MaxRetries: 1}
	h.createJob(t, "victim", j)
	op := h.runJob(t, "victim", nil)
	name := mustMetadata(t, op).GetName()
	pid := readPID(t, filepath.Join(dir, "pid"))
	waitRunning(t, h.srv, name)
	if got := h.srv.TaskPIDs(name); !slices.Equal(got, []int{pid}) {
		t.Fatalf("TaskPIDs = %v, want the task's shell %d", got, pid)
	}
	if err := h.srv.KillExecution(name); err != nil {
		t.Fatal(err)
	}
	e := h.wait(t, op)
	if got := h.srv.TaskPIDs(name); len(got) != 0 {
		t.Errorf("TaskPIDs of a finished execution = %v", got)
	}
	if got := h.srv.TaskPIDs(testParent + "/jobs/victim/executions/victim-zzzzz"); got != nil {
		t.Errorf("TaskPIDs of a missing execution = %v", got)
	}
	if e.GetSucceededCount() != 1 || e.GetRetriedCount() != 1 {
		t.Errorf("succeeded %d, retried %d: want 1, 1", e.GetSucceededCount(), e.GetRetriedCount())
	}
	if !procfs.Gone(pid) {
		t.Errorf("killed process %d still runs", pid)
	}

	// Without retries the task fails, with the signal in its result.
	os.Remove(filepath.Join(dir, "pid"))
	j.Template.Template.Retries = &runpb.TaskTemplate_MaxRetries{MaxRetries: 0}
	h.createJob(t, "victim2", j)
	op = h.runJob(t, "victim2", nil)
	name = mustMetadata(t, op).GetName()
	readPID(t, filepath.Join(dir, "pid"))
	waitRunning(t, h.srv, name)
	if err := h.srv.KillExecution(name); err != nil {
		t.Fatal(err)
	}
	e = h.wait(t, op)
	c := findCondition(t, e.GetConditions(), "Completed")
	if e.GetFailedCount() != 1 || !strings.HasSuffix(c.GetMessage(), "Container terminated on signal 9.") {
		t.Errorf("failed %d, Completed %v", e.GetFailedCount(), c)
	}
	if r := h.listTasks(t, name)[0].GetLastAttemptResult(); r.GetTermSignal() != 9 {
		t.Errorf("last attempt = %v, want signal 9", r)
	}

	wantCode(t, h.srv.KillExecution(name), codes.FailedPrecondition, "kill a finished execution")
	wantCode(t, h.srv.KillExecution(testParent+"/jobs/victim/executions/victim-zzzzz"), codes.NotFound, "kill a missing execution")
	wantCode(t, h.srv.KillExecution("nonsense"), codes.InvalidArgument, "kill a malformed name")
}

func TestDeleteJobCancelsItsExecutions(t *testing.T) {
	h := newHarness(t, Config{})
	dir := t.TempDir()
	h.createJob(t, "doomed", shellJob(familyScript(dir)))
	op := h.runJob(t, "doomed", nil)
	name := mustMetadata(t, op).GetName()
	pids := family(t, dir)

	dop, err := h.jobs.DeleteJob(t.Context(), &runpb.DeleteJobRequest{Name: testParent + "/jobs/doomed"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dop.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if !procfs.Gone(pid) {
			t.Errorf("process %d outlived the deletion of its job", pid)
		}
	}
	_, err = h.execs.GetExecution(t.Context(), &runpb.GetExecutionRequest{Name: name})
	wantCode(t, err, codes.NotFound, "get an execution of a deleted job")
	e := h.wait(t, op) // the RunJob operation still finishes
	if msg := findCondition(t, e.GetConditions(), "Completed").GetMessage(); msg != "The execution was cancelled: its job was deleted." {
		t.Errorf("Completed message = %q", msg)
	}
}

func TestOperations(t *testing.T) {
	h := newHarness(t, Config{})
	h.createJob(t, "ops", shellJob("sleep 600"))
	op := h.runJob(t, "ops", nil)
	if !strings.HasPrefix(op.Name(), testParent+"/operations/") {
		t.Errorf("operation name %q", op.Name())
	}
	got, err := h.jobs.GetOperation(t.Context(), &longrunningpb.GetOperationRequest{Name: op.Name()})
	if err != nil || got.GetDone() {
		t.Fatalf("GetOperation = %v, %v; want a running operation", got, err)
	}
	// WaitOperation returns at its timeout, not done.
	start := time.Now()
	got, err = h.jobs.WaitOperation(t.Context(), &longrunningpb.WaitOperationRequest{Name: op.Name(), Timeout: durationpb.New(100 * time.Millisecond)})
	if err != nil || got.GetDone() || time.Since(start) < 100*time.Millisecond {
		t.Errorf("WaitOperation = %v, %v after %v; want not done after 100ms", got, err, time.Since(start))
	}

	var names []string
	it := h.jobs.ListOperations(t.Context(), &longrunningpb.ListOperationsRequest{Name: testParent, PageSize: 1})
	for o, err := range it.All() {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, o.GetName())
	}
	if len(names) != 2 || names[0] != op.Name() { // newest first: the run, then the job's creation
		t.Errorf("operations = %v", names)
	}

	// Cancelling the RunJob operation cancels the execution.
	if err := h.jobs.LROClient.CancelOperation(t.Context(), &longrunningpb.CancelOperationRequest{Name: op.Name()}); err != nil {
		t.Fatal(err)
	}
	if e := h.wait(t, op); e.GetCancelledCount() != 1 {
		t.Errorf("after cancelling the operation: %v", e)
	}
	if err := h.jobs.DeleteOperation(t.Context(), &longrunningpb.DeleteOperationRequest{Name: op.Name()}); err != nil {
		t.Fatal(err)
	}
	_, err = h.jobs.GetOperation(t.Context(), &longrunningpb.GetOperationRequest{Name: op.Name()})
	wantCode(t, err, codes.NotFound, "get a deleted operation")
	_, err = h.jobs.GetOperation(t.Context(), &longrunningpb.GetOperationRequest{Name: "operations/x"})
	wantCode(t, err, codes.InvalidArgument, "get a malformed operation name")
}

func TestCloseEndsEverything(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, Config{WorkDir: dir, StopGrace: 5 * time.Second})
	pidDir := t.TempDir()
	h.createJob(t, "long", shellJob(familyScript(pidDir)))
	stubborn := shellJob(fmt.Sprintf(`trap "" TERM; echo $$ > %s/stubborn; sleep 600`, pidDir))
	h.createJob(t, "stubborn", stubborn)
	cold := shellJob("true")
	cold.Annotations = map[string]string{StartDelayAnnotation: "1h"}
	h.createJob(t, "cold", cold)

	long := h.runJob(t, "long", nil)
	h.runJob(t, "stubborn", nil)
	coldOp := h.runJob(t, "cold", nil)
	pids := append(family(t, pidDir), readPID(t, filepath.Join(pidDir, "stubborn")))
	// Pending WaitOperation calls return when the server closes.
	waited := make(chan error, 1)
	go func() {
		_, err := h.jobs.WaitOperation(context.Background(), &longrunningpb.WaitOperationRequest{Name: coldOp.Name(), Timeout: durationpb.New(time.Hour)})
		waited <- err
	}()

	// The stubborn task ignores SIGTERM; a short deadline makes Close kill it.
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if err := h.srv.Close(ctx); err == nil {
		t.Error("Close met a task that ignores SIGTERM within 500ms and reported no error")
	}
	for _, pid := range pids {
		if !procfs.Gone(pid) {
			t.Errorf("process %d outlived Close", pid)
		}
	}
	if err := <-waited; err != nil {
		t.Errorf("WaitOperation during Close: %v", err)
	}
	eventually(t, 2*time.Second, "the server's goroutines end", func() bool { return len(serverGoroutines()) == 0 })

	e, err := h.execs.GetExecution(t.Context(), &runpb.GetExecutionRequest{Name: mustMetadata(t, long).GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if msg := findCondition(t, e.GetConditions(), "Completed").GetMessage(); msg != "The execution was cancelled: the emulator shut down." {
		t.Errorf("after Close, Completed = %q", msg)
	}
	_, err = h.jobs.RunJob(t.Context(), &runpb.RunJobRequest{Name: testParent + "/jobs/long"})
	wantCode(t, err, codes.Unavailable, "run a job after Close")
	if err := h.srv.Close(t.Context()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCloseRemovesItsOwnWorkDir(t *testing.T) {
	srv := New(Config{})
	srv.mu.Lock()
	dir, err := srv.workDirLocked()
	srv.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if fileExists(dir) {
		t.Errorf("work dir %s outlived Close", dir)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// crashHelperEnv, when set, makes TestCrashedEmulatorLeavesNoOrphans the
// emulator that crashes: it runs a task and waits to be killed.
const crashHelperEnv = "CLOUDRUN_TEST_CRASH_HELPER_DIR"

func TestCrashedEmulatorLeavesNoOrphans(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal is Linux's")
	}
	if dir := os.Getenv(crashHelperEnv); dir != "" {
		h := newHarness(t, Config{})
		h.createJob(t, "orphan", shellJob(fmt.Sprintf(`echo $$ > %s/pid.tmp && mv %[1]s/pid.tmp %[1]s/pid && exec sleep 600`, dir)))
		h.runJob(t, "orphan", nil)
		select {} // until killed
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashedEmulatorLeavesNoOrphans$")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	pid := readPID(t, filepath.Join(dir, "pid"))
	if procfs.Gone(pid) {
		t.Fatalf("task process %d is not running", pid)
	}
	if err := cmd.Process.Kill(); err != nil { // the emulator crashes
		t.Fatal(err)
	}
	cmd.Wait()
	eventually(t, 5*time.Second, "the task dies with its emulator", func() bool { return procfs.Gone(pid) })
}

// waitRunning waits until the server counts execution name as running: its
// task may write files before the server has recorded its process.
func waitRunning(t *testing.T, srv *Server, name string) {
	t.Helper()
	eventually(t, 5*time.Second, name+" is running", func() bool { return slices.Contains(srv.RunningExecutions(), name) })
}

// TestMigrateExecutionWarnsPausesAndResumesTheTask: a maintenance event
// warns the task's main process (SIGTSTP), then pauses every process of
// the task, then continues them and tells the main process (SIGCONT). A
// process the task had stopped itself stays stopped.
func TestMigrateExecutionWarnsPausesAndResumesTheTask(t *testing.T) {
	h := newHarness(t, Config{})
	dir := t.TempDir()
	signals := filepath.Join(dir, "signals")
	script := fmt.Sprintf(`trap 'echo tstp >> %[1]s/signals' TSTP
trap 'echo cont >> %[1]s/signals' CONT
sleep 600 & echo $! > %[1]s/stopped.tmp; kill -STOP $!; mv %[1]s/stopped.tmp %[1]s/stopped
(sleep 600 & echo $! > %[1]s/grandchild.tmp; mv %[1]s/grandchild.tmp %[1]s/grandchild; wait) &
echo $! > %[1]s/child
echo $$ > %[1]s/main
while :; do sleep 0.05; done`, dir)
	h.createJob(t, "moved", shellJob(script))
	op := h.runJob(t, "moved", nil)
	name := mustMetadata(t, op).GetName()
	pids := family(t, dir)
	stopped := readPID(t, filepath.Join(dir, "stopped"))
	waitRunning(t, h.srv, name)

	const notice, pause = 300 * time.Millisecond, time.Second
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- h.srv.MigrateExecution(t.Context(), name, notice, pause) }()
	eventually(t, 5*time.Second, "the main process is warned", func() bool {
		b, _ := os.ReadFile(signals)
		return string(b) == "tstp\n"
	})
	for _, pid := range pids {
		eventually(t, 5*time.Second, fmt.Sprintf("process %d is paused", pid), func() bool { return procfs.Stopped(pid) })
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < notice+pause {
		t.Errorf("the event took %v, want at least the notice and the pause (%v)", took, notice+pause)
	}
	for _, pid := range pids {
		if procfs.Stopped(pid) || procfs.Gone(pid) {
			t.Errorf("process %d is not running after the event", pid)
		}
	}
	if !procfs.Stopped(stopped) {
		t.Errorf("process %d, stopped before the event, was continued by it", stopped)
	}
	eventually(t, 5*time.Second, "the main process is told it runs again", func() bool {
		b, _ := os.ReadFile(signals)
		return string(b) == "tstp\ncont\n"
	})
	if got := h.srv.RunningExecutions(); !slices.Contains(got, name) {
		t.Errorf("running executions %v after the event, want %s among them", got, name)
	}

	wantCode(t, h.srv.MigrateExecution(t.Context(), testParent+"/jobs/moved/executions/moved-zzzzz", 0, 0), codes.NotFound, "migrate a missing execution")
	wantCode(t, h.srv.MigrateExecution(t.Context(), "nonsense", 0, 0), codes.InvalidArgument, "migrate a malformed name")
}
