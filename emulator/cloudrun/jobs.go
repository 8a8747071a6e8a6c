package cloudrun

import (
	"context"
	"strings"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Cloud Run's limits and defaults for a job's template.
const (
	maxTaskCount       = 10000
	maxRetriesLimit    = 10
	defaultMaxRetries  = 3
	defaultTaskTimeout = 600 * time.Second
	maxTaskTimeout     = 168 * time.Hour
	maxStartDelay      = 24 * time.Hour
)

// job is a stored job. pb holds the spec and the output fields that change
// with it; the execution count and latest execution are filled in when the
// job is read.
type job struct {
	pb             *runpb.Job
	executionCount int32
	latest         *execution
}

func (j *job) snapshotLocked() *runpb.Job {
	out := proto.CloneOf(j.pb)
	out.ExecutionCount = j.executionCount
	if j.latest != nil {
		out.LatestCreatedExecution = j.latest.referenceLocked()
	}
	return out
}

// jobSpec keeps the fields of in that a caller may set, validated and with
// Cloud Run's defaults filled in (task count 1, max retries 3, timeout 600 s).
func jobSpec(in *runpb.Job) (*runpb.Job, error) {
	if in == nil {
		return nil, status.Error(codes.InvalidArgument, "job is required")
	}
	if in.GetCreateExecution() != nil {
		return nil, status.Error(codes.InvalidArgument,
			"start_execution_token and run_execution_token are not supported by the Cloud Run emulator; call RunJob")
	}
	spec := &runpb.Job{
		Labels:              in.GetLabels(),
		Annotations:         in.GetAnnotations(),
		Client:              in.GetClient(),
		ClientVersion:       in.GetClientVersion(),
		LaunchStage:         in.GetLaunchStage(),
		BinaryAuthorization: in.GetBinaryAuthorization(),
		Template:            proto.CloneOf(in.GetTemplate()),
	}
	if v, ok := spec.Annotations[StartDelayAnnotation]; ok {
		if _, err := parseStartDelay(v); err != nil {
			return nil, err
		}
	}
	et := spec.GetTemplate()
	if et == nil {
		return nil, status.Error(codes.InvalidArgument, "job.template is required")
	}
	switch {
	case et.TaskCount < 0 || et.TaskCount > maxTaskCount:
		return nil, status.Errorf(codes.InvalidArgument, "job.template.task_count %d is outside 1..%d", et.TaskCount, maxTaskCount)
	case et.TaskCount == 0:
		et.TaskCount = 1
	}
	if et.Parallelism < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "job.template.parallelism %d is negative", et.Parallelism)
	}
	tt := et.GetTemplate()
	if tt == nil {
		return nil, status.Error(codes.InvalidArgument, "job.template.template is required")
	}
	switch n := len(tt.Containers); {
	case n == 0:
		return nil, status.Error(codes.InvalidArgument, "job.template.template.containers: one container is required")
	case n > 1:
		return nil, status.Errorf(codes.InvalidArgument,
			"job.template.template.containers: %d containers given, but the Cloud Run emulator runs one container per task", n)
	}
	c := tt.Containers[0]
	if c.GetImage() == "" {
		return nil, status.Error(codes.InvalidArgument, "job.template.template.containers[0].image is required")
	}
	if err := checkStrings("job.template.template.containers[0].command", c.GetCommand()); err != nil {
		return nil, err
	}
	if err := checkStrings("job.template.template.containers[0].args", c.GetArgs()); err != nil {
		return nil, err
	}
	if err := checkEnv("job.template.template.containers[0].env", c.GetEnv()); err != nil {
		return nil, err
	}
	if tt.Retries == nil {
		tt.Retries = &runpb.TaskTemplate_MaxRetries{MaxRetries: defaultMaxRetries}
	} else if r := tt.GetMaxRetries(); r < 0 || r > maxRetriesLimit {
		return nil, status.Errorf(codes.InvalidArgument, "job.template.template.max_retries %d is outside 0..%d", r, maxRetriesLimit)
	}
	if tt.Timeout == nil {
		tt.Timeout = durationpb.New(defaultTaskTimeout)
	} else if _, err := taskTimeout("job.template.template.timeout", tt.Timeout); err != nil {
		return nil, err
	}
	return spec, nil
}

