package cloudrun

import (
	"context"
	"errors"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
)

// In fuzzed requests, these placeholders in any string field stand for the
// names of an execution and an operation that exist.
const (
	fuzzParent    = "projects/p/locations/l"
	execHolder    = "@exec"
	opHolder      = "@op"
	fuzzJobPrefix = fuzzParent + "/jobs/"
)

// fuzzCall is one handler of the server, fed the bytes of its request.
type fuzzCall struct {
	newRequest func() proto.Message
	call       func(ctx context.Context, srv *Server, req proto.Message) (proto.Message, error)
}

func fuzzCalls() []fuzzCall {
	jobs := func(s *Server) jobsAPI { return jobsAPI{s: s} }
	execs := func(s *Server) executionsAPI { return executionsAPI{s: s} }
	tasks := func(s *Server) tasksAPI { return tasksAPI{s: s} }
	ops := func(s *Server) operationsAPI { return operationsAPI{s: s} }
	return []fuzzCall{
		{func() proto.Message { return &runpb.CreateJobRequest{} }, func(ctx context.Context, s *Server, r proto.Message) (proto.Message, error) {
			return jobs(s).CreateJob(ctx, r.(*runpb.CreateJobRequest))
		}},
		{func() proto.Message { return &runpb.GetJobRequest{} }, func(ctx context.Context, s *Server, r proto.Message) (proto.Message, error) {
			return jobs(s).GetJob(ctx, r.(*runpb.GetJobRequest))
		}},
		{func() proto.Message { return &runpb.ListJobsRequest{} }, func(ctx context.Context, s *Server, r proto.Message) (proto.Message, error) {
			return jobs(s).ListJobs(ctx, r.(*runpb.ListJobsRequest))
		}},
		{func() proto.Message { return &runpb.UpdateJobRequest{} }, func(ctx context.Context, s *Server, r proto.Message) (proto.Message, error) {
			return jobs(s).UpdateJob(ctx, r.(*runpb.UpdateJobRequest))
		}},
		{func() proto.Message { return &runpb.DeleteJobRequest{} }, func(ctx context.Context, s *Server, r proto.Message) (proto.Message, error) {
			return jobs(s).DeleteJob(ctx, r.(*runpb.DeleteJobRequest))
		}},
		{func() proto.Message { return &runpb.RunJobRequest{} }, func(ctx context.Context, s *Server, r proto.Message) (proto.Message, error) {
			return jobs(s).RunJob(ctx, r.(*runpb.RunJobRequest))
		}},
		{func() proto.Message { return &runpb.GetExecutionRequest{} }, func(ctx context.Context, s *Server, r proto.Message) (proto.Message, error) {
			return execs(s).GetExecution(ctx, r.(*runpb.GetExecutionRequest))
		}},
		{func() proto.Message { return &runpb.ListExecutionsRequest{} }, func(ctx context.Context, s *Server, r proto.Message) (proto.Message, error) {
			return execs(s).ListExecutions(ctx, r.(*runpb.ListExecutionsRequest))
		}},
		{func() proto.Message { return &runpb.DeleteExecutionRequest{} }, func(ctx context.Context, s *Server, r proto.Message) (proto.Message, error) {
			return execs(s).DeleteExecution(ctx, r.(*runpb.DeleteExecutionRequest))
		}},
		{func() proto.Message { return &runpb.CancelExecutionRequest{} }, func(ctx context.Context, s *Server, r proto.Message) (proto.Message, error) {
			return execs(s).CancelExecution(ctx, r.(*runpb.CancelExecutionRequest))
		}},
		{func() proto.Message { return &runpb.GetTaskRequest{} }, func(ctx context.Context, s *Server, r proto.Message) (proto.Message, error) {
			return tasks(s).GetTask(ctx, r.(*runpb.GetTaskRequest))
		}},
		{func() proto.Message { return &runpb.ListTasksRequest{} }, func(ctx context.Context, s *Server, r proto.Message) (proto.Message, error) {
			return tasks(s).ListTasks(ctx, r.(*runpb.ListTasksRequest))
		}},
		{func() proto.Message { return &longrunningpb.GetOperationRequest{} }, func(ctx context.Context, s *Server, r proto.Message) (proto.Message, error) {
			return ops(s).GetOperation(ctx, r.(*longrunningpb.GetOperationRequest))
		}},
		{func() proto.Message { return &longrunningpb.ListOperationsRequest{} }, func(ctx context.Context, s *Server, r proto.Message) (proto.Message, error) {
			return ops(s).ListOperations(ctx, r.(*longrunningpb.ListOperationsRequest))
		}},
		{func() proto.Message { return &longrunningpb.DeleteOperationRequest{} }, func(ctx context.Context, s *Server, r proto.Message) (proto.Message, error) {
			return ops(s).DeleteOperation(ctx, r.(*longrunningpb.DeleteOperationRequest))
		}},
		{func() proto.Message { return &longrunningpb.CancelOperationRequest{} }, func(ctx context.Context, s *Server, r proto.Message) (proto.Message, error) {
			return ops(s).CancelOperation(ctx, r.(*longrunningpb.CancelOperationRequest))
		}},
		{func() proto.Message { return &longrunningpb.WaitOperationRequest{} }, func(ctx context.Context, s *Server, r proto.Message) (proto.Message, error) {
			return ops(s).WaitOperation(ctx, r.(*longrunningpb.WaitOperationRequest))
		}},
	}
}

