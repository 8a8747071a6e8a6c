// Package jobrunner launches, inspects and cancels session hosts as Cloud Run
// Jobs executions through the Cloud Run Admin API v2. It never decides when
// to launch; the dispatcher and the reaper do.
package jobrunner

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sandrun/sandrun/internal/gcp"
)

// EmulatorHostEnv names the variable that points the runner at the local
// cloud's Cloud Run Admin API (host:port) instead of Google's.
const EmulatorHostEnv = "CLOUDRUN_EMULATOR_HOST"

// ContainerName is the name of the host job's one container: RunJob's
// overrides name it, so that they apply to that container and a job
// defined with another name is refused rather than run without them. The
// Terraform names the container the same (terraform/run.tf; a test there
// compares them).
const ContainerName = "executor"

// Environment a host execution receives on top of the job's own.
const (
	EnvSessionID = "SANDRUN_SESSION_ID"
	EnvLaunchID  = "SANDRUN_LAUNCH_ID"
)

// Runner launches executions of one Cloud Run job.
type Runner struct {
	jobs  *run.JobsClient
	execs *run.ExecutionsClient
	// job is the job's full name: projects/P/locations/L/jobs/J.
	job string
	// launchEnv, if set, adds to every execution's environment.
	launchEnv LaunchEnv
}

// LaunchEnv is environment that every execution gets when it starts, as
// the host token keeper (package hostcred) gives each host its token.
type LaunchEnv interface {
	LaunchEnv(ctx context.Context) (map[string]string, error)
}

// AddLaunchEnv makes every later launch carry e's environment; a launch
// fails when e fails. Call it before launching.
func (r *Runner) AddLaunchEnv(e LaunchEnv) { r.launchEnv = e }

// ClientOptions returns the options that reach Cloud Run: the local cloud's
// endpoint when CLOUDRUN_EMULATOR_HOST is set, Google's otherwise.
func ClientOptions() []option.ClientOption { return gcp.EmulatorOptions(EmulatorHostEnv) }

// JobName returns the full name of a job.
func JobName(project, region, job string) string {
	return fmt.Sprintf("projects/%s/locations/%s/jobs/%s", project, region, job)
}

// New connects to Cloud Run for the job with the given full name.
func New(ctx context.Context, job string, opts ...option.ClientOption) (*Runner, error) {
	opts = append(ClientOptions(), opts...)
	jobs, err := run.NewJobsClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to Cloud Run jobs: %w", err)
	}
	execs, err := run.NewExecutionsClient(ctx, opts...)
	if err != nil {
		jobs.Close()
		return nil, fmt.Errorf("connect to Cloud Run executions: %w", err)
	}
	return &Runner{jobs: jobs, execs: execs, job: job}, nil
}

// Close releases the connections.
func (r *Runner) Close() error {
	return errors.Join(r.jobs.Close(), r.execs.Close())
}

// Job is the full name of the runner's job.
func (r *Runner) Job() string { return r.job }

// CheckJob reads the runner's job, to tell whether Cloud Run answers and
// the job exists.
func (r *Runner) CheckJob(ctx context.Context) error {
	if _, err := r.jobs.GetJob(ctx, &runpb.GetJobRequest{Name: r.job}); err != nil {
		return fmt.Errorf("get job %s: %w", r.job, err)
	}
	return nil
}

// Launch starts an execution of the job that hosts the session, with env
// added to the container's environment, and returns the execution's id (the
// last segment of its name, as the execution sees it in CLOUD_RUN_EXECUTION)
// without waiting for it to start.
func (r *Runner) Launch(ctx context.Context, sessionID, launchID string, env map[string]string) (string, error) {
	vars := []*runpb.EnvVar{
		{Name: EnvSessionID, Values: &runpb.EnvVar_Value{Value: sessionID}},
		{Name: EnvLaunchID, Values: &runpb.EnvVar_Value{Value: launchID}},
	}
	id, err := r.run(ctx, append(vars, envVars(env)...))
	if err != nil {
		return "", fmt.Errorf("launch host for session %s: %w", sessionID, err)
	}
	return id, nil
}

// LaunchPoolMember starts an execution of the job that waits, in the warm
// pool, for a session to be handed to it; env tells it which member it is.
func (r *Runner) LaunchPoolMember(ctx context.Context, memberID string, env map[string]string) (string, error) {
	id, err := r.run(ctx, envVars(env))
	if err != nil {
		return "", fmt.Errorf("launch pool host %s: %w", memberID, err)
	}
	return id, nil
}

