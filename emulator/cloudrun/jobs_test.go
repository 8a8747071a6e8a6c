package cloudrun

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestCreateJobValidatesNames(t *testing.T) {
	h := newHarness(t, Config{})
	tests := []struct {
		parent, id string
		want       codes.Code
	}{
		{testParent, "a", codes.OK},
		{testParent, "job-1", codes.OK},
		{testParent, "j" + strings.Repeat("x", 62), codes.OK},
		{testParent, "j" + strings.Repeat("x", 63), codes.InvalidArgument},
		{testParent, "", codes.InvalidArgument},
		{testParent, "1job", codes.InvalidArgument},
		{testParent, "-job", codes.InvalidArgument},
		{testParent, "job-", codes.InvalidArgument},
		{testParent, "Job", codes.InvalidArgument},
		{testParent, "job_1", codes.InvalidArgument},
		{testParent, "job.1", codes.InvalidArgument},
		{testParent, "job/1", codes.InvalidArgument},
		{"projects/p", "job", codes.InvalidArgument},
		{"projects//locations/l", "job", codes.InvalidArgument},
		{"projects/p/locations/L", "job", codes.InvalidArgument},
		{"projects/p/regions/l", "job", codes.InvalidArgument},
		{testParent + "/", "job", codes.InvalidArgument},
	}
	for _, tt := range tests {
		_, err := h.jobs.CreateJob(t.Context(), &runpb.CreateJobRequest{Parent: tt.parent, JobId: tt.id, Job: shellJob("true")})
		if got := status.Code(err); got != tt.want {
			t.Errorf("CreateJob(%q, %q) = %v, want %v", tt.parent, tt.id, err, tt.want)
		}
	}
	_, err := h.jobs.CreateJob(t.Context(), &runpb.CreateJobRequest{Parent: testParent, JobId: "job-1", Job: shellJob("true")})
	wantCode(t, err, codes.AlreadyExists, "create a job twice")
}

func TestCreateJobValidatesSpec(t *testing.T) {
	h := newHarness(t, Config{})
	tests := map[string]func(j *runpb.Job){
		"no template":      func(j *runpb.Job) { j.Template = nil },
		"no task template": func(j *runpb.Job) { j.Template.Template = nil },
		"no container":     func(j *runpb.Job) { j.Template.Template.Containers = nil },
		"two containers": func(j *runpb.Job) {
			j.Template.Template.Containers = append(j.Template.Template.Containers, &runpb.Container{Image: "x"})
		},
		"no image":          func(j *runpb.Job) { j.Template.Template.Containers[0].Image = "" },
		"negative tasks":    func(j *runpb.Job) { j.Template.TaskCount = -1 },
		"too many tasks":    func(j *runpb.Job) { j.Template.TaskCount = maxTaskCount + 1 },
		"negative parallel": func(j *runpb.Job) { j.Template.Parallelism = -2 },
		"negative retries":  func(j *runpb.Job) { j.Template.Template.Retries = &runpb.TaskTemplate_MaxRetries{MaxRetries: -1} },
		"too many retries":  func(j *runpb.Job) { j.Template.Template.Retries = &runpb.TaskTemplate_MaxRetries{MaxRetries: 11} },
		"zero timeout":      func(j *runpb.Job) { j.Template.Template.Timeout = durationpb.New(0) },
		"huge timeout":      func(j *runpb.Job) { j.Template.Template.Timeout = &durationpb.Duration{Seconds: 1 << 60} },
		"bad start delay":   func(j *runpb.Job) { j.Annotations = map[string]string{StartDelayAnnotation: "soon"} },
		"env without name":  func(j *runpb.Job) { j.Template.Template.Containers[0].Env = []*runpb.EnvVar{{Name: ""}} },
		"env name with =":   func(j *runpb.Job) { j.Template.Template.Containers[0].Env = []*runpb.EnvVar{{Name: "A=B"}} },
		"env set twice": func(j *runpb.Job) {
			j.Template.Template.Containers[0].Env = []*runpb.EnvVar{
				{Name: "A", Values: &runpb.EnvVar_Value{Value: "1"}}, {Name: "A", Values: &runpb.EnvVar_Value{Value: "2"}}}
		},
		"secret env": func(j *runpb.Job) {
			j.Template.Template.Containers[0].Env = []*runpb.EnvVar{{Name: "A", Values: &runpb.EnvVar_ValueSource{ValueSource: &runpb.EnvVarSource{}}}}
		},
		"execution token": func(j *runpb.Job) { j.CreateExecution = &runpb.Job_RunExecutionToken{RunExecutionToken: "x"} },
	}
	for name, mutate := range tests {
		j := shellJob("true")
		mutate(j)
		_, err := h.jobs.CreateJob(t.Context(), &runpb.CreateJobRequest{Parent: testParent, JobId: "job", Job: j})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: got %v, want InvalidArgument", name, err)
		}
	}
	_, err := h.jobs.CreateJob(t.Context(), &runpb.CreateJobRequest{Parent: testParent, JobId: "job"})
	wantCode(t, err, codes.InvalidArgument, "create without a job")
}

