package cloudrun

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type execPhase int

const (
	execPending  execPhase = iota // waiting out the cold start
	execRunning                   // tasks run
	execFinished                  // every task has ended; the operations are done
)

// execPlan is what an execution runs: the job's template with the run's
// overrides applied. It does not change once the execution exists.
type execPlan struct {
	template    *runpb.TaskTemplate // Execution.template
	container   *runpb.Container    // template.containers[0]
	env         []string            // Config.Env, then the container's env
	taskCount   int32
	parallelism int32 // 1..taskCount
	maxRetries  int32
	timeout     time.Duration // per attempt
	startDelay  time.Duration
}

// execution is a stored execution. base holds the fields fixed at creation;
// the counts, times and conditions are derived from the tasks and the phase
// when it is read.
type execution struct {
	name  executionName
	base  *runpb.Execution
	plan  execPlan
	dir   string // holds one directory per task attempt
	tasks []*task
	ops   []*operation // finish with the execution

	phase           execPhase
	cancelRequested bool
	cancelReason    string        // set when the emulator itself cancelled
	cancel          chan struct{} // closed when cancellation is requested
	done            chan struct{} // closed when the phase becomes execFinished

	created, started, cancelled, completed, updated, deleted time.Time

	outcome runpb.ExecutionReference_CompletionStatus // once finished
	failed  *task                                     // the first task that failed for good
}

// planExecution applies a run's overrides to job j (a valid, stored job).
func (s *Server) planExecution(j *runpb.Job, ov *runpb.RunJobRequest_Overrides) (execPlan, error) {
	et := j.GetTemplate()
	tt := proto.CloneOf(et.GetTemplate())
	c := tt.Containers[0]
	overridden := false
	for i, co := range ov.GetContainerOverrides() {
		field := fmt.Sprintf("overrides.container_overrides[%d]", i)
		switch {
		case co.GetName() != "" && co.GetName() != c.GetName():
			return execPlan{}, status.Errorf(codes.InvalidArgument, "%s: job %s has no container named %q", field, j.GetName(), co.GetName())
		case overridden:
			return execPlan{}, status.Errorf(codes.InvalidArgument, "%s: the container is overridden twice", field)
		case co.GetClearArgs() && len(co.GetArgs()) > 0:
			return execPlan{}, status.Errorf(codes.InvalidArgument, "%s: clear_args and args are both set", field)
		}
		overridden = true
		if err := checkStrings(field+".args", co.GetArgs()); err != nil {
			return execPlan{}, err
		}
		if err := checkEnv(field+".env", co.GetEnv()); err != nil {
			return execPlan{}, err
		}
		if co.GetClearArgs() {
			c.Args = nil
		}
		if len(co.GetArgs()) > 0 {
			c.Args = co.GetArgs()
		}
		c.Env = mergeEnvVars(c.Env, co.GetEnv())
	}
	p := execPlan{template: tt, container: c, taskCount: et.GetTaskCount(), maxRetries: tt.GetMaxRetries(), startDelay: s.cfg.StartDelay}
	switch n := ov.GetTaskCount(); {
	case n < 0 || n > maxTaskCount:
		return execPlan{}, status.Errorf(codes.InvalidArgument, "overrides.task_count %d is outside 1..%d", n, maxTaskCount)
	case n > 0:
		p.taskCount = n
	}
	if ov.GetTimeout() != nil {
		tt.Timeout = ov.GetTimeout()
	}
	var err error
	if p.timeout, err = taskTimeout("timeout", tt.Timeout); err != nil {
		return execPlan{}, err
	}
	p.parallelism = et.GetParallelism()
	if p.parallelism == 0 || p.parallelism > p.taskCount {
		p.parallelism = p.taskCount
	}
	if v, ok := j.GetAnnotations()[StartDelayAnnotation]; ok {
		if p.startDelay, err = parseStartDelay(v); err != nil {
			return execPlan{}, err
		}
	}
	p.env = mergeEnv(s.cfg.Env, envStrings(c.Env))
	return p, nil
}

