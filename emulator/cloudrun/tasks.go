package cloudrun

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type taskPhase int

const (
	taskPending   taskPhase = iota // not started yet, or waiting for its retry
	taskRunning                    // its process runs
	taskSucceeded                  // an attempt exited 0
	taskFailed                     // the last allowed attempt failed
	taskCancelled                  // the execution was cancelled before the task ended
)

// task is one task of an execution: attempt after attempt until one
// succeeds, the retries run out, or the execution is cancelled.
type task struct {
	index int32
	name  taskName
	uid   string

	phase   taskPhase
	attempt int32     // the current or last attempt, from 0
	retried int32     // attempts that failed and were retried
	proc    *taskProc // while its process runs
	logDir  string    // the current or last attempt's directory

	scheduled, started, completed, updated time.Time

	// The last attempt's outcome.
	last    *runpb.TaskAttemptResult
	message string
	reason  runpb.Condition_ExecutionReason
}

func (t *task) snapshotLocked(e *execution) *runpb.Task {
	out := &runpb.Task{
		Name:                 t.name.String(),
		Uid:                  t.uid,
		Generation:           1,
		ObservedGeneration:   1,
		Labels:               e.base.GetLabels(),
		Annotations:          e.base.GetAnnotations(),
		CreateTime:           timestamppb.New(e.created),
		ScheduledTime:        timestampOrNil(t.scheduled),
		StartTime:            timestampOrNil(t.started),
		CompletionTime:       timestampOrNil(t.completed),
		UpdateTime:           timestamppb.New(t.updated),
		DeleteTime:           timestampOrNil(e.deleted),
		Job:                  e.name.job,
		Execution:            e.name.execution,
		Containers:           []*runpb.Container{e.plan.container},
		Volumes:              e.plan.template.GetVolumes(),
		MaxRetries:           e.plan.maxRetries,
		Timeout:              durationpb.New(e.plan.timeout),
		ServiceAccount:       e.plan.template.GetServiceAccount(),
		ExecutionEnvironment: e.plan.template.GetExecutionEnvironment(),
		EncryptionKey:        e.plan.template.GetEncryptionKey(),
		VpcAccess:            e.plan.template.GetVpcAccess(),
		NodeSelector:         e.plan.template.GetNodeSelector(),
		Reconciling:          t.phase == taskPending || t.phase == taskRunning,
		Conditions:           t.conditionsLocked(),
		Index:                t.index,
		Retried:              t.retried,
		LastAttemptResult:    t.last,
	}
	if out.ExecutionEnvironment == runpb.ExecutionEnvironment_EXECUTION_ENVIRONMENT_UNSPECIFIED {
		out.ExecutionEnvironment = runpb.ExecutionEnvironment_EXECUTION_ENVIRONMENT_GEN2
	}
	if t.logDir != "" {
		out.LogUri = "file://" + t.logDir
	}
	out = proto.CloneOf(out)
	out.Etag = etagOf(out)
	return out
}

// conditionsLocked reports the task's Completed and Started conditions.
func (t *task) conditionsLocked() []*runpb.Condition {
	var completed, started *runpb.Condition
	switch t.phase {
	case taskPending:
		msg := "Waiting to be scheduled."
		if t.retried > 0 {
			msg = fmt.Sprintf("Attempt %d failed with message: %s Retrying.", t.attempt-1, t.message)
		}
		completed = condition("Completed", runpb.Condition_CONDITION_PENDING, msg, t.updated)
	case taskRunning:
		completed = condition("Completed", runpb.Condition_CONDITION_RECONCILING, fmt.Sprintf("Attempt %d is running.", t.attempt), t.started)
	case taskSucceeded:
		completed = condition("Completed", runpb.Condition_CONDITION_SUCCEEDED, "The task completed successfully.", t.completed)
	case taskFailed:
		completed = condition("Completed", runpb.Condition_CONDITION_FAILED, t.message, t.completed)
		completed.Severity = runpb.Condition_ERROR
		if t.reason != runpb.Condition_EXECUTION_REASON_UNDEFINED {
			completed.Reasons = &runpb.Condition_ExecutionReason_{ExecutionReason: t.reason}
		}
	case taskCancelled:
		completed = condition("Completed", runpb.Condition_CONDITION_FAILED, "The task was cancelled.", t.completed)
		completed.Reasons = &runpb.Condition_ExecutionReason_{ExecutionReason: runpb.Condition_CANCELLED}
		completed.Severity = runpb.Condition_WARNING
	}
	if t.started.IsZero() {
		started = condition("Started", runpb.Condition_CONDITION_PENDING, "The task has not started.", t.updated)
	} else {
		started = condition("Started", runpb.Condition_CONDITION_SUCCEEDED, "The task started.", t.started)
	}
	return []*runpb.Condition{completed, started}
}

// tasksAPI serves google.cloud.run.v2.Tasks.
type tasksAPI struct {
	runpb.UnimplementedTasksServer
	s *Server
}

// GetTask returns a task.
func (a tasksAPI) GetTask(ctx context.Context, req *runpb.GetTaskRequest) (*runpb.Task, error) {
	req, err := wireCopy(req)
	if err != nil {
		return nil, err
	}
	name, err := parseTask(req.GetName())
	if err != nil {
		return nil, err
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	if e := a.s.executions[name.executionName.String()]; e != nil {
		for _, t := range e.tasks {
			if t.name == name {
				return t.snapshotLocked(e), nil
			}
		}
	}
	return nil, status.Errorf(codes.NotFound, "task %s not found", name)
}

// ListTasks lists an execution's tasks by index.
func (a tasksAPI) ListTasks(ctx context.Context, req *runpb.ListTasksRequest) (*runpb.ListTasksResponse, error) {
	req, err := wireCopy(req)
	if err != nil {
		return nil, err
	}
	parent, err := parseExecution(req.GetParent())
	if err != nil {
		return nil, err
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	e := a.s.executions[parent.String()]
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "execution %s not found", parent)
	}
	page, next, err := paginate(e.tasks, func(t *task) string { return fmt.Sprintf("%08d", t.index) }, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &runpb.ListTasksResponse{NextPageToken: next}
	for _, t := range page {
		resp.Tasks = append(resp.Tasks, t.snapshotLocked(e))
	}
	return resp, nil
}