func TestJobLifecycle(t *testing.T) {
	h := newHarness(t, Config{})
	before := time.Now()
	j := h.createJob(t, "life", shellJob("true"))

	name := testParent + "/jobs/life"
	switch {
	case j.GetName() != name:
		t.Errorf("name = %q, want %q", j.GetName(), name)
	case j.GetUid() == "" || j.GetEtag() == "":
		t.Errorf("uid %q, etag %q: want both set", j.GetUid(), j.GetEtag())
	case j.GetGeneration() != 1 || j.GetObservedGeneration() != 1:
		t.Errorf("generation %d, observed %d: want 1, 1", j.GetGeneration(), j.GetObservedGeneration())
	case j.GetCreateTime().AsTime().Before(before.Add(-time.Second)) || !j.GetUpdateTime().AsTime().Equal(j.GetCreateTime().AsTime()):
		t.Errorf("create time %v, update time %v", j.GetCreateTime().AsTime(), j.GetUpdateTime().AsTime())
	case j.GetTerminalCondition().GetType() != "Ready" || j.GetTerminalCondition().GetState() != runpb.Condition_CONDITION_SUCCEEDED:
		t.Errorf("terminal condition = %v, want Ready succeeded", j.GetTerminalCondition())
	case j.GetExecutionCount() != 0 || j.GetLatestCreatedExecution() != nil:
		t.Errorf("execution count %d, latest %v: want none", j.GetExecutionCount(), j.GetLatestCreatedExecution())
	}
	// Cloud Run's defaults are filled in.
	tt := j.GetTemplate().GetTemplate()
	if j.GetTemplate().GetTaskCount() != 1 || tt.GetTimeout().AsDuration() != 10*time.Minute {
		t.Errorf("task count %d, timeout %v: want 1, 10m", j.GetTemplate().GetTaskCount(), tt.GetTimeout().AsDuration())
	}
	if withDefaults := h.createJob(t, "defaults", &runpb.Job{Template: &runpb.ExecutionTemplate{Template: &runpb.TaskTemplate{
		Containers: []*runpb.Container{{Image: "x"}},
	}}}); withDefaults.GetTemplate().GetTemplate().GetMaxRetries() != 3 {
		t.Errorf("default max retries = %d, want 3", withDefaults.GetTemplate().GetTemplate().GetMaxRetries())
	}

	got, err := h.jobs.GetJob(t.Context(), &runpb.GetJobRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, j) {
		t.Errorf("GetJob = %v, want %v", got, j)
	}
	_, err = h.jobs.GetJob(t.Context(), &runpb.GetJobRequest{Name: testParent + "/jobs/nope"})
	wantCode(t, err, codes.NotFound, "get a missing job")
	_, err = h.jobs.GetJob(t.Context(), &runpb.GetJobRequest{Name: "jobs/nope"})
	wantCode(t, err, codes.InvalidArgument, "get a malformed name")

	// Update replaces the spec and bumps the generation; a stale etag fails.
	update := shellJob("echo updated")
	update.Name, update.Etag, update.Labels = name, j.GetEtag(), map[string]string{"team": "sandrun"}
	op, err := h.jobs.UpdateJob(t.Context(), &runpb.UpdateJobRequest{Job: update})
	if err != nil {
		t.Fatal(err)
	}
	updated, err := op.Wait(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if updated.GetGeneration() != 2 || updated.GetEtag() == j.GetEtag() || updated.GetLabels()["team"] != "sandrun" ||
		updated.GetUid() != j.GetUid() || !proto.Equal(updated.GetCreateTime(), j.GetCreateTime()) {
		t.Errorf("updated job = %v", updated)
	}
	if args := updated.GetTemplate().GetTemplate().GetContainers()[0].GetArgs(); len(args) != 1 || args[0] != "echo updated" {
		t.Errorf("updated args = %q", args)
	}
	_, err = h.jobs.UpdateJob(t.Context(), &runpb.UpdateJobRequest{Job: update})
	wantCode(t, err, codes.Aborted, "update with a stale etag")
	missing := shellJob("true")
	missing.Name = testParent + "/jobs/missing"
	_, err = h.jobs.UpdateJob(t.Context(), &runpb.UpdateJobRequest{Job: missing})
	wantCode(t, err, codes.NotFound, "update a missing job")
	op, err = h.jobs.UpdateJob(t.Context(), &runpb.UpdateJobRequest{Job: missing, AllowMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	if created, err := op.Wait(t.Context()); err != nil || created.GetGeneration() != 1 {
		t.Errorf("update with allow_missing = %v, %v; want a new job", created, err)
	}

	// Delete.
	dop, err := h.jobs.DeleteJob(t.Context(), &runpb.DeleteJobRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	deleted, err := dop.Wait(t.Context())
	if err != nil || deleted.GetName() != name || deleted.GetDeleteTime() == nil {
		t.Errorf("delete = %v, %v; want the job with a delete time", deleted, err)
	}
	_, err = h.jobs.GetJob(t.Context(), &runpb.GetJobRequest{Name: name})
	wantCode(t, err, codes.NotFound, "get a deleted job")
	_, err = h.jobs.DeleteJob(t.Context(), &runpb.DeleteJobRequest{Name: name})
	wantCode(t, err, codes.NotFound, "delete a deleted job")
	h.createJob(t, "life", shellJob("true")) // the name is free again
}

func TestListJobsPages(t *testing.T) {
	h := newHarness(t, Config{})
	var want []string
	for i := range 7 {
		id := fmt.Sprintf("job-%d", i)
		h.createJob(t, id, shellJob("true"))
		want = append(want, testParent+"/jobs/"+id)
	}
	// Another location's jobs are not listed.
	op, err := h.jobs.CreateJob(t.Context(), &runpb.CreateJobRequest{Parent: "projects/sandrun-test/locations/europe-west1", JobId: "elsewhere", Job: shellJob("true")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}

	var got []string
	pages := 0
	it := h.jobs.ListJobs(t.Context(), &runpb.ListJobsRequest{Parent: testParent, PageSize: 3})
	for {
		j, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if it.PageInfo().Remaining() == 0 {
			pages++
		}
		got = append(got, j.GetName())
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("listed %v, want %v", got, want)
	}
	if pages != 3 {
		t.Errorf("listed in %d pages, want 3", pages)
	}
	resp, _, err := h.jobs.ListJobs(t.Context(), &runpb.ListJobsRequest{Parent: testParent, PageSize: 3}).InternalFetch(3, "")
	if err != nil || len(resp) != 3 {
		t.Errorf("first page: %d jobs, %v", len(resp), err)
	}
	_, _, err = h.jobs.ListJobs(t.Context(), &runpb.ListJobsRequest{Parent: testParent}).InternalFetch(3, "not base64!")
	wantCode(t, err, codes.InvalidArgument, "list with a bad page token")
}

func TestUnimplementedMethodsSayWhich(t *testing.T) {
	h := newHarness(t, Config{})
	_, err := h.jobs.GetIamPolicy(t.Context(), &iampb.GetIamPolicyRequest{Resource: testParent + "/jobs/x"})
	wantCode(t, err, codes.Unimplemented, "GetIamPolicy")
	if !strings.Contains(err.Error(), "GetIamPolicy") {
		t.Errorf("error %q does not name the method", err)
	}
}
