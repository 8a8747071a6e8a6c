// Package jobrunner launches, inspects and cancels session hosts as Cloud Run
// Jobs executions through the Cloud Run Admin API v2. It never decides when
// to launch; the dispatcher and the reaper do.
package jobrunner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// EmulatorHostEnv names the variable that points the runner at the local
// cloud's Cloud Run Admin API (host:port) instead of Google's.
const EmulatorHostEnv = "CLOUDRUN_EMULATOR_HOST"

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
}

// ClientOptions returns the options that reach Cloud Run: the local cloud's
// endpoint when CLOUDRUN_EMULATOR_HOST is set, Google's otherwise.
func ClientOptions() []option.ClientOption {
	host := os.Getenv(EmulatorHostEnv)
	if host == "" {
		return nil
	}
	return []option.ClientOption{
		option.WithEndpoint(host),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}

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

// Launch starts an execution of the job that hosts the session, with env
// added to the container's environment, and returns the execution's name
// without waiting for it to start.
func (r *Runner) Launch(ctx context.Context, sessionID, launchID string, env map[string]string) (string, error) {
	vars := []*runpb.EnvVar{
		{Name: EnvSessionID, Values: &runpb.EnvVar_Value{Value: sessionID}},
		{Name: EnvLaunchID, Values: &runpb.EnvVar_Value{Value: launchID}},
	}
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		vars = append(vars, &runpb.EnvVar{Name: k, Values: &runpb.EnvVar_Value{Value: env[k]}})
	}
	op, err := r.jobs.RunJob(ctx, &runpb.RunJobRequest{
		Name:      r.job,
		Overrides: &runpb.RunJobRequest_Overrides{ContainerOverrides: []*runpb.RunJobRequest_Overrides_ContainerOverride{{Env: vars}}},
	})
	if err != nil {
		return "", fmt.Errorf("launch host for session %s: %w", sessionID, err)
	}
	meta, err := op.Metadata()
	if err != nil {
		return "", fmt.Errorf("launch host for session %s: read execution: %w", sessionID, err)
	}
	if meta == nil || meta.GetName() == "" {
		return "", fmt.Errorf("launch host for session %s: the operation %s names no execution", sessionID, op.Name())
	}
	return meta.GetName(), nil
}

// Execution is what the runner reports of one execution.
type Execution struct {
	Name      string
	Running   bool
	CreatedAt time.Time
	// SessionID is the session the execution was launched for, read from
	// the environment of its task template ("" when it names none).
	SessionID string
}

// Get returns an execution.
func (r *Runner) Get(ctx context.Context, name string) (Execution, error) {
	e, err := r.execs.GetExecution(ctx, &runpb.GetExecutionRequest{Name: name})
	if err != nil {
		return Execution{}, fmt.Errorf("get execution %s: %w", name, err)
	}
	return describe(e), nil
}

func describe(e *runpb.Execution) Execution {
	x := Execution{Name: e.GetName(), Running: e.GetCompletionTime() == nil, CreatedAt: e.GetCreateTime().AsTime()}
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

// Cancel stops an execution, ending its processes. An execution that is
// gone or already finished is not an error.
func (r *Runner) Cancel(ctx context.Context, name string) error {
	_, err := r.execs.CancelExecution(ctx, &runpb.CancelExecutionRequest{Name: name})
	switch status.Code(err) {
	case codes.OK, codes.NotFound, codes.FailedPrecondition:
		return nil
	}
	return fmt.Errorf("cancel execution %s: %w", name, err)
}