// run starts an execution with vars (and the launch environment) added
// to its container's environment and returns its id.
func (r *Runner) run(ctx context.Context, vars []*runpb.EnvVar) (string, error) {
	if r.launchEnv != nil {
		env, err := r.launchEnv.LaunchEnv(ctx)
		if err != nil {
			return "", err
		}
		vars = append(vars, envVars(env)...)
	}
	op, err := r.jobs.RunJob(ctx, &runpb.RunJobRequest{
		Name:      r.job,
		Overrides: &runpb.RunJobRequest_Overrides{ContainerOverrides: []*runpb.RunJobRequest_Overrides_ContainerOverride{{Name: ContainerName, Env: vars}}},
	})
	if err != nil {
		return "", err
	}
	meta, err := op.Metadata()
	if err != nil {
		return "", fmt.Errorf("read execution: %w", err)
	}
	if meta == nil || meta.GetName() == "" {
		return "", fmt.Errorf("the operation %s names no execution", op.Name())
	}
	return path.Base(meta.GetName()), nil
}

// envVars turns env into Cloud Run's form, in name order.
func envVars(env map[string]string) []*runpb.EnvVar {
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names)
	vars := make([]*runpb.EnvVar, 0, len(env))
	for _, k := range names {
		vars = append(vars, &runpb.EnvVar{Name: k, Values: &runpb.EnvVar_Value{Value: env[k]}})
	}
	return vars
}

// fullName turns an execution id into the execution's resource name.
func (r *Runner) fullName(id string) string {
	if strings.Contains(id, "/") {
		return id
	}
	return r.job + "/executions/" + id
}

// Execution is what the runner reports of one execution.
type Execution struct {
	// ID is the execution's id (the last segment of its name).
	ID        string
	Running   bool
	CreatedAt time.Time
	// SessionID is the session the execution was launched for, read from
	// the environment of its task template ("" when it names none).
	SessionID string
}

// Get returns an execution, named by id or full name.
func (r *Runner) Get(ctx context.Context, id string) (Execution, error) {
	e, err := r.execs.GetExecution(ctx, &runpb.GetExecutionRequest{Name: r.fullName(id)})
	if err != nil {
		return Execution{}, fmt.Errorf("get execution %s: %w", id, err)
	}
	return describe(e), nil
}

func describe(e *runpb.Execution) Execution {
	x := Execution{ID: path.Base(e.GetName()), Running: e.GetCompletionTime() == nil, CreatedAt: e.GetCreateTime().AsTime()}
	for _, c := range e.GetTemplate().GetContainers() {
		for _, v := range c.GetEnv() {
			if v.GetName() == EnvSessionID {
				x.SessionID = v.GetValue()
			}
		}
	}
	return x
}

// Running lists the job's executions that have not finished.
func (r *Runner) Running(ctx context.Context) ([]Execution, error) {
	it := r.execs.ListExecutions(ctx, &runpb.ListExecutionsRequest{Parent: r.job})
	var out []Execution
	for {
		e, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list executions of %s: %w", r.job, err)
		}
		if x := describe(e); x.Running {
			out = append(out, x)
		}
	}
}

// Cancel stops an execution, named by id or full name, ending its
// processes. An execution that is gone or already finished is not an error.
func (r *Runner) Cancel(ctx context.Context, id string) error {
	_, err := r.execs.CancelExecution(ctx, &runpb.CancelExecutionRequest{Name: r.fullName(id)})
	switch status.Code(err) {
	case codes.OK, codes.NotFound, codes.FailedPrecondition:
		return nil
	}
	return fmt.Errorf("cancel execution %s: %w", id, err)
}

// JobSpec describes the host job, for local runs that create it themselves
// (Terraform creates it in production).
type JobSpec struct {
	Image string
	// Command replaces the image's entrypoint when set.
	Command []string
	Args    []string
	Env     map[string]string
	// TaskTimeout bounds one host's life.
	TaskTimeout time.Duration
	// Annotations of the job (the local cloud reads a start delay here).
	Annotations map[string]string
}

// EnsureJob creates the runner's job from spec unless it exists.
func (r *Runner) EnsureJob(ctx context.Context, spec JobSpec) error {
	parent, id := path.Dir(path.Dir(r.job)), path.Base(r.job)
	env := envVars(spec.Env)
	op, err := r.jobs.CreateJob(ctx, &runpb.CreateJobRequest{
		Parent: parent, JobId: id,
		Job: &runpb.Job{
			Annotations: spec.Annotations,
			Template: &runpb.ExecutionTemplate{
				TaskCount: 1,
				Template: &runpb.TaskTemplate{
					Containers: []*runpb.Container{{Name: ContainerName, Image: spec.Image, Command: spec.Command, Args: spec.Args, Env: env}},
					Timeout:    durationpb.New(spec.TaskTimeout),
					Retries:    &runpb.TaskTemplate_MaxRetries{MaxRetries: 0},
				},
			},
		},
	})
	if status.Code(err) == codes.AlreadyExists {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create job %s: %w", r.job, err)
	}
	if _, err := op.Wait(ctx); err != nil {
		return fmt.Errorf("create job %s: %w", r.job, err)
	}
	return nil
}