// fuzzServer is a server that can start no process, with three jobs: one
// whose container sets a command, one with only an image, and one with a
// cold start of an hour, which has an execution that stays pending.
type fuzzServer struct {
	srv       *Server
	execution string
	operation string
}

func newFuzzServer(t testing.TB) *fuzzServer {
	t.Helper()
	srv := New(Config{Env: []string{"PATH=/nonexistent"}, StopGrace: 10 * time.Millisecond})
	srv.spawn = func(*exec.Cmd) error { return errors.New("fuzzing: starting processes is disabled") }
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	ctx := context.Background()
	create := func(id string, j *runpb.Job) {
		if _, err := (jobsAPI{s: srv}).CreateJob(ctx, &runpb.CreateJobRequest{Parent: fuzzParent, JobId: id, Job: j}); err != nil {
			t.Fatalf("create %s: %v", id, err)
		}
	}
	create("fuzz", shellJob("true"))
	create("fuzz-image", &runpb.Job{Template: &runpb.ExecutionTemplate{Template: &runpb.TaskTemplate{
		Containers: []*runpb.Container{{Image: "example/none"}},
	}}})
	cold := shellJob("true")
	cold.Annotations = map[string]string{StartDelayAnnotation: "1h"}
	cold.Template.TaskCount = 2
	create("fuzz-cold", cold)
	op, err := (jobsAPI{s: srv}).RunJob(ctx, &runpb.RunJobRequest{Name: fuzzJobPrefix + "fuzz-cold"})
	if err != nil {
		t.Fatal(err)
	}
	var e runpb.Execution
	if err := op.GetMetadata().UnmarshalTo(&e); err != nil {
		t.Fatal(err)
	}
	return &fuzzServer{srv: srv, execution: e.GetName(), operation: op.GetName()}
}

// fill replaces the placeholders in the top-level string fields of req.
func (f *fuzzServer) fill(req proto.Message) {
	m := req.ProtoReflect()
	id := f.execution[strings.LastIndex(f.execution, "/")+1:]
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() == protoreflect.StringKind && !fd.IsList() && !fd.IsMap() {
			s := strings.ReplaceAll(v.String(), execHolder, id)
			s = strings.ReplaceAll(s, opHolder, f.operation[strings.LastIndex(f.operation, "/")+1:])
			m.Set(fd, protoreflect.ValueOfString(s))
		}
		return true
	})
}