// newExecutionLocked creates an execution of job j, ready to run.
func (s *Server) newExecutionLocked(jn jobName, j *job, plan execPlan) (*execution, error) {
	root, err := s.workDirLocked()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "run job %s: %v", jn, err)
	}
	var name executionName
	for {
		name = executionName{jn, jn.job + "-" + randomSuffix()}
		if s.executions[name.String()] == nil {
			break
		}
	}
	now := time.Now()
	labels := maps.Clone(j.pb.GetLabels())
	annotations := maps.Clone(j.pb.GetAnnotations())
	if labels == nil {
		labels = map[string]string{}
	}
	if annotations == nil {
		annotations = map[string]string{}
	}
	maps.Copy(labels, j.pb.GetTemplate().GetLabels())
	maps.Copy(annotations, j.pb.GetTemplate().GetAnnotations())
	dir := filepath.Join(root, jn.project, jn.location, name.execution)
	e := &execution{
		name: name,
		base: &runpb.Execution{
			Name:               name.String(),
			Uid:                newUID(),
			Generation:         1,
			ObservedGeneration: 1,
			Labels:             labels,
			Annotations:        annotations,
			CreateTime:         timestamppb.New(now),
			LaunchStage:        j.pb.GetLaunchStage(),
			Job:                jn.job,
			Parallelism:        plan.parallelism,
			TaskCount:          plan.taskCount,
			Template:           plan.template,
			LogUri:             "file://" + dir,
		},
		plan:    plan,
		dir:     dir,
		cancel:  make(chan struct{}),
		done:    make(chan struct{}),
		created: now,
		updated: now,
	}
	for i := range plan.taskCount {
		e.tasks = append(e.tasks, &task{
			index:   i,
			name:    taskName{name, fmt.Sprintf("%s-task%d", name.execution, i)},
			uid:     newUID(),
			updated: now,
		})
	}
	s.executions[name.String()] = e
	s.active[e] = struct{}{}
	j.executionCount++
	j.latest = e
	return e, nil
}

// randomSuffix is five random lowercase letters and digits, as Cloud Run
// appends to a job's name to name an execution.
func randomSuffix() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 5)
	for i := range b {
		b[i] = alphabet[rand.N(len(alphabet))]
	}
	return string(b)
}

// requestCancelLocked starts cancelling e: the runner stops starting tasks
// and ends the running ones. reason is empty when a caller asked for it.
func (s *Server) requestCancelLocked(e *execution, reason string) {
	if e.cancelRequested || e.phase == execFinished {
		return
	}
	now := time.Now()
	e.cancelRequested, e.cancelReason = true, reason
	e.cancelled, e.updated = now, now
	close(e.cancel)
	s.log.Info("execution cancelling", "event", "cloudrun.execution.cancelling", "execution", e.name.String(), "reason", reason)
}

func (e *execution) snapshotLocked() *runpb.Execution {
	out := proto.CloneOf(e.base)
	for _, t := range e.tasks {
		switch t.phase {
		case taskRunning:
			out.RunningCount++
		case taskSucceeded:
			out.SucceededCount++
		case taskFailed:
			out.FailedCount++
		case taskCancelled:
			out.CancelledCount++
		}
		if t.retried > 0 {
			out.RetriedCount++
		}
	}
	out.StartTime = timestampOrNil(e.started)
	out.CompletionTime = timestampOrNil(e.completed)
	out.DeleteTime = timestampOrNil(e.deleted)
	out.UpdateTime = timestamppb.New(e.updated)
	out.Reconciling = e.phase != execFinished
	out.Conditions = e.conditionsLocked()
	out.Etag = etagOf(out)
	return out
}