// taskTimeout validates a task timeout: more than zero, at most 168 h.
func taskTimeout(field string, d *durationpb.Duration) (time.Duration, error) {
	if err := d.CheckValid(); err != nil {
		return 0, status.Errorf(codes.InvalidArgument, "%s: %v", field, err)
	}
	t := d.AsDuration()
	if t <= 0 || t > maxTaskTimeout {
		return 0, status.Errorf(codes.InvalidArgument, "%s %v is outside (0s, %v]", field, t, maxTaskTimeout)
	}
	return t, nil
}

func parseStartDelay(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > maxStartDelay {
		return 0, status.Errorf(codes.InvalidArgument, "annotation %s=%q: want a Go duration between 0s and %v, such as \"3s\"",
			StartDelayAnnotation, v, maxStartDelay)
	}
	return d, nil
}

// checkStrings refuses NUL bytes, which no process argument can hold.
func checkStrings(field string, values []string) error {
	for i, v := range values {
		if strings.ContainsRune(v, 0) {
			return status.Errorf(codes.InvalidArgument, "%s[%d] contains a NUL byte", field, i)
		}
	}
	return nil
}

// checkEnv validates env vars: unique names without "=" or NUL, literal
// values (the emulator has no Secret Manager).
func checkEnv(field string, env []*runpb.EnvVar) error {
	seen := map[string]bool{}
	for i, e := range env {
		name := e.GetName()
		switch {
		case name == "" || strings.ContainsAny(name, "=\x00"):
			return status.Errorf(codes.InvalidArgument, "%s[%d]: invalid name %q", field, i, name)
		case seen[name]:
			return status.Errorf(codes.InvalidArgument, "%s[%d]: %s is set twice", field, i, name)
		case e.GetValueSource() != nil:
			return status.Errorf(codes.InvalidArgument,
				"%s[%d]: %s takes its value from Secret Manager, which the Cloud Run emulator does not have; set value instead", field, i, name)
		case strings.ContainsRune(e.GetValue(), 0):
			return status.Errorf(codes.InvalidArgument, "%s[%d]: the value of %s contains a NUL byte", field, i, name)
		}
		seen[name] = true
	}
	return nil
}

// readyCondition is the terminal condition of a job whose spec is valid.
func readyCondition(now time.Time) *runpb.Condition {
	return &runpb.Condition{
		Type:               "Ready",
		State:              runpb.Condition_CONDITION_SUCCEEDED,
		LastTransitionTime: timestamppb.New(now),
	}
}

// putJobLocked stores spec as the job name, creating it or replacing the
// previous generation.
func (s *Server) putJobLocked(name jobName, spec *runpb.Job, now time.Time) *job {
	pb := spec
	pb.Name = name.String()
	pb.UpdateTime = timestamppb.New(now)
	j := s.jobs[pb.Name]
	if j == nil {
		j = &job{}
		pb.Uid = newUID()
		pb.Generation = 1
		pb.CreateTime = pb.UpdateTime
		pb.TerminalCondition = readyCondition(now)
		s.jobs[pb.Name] = j
	} else {
		pb.Uid = j.pb.Uid
		pb.Generation = j.pb.Generation + 1
		pb.CreateTime = j.pb.CreateTime
		pb.TerminalCondition = j.pb.TerminalCondition // still Ready, since then
	}
	pb.ObservedGeneration = pb.Generation
	pb.Etag = etagOf(pb)
	j.pb = pb
	return j
}

// jobsAPI serves google.cloud.run.v2.Jobs.
type jobsAPI struct {
	runpb.UnimplementedJobsServer
	s *Server
}