// checkAnswer fails unless the handler answered with a status error or a
// valid response.
func checkAnswer(t testing.TB, what string, resp proto.Message, err error) {
	t.Helper()
	if err != nil {
		st, ok := status.FromError(err)
		if !ok || st.Code() == codes.OK || st.Code() == codes.Unknown || st.Code() == codes.Internal {
			t.Fatalf("%s: answered %v (%T), want a status error of a client's or the server's state", what, err, err)
		}
		return
	}
	if resp == nil || !resp.ProtoReflect().IsValid() {
		t.Fatalf("%s: no error and no response", what)
	}
	if _, err := proto.Marshal(resp); err != nil {
		t.Fatalf("%s: response cannot be sent: %v", what, err)
	}
}

func FuzzCloudRun(f *testing.F) {
	job := shellJob("echo hi")
	seeds := map[int]proto.Message{
		0:  &runpb.CreateJobRequest{Parent: fuzzParent, JobId: "new", Job: job},
		1:  &runpb.GetJobRequest{Name: fuzzJobPrefix + "fuzz"},
		2:  &runpb.ListJobsRequest{Parent: fuzzParent, PageSize: 2},
		3:  &runpb.UpdateJobRequest{Job: func() *runpb.Job { j := proto.CloneOf(job); j.Name = fuzzJobPrefix + "fuzz"; return j }()},
		4:  &runpb.DeleteJobRequest{Name: fuzzJobPrefix + "fuzz-cold"},
		5:  &runpb.RunJobRequest{Name: fuzzJobPrefix + "fuzz", Overrides: &runpb.RunJobRequest_Overrides{TaskCount: 3, Timeout: durationpb.New(time.Second)}},
		6:  &runpb.GetExecutionRequest{Name: fuzzJobPrefix + "fuzz-cold/executions/" + execHolder},
		7:  &runpb.ListExecutionsRequest{Parent: fuzzJobPrefix + "-", PageSize: 1},
		8:  &runpb.DeleteExecutionRequest{Name: fuzzJobPrefix + "fuzz-cold/executions/" + execHolder},
		9:  &runpb.CancelExecutionRequest{Name: fuzzJobPrefix + "fuzz-cold/executions/" + execHolder},
		10: &runpb.GetTaskRequest{Name: fuzzJobPrefix + "fuzz-cold/executions/" + execHolder + "/tasks/" + execHolder + "-task1"},
		11: &runpb.ListTasksRequest{Parent: fuzzJobPrefix + "fuzz-cold/executions/" + execHolder, PageSize: 1},
		12: &longrunningpb.GetOperationRequest{Name: fuzzParent + "/operations/" + opHolder},
		13: &longrunningpb.ListOperationsRequest{Name: fuzzParent},
		14: &longrunningpb.DeleteOperationRequest{Name: fuzzParent + "/operations/" + opHolder},
		15: &longrunningpb.CancelOperationRequest{Name: fuzzParent + "/operations/" + opHolder},
		16: &longrunningpb.WaitOperationRequest{Name: fuzzParent + "/operations/" + opHolder, Timeout: durationpb.New(time.Millisecond)},
	}
	for kind, req := range seeds {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(kind), b)
	}
	f.Add(uint8(5), []byte("\x0a\x03\xff\xfe\xfd"))

	// Requests built in Go can hold what no wire carries: nil messages,
	// typed nils, invalid UTF-8.
	checkOddRequests(f)

	calls := fuzzCalls()
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		c := calls[int(kind)%len(calls)]
		req := c.newRequest()
		if err := proto.Unmarshal(data, req); err != nil {
			return
		}
		fs := newFuzzServer(t)
		fs.fill(req)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		resp, err := c.call(ctx, fs.srv, req)
		checkAnswer(t, string(req.ProtoReflect().Descriptor().Name()), resp, err)
	})
}