// conditionsLocked reports the execution's Completed, ResourcesAvailable and
// Started conditions, worded as Cloud Run words them.
func (e *execution) conditionsLocked() []*runpb.Condition {
	var resources, started *runpb.Condition
	switch {
	case !e.started.IsZero():
		took := e.started.Sub(e.created).Round(time.Millisecond)
		resources = condition("ResourcesAvailable", runpb.Condition_CONDITION_SUCCEEDED, fmt.Sprintf("Provisioned resources in %v.", took), e.started)
		started = condition("Started", runpb.Condition_CONDITION_SUCCEEDED, fmt.Sprintf("Started deployed execution in %v.", took), e.started)
	case e.phase == execFinished:
		resources = condition("ResourcesAvailable", runpb.Condition_CONDITION_FAILED, "The execution was cancelled before resources were provisioned.", e.completed)
		started = condition("Started", runpb.Condition_CONDITION_FAILED, "The execution was cancelled before it started.", e.completed)
	default:
		resources = condition("ResourcesAvailable", runpb.Condition_CONDITION_RECONCILING, "Provisioning resources.", e.created)
		started = condition("Started", runpb.Condition_CONDITION_PENDING, "Waiting for resources to be provisioned.", e.created)
	}
	return []*runpb.Condition{e.completedConditionLocked(), resources, started}
}

func (e *execution) completedConditionLocked() *runpb.Condition {
	const typ = "Completed"
	switch {
	case e.phase == execFinished && e.outcome == runpb.ExecutionReference_EXECUTION_SUCCEEDED:
		took := e.completed.Sub(e.started).Round(time.Millisecond)
		return condition(typ, runpb.Condition_CONDITION_SUCCEEDED, fmt.Sprintf("Execution completed successfully in %v.", took), e.completed)
	case e.phase == execFinished && e.outcome == runpb.ExecutionReference_EXECUTION_CANCELLED:
		msg := "The execution was cancelled."
		if e.cancelReason != "" {
			msg = "The execution was cancelled: " + e.cancelReason + "."
		}
		c := condition(typ, runpb.Condition_CONDITION_FAILED, msg, e.completed)
		c.Reasons = &runpb.Condition_ExecutionReason_{ExecutionReason: runpb.Condition_CANCELLED}
		c.Severity = runpb.Condition_WARNING
		return c
	case e.phase == execFinished:
		msg, reason := "Execution failed.", runpb.Condition_EXECUTION_REASON_UNDEFINED
		if e.failed != nil {
			msg = fmt.Sprintf("Task %s failed with message: %s", e.failed.name.task, e.failed.message)
			reason = e.failed.reason
		}
		c := condition(typ, runpb.Condition_CONDITION_FAILED, msg, e.completed)
		if reason != runpb.Condition_EXECUTION_REASON_UNDEFINED {
			c.Reasons = &runpb.Condition_ExecutionReason_{ExecutionReason: reason}
		}
		c.Severity = runpb.Condition_ERROR
		return c
	case e.cancelRequested:
		c := condition(typ, runpb.Condition_CONDITION_RECONCILING, "Cancelling the execution.", e.cancelled)
		c.Reasons = &runpb.Condition_ExecutionReason_{ExecutionReason: runpb.Condition_CANCELLING}
		return c
	case e.phase == execRunning:
		return condition(typ, runpb.Condition_CONDITION_RECONCILING, "The execution is running.", e.started)
	default:
		return condition(typ, runpb.Condition_CONDITION_PENDING, "Waiting for the execution to start.", e.created)
	}
}

// referenceLocked is the execution as Job.latest_created_execution shows it.
func (e *execution) referenceLocked() *runpb.ExecutionReference {
	st := runpb.ExecutionReference_EXECUTION_PENDING
	switch e.phase {
	case execRunning:
		st = runpb.ExecutionReference_EXECUTION_RUNNING
	case execFinished:
		st = e.outcome
	}
	return &runpb.ExecutionReference{
		Name:             e.name.String(),
		CreateTime:       timestamppb.New(e.created),
		CompletionTime:   timestampOrNil(e.completed),
		DeleteTime:       timestampOrNil(e.deleted),
		CompletionStatus: st,
	}
}

func condition(typ string, state runpb.Condition_State, message string, at time.Time) *runpb.Condition {
	return &runpb.Condition{Type: typ, State: state, Message: message, LastTransitionTime: timestamppb.New(at)}
}