func (a jobsAPI) lookupLocked(name string) (jobName, *job, error) {
	n, err := parseJob(name)
	if err != nil {
		return jobName{}, nil, err
	}
	j := a.s.jobs[name]
	if j == nil {
		return n, nil, status.Errorf(codes.NotFound, "job %s not found", name)
	}
	return n, j, nil
}

// CreateJob stores a job. The operation is done at once; its metadata and
// response are the job.
func (a jobsAPI) CreateJob(ctx context.Context, req *runpb.CreateJobRequest) (*longrunningpb.Operation, error) {
	req, err := wireCopy(req)
	if err != nil {
		return nil, err
	}
	loc, err := parseLocation(req.GetParent())
	if err != nil {
		return nil, err
	}
	if err := validateJobID(req.GetJobId()); err != nil {
		return nil, err
	}
	name := jobName{loc, req.GetJobId()}
	if n := req.GetJob().GetName(); n != "" && n != name.String() {
		return nil, status.Errorf(codes.InvalidArgument, "job.name %q does not match parent and job_id (%s); leave it empty", n, name)
	}
	spec, err := jobSpec(req.GetJob())
	if err != nil {
		return nil, err
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	if err := a.s.checkOpenLocked(); err != nil {
		return nil, err
	}
	if a.s.jobs[name.String()] != nil {
		return nil, status.Errorf(codes.AlreadyExists, "job %s already exists", name)
	}
	if req.GetValidateOnly() {
		spec.Name = name.String()
		return a.s.doneOperationLocked(loc, spec)
	}
	j := a.s.putJobLocked(name, spec, time.Now())
	a.s.log.Info("job created", "event", "cloudrun.job.created", "job", name.String())
	return a.s.doneOperationLocked(loc, j.snapshotLocked())
}

// GetJob returns a job.
func (a jobsAPI) GetJob(ctx context.Context, req *runpb.GetJobRequest) (*runpb.Job, error) {
	req, err := wireCopy(req)
	if err != nil {
		return nil, err
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	_, j, err := a.lookupLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	return j.snapshotLocked(), nil
}

// ListJobs lists a location's jobs by name.
func (a jobsAPI) ListJobs(ctx context.Context, req *runpb.ListJobsRequest) (*runpb.ListJobsResponse, error) {
	req, err := wireCopy(req)
	if err != nil {
		return nil, err
	}
	loc, err := parseLocation(req.GetParent())
	if err != nil {
		return nil, err
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	prefix := loc.String() + "/jobs/"
	var jobs []*job
	for name, j := range a.s.jobs {
		if strings.HasPrefix(name, prefix) {
			jobs = append(jobs, j)
		}
	}
	page, next, err := paginate(jobs, func(j *job) string { return j.pb.Name }, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &runpb.ListJobsResponse{NextPageToken: next}
	for _, j := range page {
		resp.Jobs = append(resp.Jobs, j.snapshotLocked())
	}
	return resp, nil
}

// UpdateJob replaces a job's spec (Cloud Run's v2 update has no field mask)
// and bumps its generation; with allow_missing it creates a missing job.
// Running executions keep the spec they started with.
func (a jobsAPI) UpdateJob(ctx context.Context, req *runpb.UpdateJobRequest) (*longrunningpb.Operation, error) {
	req, err := wireCopy(req)
	if err != nil {
		return nil, err
	}
	if req.GetJob() == nil {
		return nil, status.Error(codes.InvalidArgument, "job is required")
	}
	name, err := parseJob(req.GetJob().GetName())
	if err != nil {
		return nil, err
	}
	spec, err := jobSpec(req.GetJob())
	if err != nil {
		return nil, err
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	if err := a.s.checkOpenLocked(); err != nil {
		return nil, err
	}
	j := a.s.jobs[name.String()]
	switch {
	case j == nil && !req.GetAllowMissing():
		return nil, status.Errorf(codes.NotFound, "job %s not found", name)
	case j != nil:
		if err := checkEtag("job", name.String(), req.GetJob().GetEtag(), j.pb.Etag); err != nil {
			return nil, err
		}
	}
	if req.GetValidateOnly() {
		spec.Name = name.String()
		return a.s.doneOperationLocked(name.locationName, spec)
	}
	j = a.s.putJobLocked(name, spec, time.Now())
	a.s.log.Info("job updated", "event", "cloudrun.job.updated", "job", name.String(), "generation", j.pb.Generation)
	return a.s.doneOperationLocked(name.locationName, j.snapshotLocked())
}

// DeleteJob deletes a job and its executions. Running executions are
// cancelled first; the operation is done when they have all stopped, with the
// deleted job as its response. The job is gone (NotFound, and its name free)
// as soon as the call returns.
func (a jobsAPI) DeleteJob(ctx context.Context, req *runpb.DeleteJobRequest) (*longrunningpb.Operation, error) {
	req, err := wireCopy(req)
	if err != nil {
		return nil, err
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	if err := a.s.checkOpenLocked(); err != nil {
		return nil, err
	}
	name, j, err := a.lookupLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	if err := checkEtag("job", name.String(), req.GetEtag(), j.pb.Etag); err != nil {
		return nil, err
	}
	deleted := j.snapshotLocked()
	if req.GetValidateOnly() {
		return a.s.doneOperationLocked(name.locationName, deleted)
	}
	now := time.Now()
	deleted.DeleteTime = timestamppb.New(now)
	delete(a.s.jobs, name.String())
	var running []*execution
	for en, e := range a.s.executions {
		if e.name.jobName == name {
			delete(a.s.executions, en)
			if e.phase != execFinished {
				a.s.requestCancelLocked(e, "its job was deleted")
				running = append(running, e)
			}
		}
	}
	a.s.log.Info("job deleted", "event", "cloudrun.job.deleted", "job", name.String(), "cancelled_executions", len(running))
	op := a.s.newOperationLocked(name.locationName, deleted, nil)
	if len(running) == 0 {
		op.completeLocked(deleted)
		return op.protoLocked()
	}
	// The server is open (the job existed and Close cancels everything), so
	// the wait group may grow.
	a.s.wg.Add(1)
	go func() {
		defer a.s.wg.Done()
		for _, e := range running {
			<-e.done
		}
		a.s.mu.Lock()
		defer a.s.mu.Unlock()
		op.completeLocked(deleted)
	}()
	return op.protoLocked()
}

// RunJob creates an execution and starts it. The operation's metadata is the
// execution from the first response on (so a caller learns its name at
// once); the operation is done when the execution finishes, with the
// finished execution as its response.
func (a jobsAPI) RunJob(ctx context.Context, req *runpb.RunJobRequest) (*longrunningpb.Operation, error) {
	req, err := wireCopy(req)
	if err != nil {
		return nil, err
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	if err := a.s.checkOpenLocked(); err != nil {
		return nil, err
	}
	name, j, err := a.lookupLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	if err := checkEtag("job", name.String(), req.GetEtag(), j.pb.Etag); err != nil {
		return nil, err
	}
	plan, err := a.s.planExecution(j.pb, req.GetOverrides())
	if err != nil {
		return nil, err
	}
	if req.GetValidateOnly() {
		return a.s.doneOperationLocked(name.locationName, &runpb.Execution{
			Job: name.job, TaskCount: plan.taskCount, Parallelism: plan.parallelism, Template: plan.template,
		})
	}
	e, err := a.s.newExecutionLocked(name, j, plan)
	if err != nil {
		return nil, err
	}
	op := a.s.newOperationLocked(name.locationName, nil, e)
	a.s.wg.Add(1)
	go a.s.runExecution(e)
	a.s.log.Info("execution created", "event", "cloudrun.execution.created", "execution", e.name.String(),
		"tasks", plan.taskCount, "parallelism", plan.parallelism, "start_delay", plan.startDelay.String())
	return op.protoLocked()
}