func checkOddRequests(t testing.TB) {
	fs := newFuzzServer(t)
	s, ctx := fs.srv, context.Background()
	jobs, execs, tasks, ops := jobsAPI{s: s}, executionsAPI{s: s}, tasksAPI{s: s}, operationsAPI{s: s}
	valid := func() *runpb.Job { return shellJob("true") }
	odd := func(mutate func(j *runpb.Job)) *runpb.Job {
		j := valid()
		mutate(j)
		return j
	}
	create := func(j *runpb.Job) (proto.Message, error) {
		return jobs.CreateJob(ctx, &runpb.CreateJobRequest{Parent: fuzzParent, JobId: "odd", Job: j})
	}
	run := func(ov *runpb.RunJobRequest_Overrides) (proto.Message, error) {
		return jobs.RunJob(ctx, &runpb.RunJobRequest{Name: fuzzJobPrefix + "fuzz", Overrides: ov})
	}
	bigTimeout := &durationpb.Duration{Seconds: math.MaxInt64, Nanos: math.MaxInt32}
	cases := map[string]func() (proto.Message, error){
		"nil create":        func() (proto.Message, error) { return jobs.CreateJob(ctx, nil) },
		"nil job":           func() (proto.Message, error) { return create(nil) },
		"nil template":      func() (proto.Message, error) { return create(odd(func(j *runpb.Job) { j.Template = nil })) },
		"nil task template": func() (proto.Message, error) { return create(odd(func(j *runpb.Job) { j.Template.Template = nil })) },
		"nil container": func() (proto.Message, error) {
			return create(odd(func(j *runpb.Job) { j.Template.Template.Containers[0] = nil }))
		},
		"typed nil retries": func() (proto.Message, error) {
			return create(odd(func(j *runpb.Job) { j.Template.Template.Retries = (*runpb.TaskTemplate_MaxRetries)(nil) }))
		},
		"nil env var": func() (proto.Message, error) {
			return create(odd(func(j *runpb.Job) { j.Template.Template.Containers[0].Env = []*runpb.EnvVar{nil} }))
		},
		"typed nil env value": func() (proto.Message, error) {
			return create(odd(func(j *runpb.Job) {
				j.Template.Template.Containers[0].Env = []*runpb.EnvVar{{Name: "A", Values: (*runpb.EnvVar_Value)(nil)}}
			}))
		},
		"negative tasks": func() (proto.Message, error) {
			return create(odd(func(j *runpb.Job) { j.Template.TaskCount = math.MinInt32 }))
		},
		"huge timeout": func() (proto.Message, error) {
			return create(odd(func(j *runpb.Job) { j.Template.Template.Timeout = bigTimeout }))
		},
		"negative timeout": func() (proto.Message, error) {
			return create(odd(func(j *runpb.Job) { j.Template.Template.Timeout = durationpb.New(-time.Second) }))
		},
		"invalid utf-8": func() (proto.Message, error) {
			return create(odd(func(j *runpb.Job) { j.Labels = map[string]string{"a": "\xff"} }))
		},
		"nul in args": func() (proto.Message, error) {
			return create(odd(func(j *runpb.Job) { j.Template.Template.Containers[0].Args = []string{"a\x00b"} }))
		},
		"bad name": func() (proto.Message, error) {
			return jobs.CreateJob(ctx, &runpb.CreateJobRequest{Parent: strings.Repeat("projects/", 1000), JobId: "odd", Job: valid()})
		},
		"nil update": func() (proto.Message, error) { return jobs.UpdateJob(ctx, &runpb.UpdateJobRequest{}) },
		"update nil template": func() (proto.Message, error) {
			return jobs.UpdateJob(ctx, &runpb.UpdateJobRequest{Job: &runpb.Job{Name: fuzzJobPrefix + "fuzz"}})
		},
		"nil run":            func() (proto.Message, error) { return jobs.RunJob(ctx, nil) },
		"run negative tasks": func() (proto.Message, error) { return run(&runpb.RunJobRequest_Overrides{TaskCount: -1}) },
		"run huge tasks":     func() (proto.Message, error) { return run(&runpb.RunJobRequest_Overrides{TaskCount: math.MaxInt32}) },
		"run huge timeout":   func() (proto.Message, error) { return run(&runpb.RunJobRequest_Overrides{Timeout: bigTimeout}) },
		"run nil override": func() (proto.Message, error) {
			return run(&runpb.RunJobRequest_Overrides{ContainerOverrides: []*runpb.RunJobRequest_Overrides_ContainerOverride{nil}})
		},
		"run unknown container": func() (proto.Message, error) {
			return run(&runpb.RunJobRequest_Overrides{ContainerOverrides: []*runpb.RunJobRequest_Overrides_ContainerOverride{{Name: "nope"}}})
		},
		"run clear and set args": func() (proto.Message, error) {
			return run(&runpb.RunJobRequest_Overrides{ContainerOverrides: []*runpb.RunJobRequest_Overrides_ContainerOverride{{ClearArgs: true, Args: []string{"x"}}}})
		},
		"run secret env": func() (proto.Message, error) {
			return run(&runpb.RunJobRequest_Overrides{ContainerOverrides: []*runpb.RunJobRequest_Overrides_ContainerOverride{{Env: []*runpb.EnvVar{{Name: "S", Values: &runpb.EnvVar_ValueSource{}}}}}})
		},
		"run image only": func() (proto.Message, error) {
			return jobs.RunJob(ctx, &runpb.RunJobRequest{Name: fuzzJobPrefix + "fuzz-image"})
		},
		"delete nil": func() (proto.Message, error) { return jobs.DeleteJob(ctx, nil) },
		"get nil":    func() (proto.Message, error) { return jobs.GetJob(ctx, nil) },
		"list negative page": func() (proto.Message, error) {
			return jobs.ListJobs(ctx, &runpb.ListJobsRequest{Parent: fuzzParent, PageSize: -1})
		},
		"list huge page": func() (proto.Message, error) {
			return jobs.ListJobs(ctx, &runpb.ListJobsRequest{Parent: fuzzParent, PageSize: math.MaxInt32})
		},
		"get execution nil": func() (proto.Message, error) { return execs.GetExecution(ctx, nil) },
		"list executions token": func() (proto.Message, error) {
			return execs.ListExecutions(ctx, &runpb.ListExecutionsRequest{Parent: fuzzJobPrefix + "-", PageToken: "!!"})
		},
		"cancel execution nil": func() (proto.Message, error) { return execs.CancelExecution(ctx, nil) },
		"delete execution nil": func() (proto.Message, error) { return execs.DeleteExecution(ctx, nil) },
		"delete running": func() (proto.Message, error) {
			return execs.DeleteExecution(ctx, &runpb.DeleteExecutionRequest{Name: fs.execution})
		},
		"get task nil":      func() (proto.Message, error) { return tasks.GetTask(ctx, nil) },
		"list tasks nil":    func() (proto.Message, error) { return tasks.ListTasks(ctx, nil) },
		"get operation nil": func() (proto.Message, error) { return ops.GetOperation(ctx, nil) },
		"wait negative timeout": func() (proto.Message, error) {
			return ops.WaitOperation(ctx, &longrunningpb.WaitOperationRequest{Name: fs.operation, Timeout: durationpb.New(-time.Second)})
		},
		"wait invalid timeout": func() (proto.Message, error) {
			return ops.WaitOperation(ctx, &longrunningpb.WaitOperationRequest{Name: fs.operation, Timeout: bigTimeout})
		},
		"list operations filter": func() (proto.Message, error) {
			return ops.ListOperations(ctx, &longrunningpb.ListOperationsRequest{Name: fuzzParent, Filter: "done"})
		},
		"cancel operation nil": func() (proto.Message, error) { return ops.CancelOperation(ctx, nil) },
		"delete operation nil": func() (proto.Message, error) { return ops.DeleteOperation(ctx, nil) },
		"cancel pending execution": func() (proto.Message, error) {
			return execs.CancelExecution(ctx, &runpb.CancelExecutionRequest{Name: fs.execution})
		},
		"delete job with execution": func() (proto.Message, error) {
			return jobs.DeleteJob(ctx, &runpb.DeleteJobRequest{Name: fuzzJobPrefix + "fuzz-cold"})
		},
	}
	for name, call := range cases {
		resp, err := call()
		checkAnswer(t, name, resp, err)
	}
}