func timestampOrNil(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// executionsAPI serves google.cloud.run.v2.Executions.
type executionsAPI struct {
	runpb.UnimplementedExecutionsServer
	s *Server
}

func (a executionsAPI) lookupLocked(name string) (*execution, error) {
	if _, err := parseExecution(name); err != nil {
		return nil, err
	}
	e := a.s.executions[name]
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "execution %s not found", name)
	}
	return e, nil
}

// GetExecution returns an execution.
func (a executionsAPI) GetExecution(ctx context.Context, req *runpb.GetExecutionRequest) (*runpb.Execution, error) {
	req, err := wireCopy(req)
	if err != nil {
		return nil, err
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	e, err := a.lookupLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	return e.snapshotLocked(), nil
}

// ListExecutions lists a job's executions, newest first. The job "-" lists
// the executions of every job of the location.
func (a executionsAPI) ListExecutions(ctx context.Context, req *runpb.ListExecutionsRequest) (*runpb.ListExecutionsResponse, error) {
	req, err := wireCopy(req)
	if err != nil {
		return nil, err
	}
	parent, err := parseJobOrWildcard(req.GetParent(), true)
	if err != nil {
		return nil, err
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	var execs []*execution
	for _, e := range a.s.executions {
		if e.name.locationName == parent.locationName && (parent.job == "-" || e.name.job == parent.job) {
			execs = append(execs, e)
		}
	}
	page, next, err := paginate(execs, func(e *execution) string { return newestFirstKey(e.created.UnixNano(), e.name.String()) },
		req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &runpb.ListExecutionsResponse{NextPageToken: next}
	for _, e := range page {
		resp.Executions = append(resp.Executions, e.snapshotLocked())
	}
	return resp, nil
}

// DeleteExecution deletes a finished execution and its tasks; a running one
// must be cancelled first (FailedPrecondition). The operation is done at
// once, with the deleted execution as its response.
func (a executionsAPI) DeleteExecution(ctx context.Context, req *runpb.DeleteExecutionRequest) (*longrunningpb.Operation, error) {
	req, err := wireCopy(req)
	if err != nil {
		return nil, err
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	if err := a.s.checkOpenLocked(); err != nil {
		return nil, err
	}
	e, err := a.lookupLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	snap := e.snapshotLocked()
	if err := checkEtag("execution", e.name.String(), req.GetEtag(), snap.Etag); err != nil {
		return nil, err
	}
	if e.phase != execFinished {
		return nil, status.Errorf(codes.FailedPrecondition, "execution %s is still running; cancel it first", e.name)
	}
	if req.GetValidateOnly() {
		return a.s.doneOperationLocked(e.name.locationName, snap)
	}
	e.deleted = time.Now()
	delete(a.s.executions, e.name.String())
	a.s.log.Info("execution deleted", "event", "cloudrun.execution.deleted", "execution", e.name.String())
	return a.s.doneOperationLocked(e.name.locationName, e.snapshotLocked())
}

// CancelExecution cancels a pending or running execution: no further task
// starts, and running tasks get SIGTERM, then SIGKILL after the stop grace.
// The operation is done when every task has stopped, with the cancelled
// execution as its response. A finished execution cannot be cancelled
// (FailedPrecondition).
func (a executionsAPI) CancelExecution(ctx context.Context, req *runpb.CancelExecutionRequest) (*longrunningpb.Operation, error) {
	req, err := wireCopy(req)
	if err != nil {
		return nil, err
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	if err := a.s.checkOpenLocked(); err != nil {
		return nil, err
	}
	e, err := a.lookupLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	snap := e.snapshotLocked()
	if err := checkEtag("execution", e.name.String(), req.GetEtag(), snap.Etag); err != nil {
		return nil, err
	}
	if e.phase == execFinished {
		return nil, status.Errorf(codes.FailedPrecondition, "execution %s has already finished", e.name)
	}
	if req.GetValidateOnly() {
		return a.s.doneOperationLocked(e.name.locationName, snap)
	}
	a.s.requestCancelLocked(e, "")
	return a.s.newOperationLocked(e.name.locationName, nil, e).protoLocked()
}
