package cloudrun

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Resource names, as Cloud Run spells them:
//
//	projects/P/locations/L
//	projects/P/locations/L/jobs/J
//	projects/P/locations/L/jobs/J/executions/J-xxxxx
//	projects/P/locations/L/jobs/J/executions/J-xxxxx/tasks/J-xxxxx-task0
//	projects/P/locations/L/operations/UUID

// maxJobID is Cloud Run's limit on a job's name.
const maxJobID = 63

var (
	// jobIDPattern is a DNS label: lowercase letters, digits and hyphens,
	// starting with a letter and not ending with a hyphen.
	jobIDPattern = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	// projectPattern accepts project IDs (also domain-scoped ones such as
	// example.com:proj) and project numbers.
	projectPattern  = regexp.MustCompile(`^[a-z0-9][-a-z0-9.:]{0,99}$`)
	locationPattern = regexp.MustCompile(`^[a-z][-a-z0-9]{0,62}$`)
	// childIDPattern covers execution, task and operation IDs.
	childIDPattern = regexp.MustCompile(`^[a-z0-9][-a-z0-9]{0,127}$`)
)

type locationName struct{ project, location string }

func (n locationName) String() string {
	return "projects/" + n.project + "/locations/" + n.location
}

type jobName struct {
	locationName
	job string // "-" only in a ListExecutions parent
}

func (n jobName) String() string { return n.locationName.String() + "/jobs/" + n.job }

type executionName struct {
	jobName
	execution string
}

func (n executionName) String() string { return n.jobName.String() + "/executions/" + n.execution }

type taskName struct {
	executionName
	task string
}

func (n taskName) String() string { return n.executionName.String() + "/tasks/" + n.task }

// splitName checks that name has the form of pattern (literal segments and
// {} placeholders) and returns the placeholders' values.
func splitName(name, what, pattern string) ([]string, error) {
	got, want := strings.Split(name, "/"), strings.Split(pattern, "/")
	bad := status.Errorf(codes.InvalidArgument, "invalid %s name %q: want %s", what, name, pattern)
	if len(got) != len(want) {
		return nil, bad
	}
	var values []string
	for i, w := range want {
		switch {
		case strings.HasPrefix(w, "{"):
			values = append(values, got[i])
		case got[i] != w:
			return nil, bad
		}
	}
	return values, nil
}

func parseLocation(name string) (locationName, error) {
	v, err := splitName(name, "location", "projects/{project}/locations/{location}")
	if err != nil {
		return locationName{}, err
	}
	return checkLocation(v[0], v[1])
}

func checkLocation(project, location string) (locationName, error) {
	if !projectPattern.MatchString(project) {
		return locationName{}, status.Errorf(codes.InvalidArgument, "invalid project %q: want a project ID or number", project)
	}
	if !locationPattern.MatchString(location) {
		return locationName{}, status.Errorf(codes.InvalidArgument, "invalid location %q: want a region such as us-central1", location)
	}
	return locationName{project, location}, nil
}

// validateJobID reports whether id is a name Cloud Run accepts for a job.
func validateJobID(id string) error {
	switch {
	case id == "":
		return status.Error(codes.InvalidArgument, "job_id is required")
	case len(id) > maxJobID:
		return status.Errorf(codes.InvalidArgument, "invalid job_id %q: longer than %d characters", id, maxJobID)
	case !jobIDPattern.MatchString(id):
		return status.Errorf(codes.InvalidArgument,
			"invalid job_id %q: use lowercase letters, digits and hyphens, start with a letter and do not end with a hyphen", id)
	}
	return nil
}

func parseJob(name string) (jobName, error) {
	return parseJobOrWildcard(name, false)
}

// parseJobOrWildcard also accepts the job "-" (every job of the location)
// when wildcard is set.
func parseJobOrWildcard(name string, wildcard bool) (jobName, error) {
	v, err := splitName(name, "job", "projects/{project}/locations/{location}/jobs/{job}")
	if err != nil {
		return jobName{}, err
	}
	loc, err := checkLocation(v[0], v[1])
	if err != nil {
		return jobName{}, err
	}
	if !(wildcard && v[2] == "-") {
		if err := validateJobID(v[2]); err != nil {
			return jobName{}, status.Errorf(codes.InvalidArgument, "invalid job name %q: %s", name, status.Convert(err).Message())
		}
	}
	return jobName{loc, v[2]}, nil
}

func parseExecution(name string) (executionName, error) {
	v, err := splitName(name, "execution", "projects/{project}/locations/{location}/jobs/{job}/executions/{execution}")
	if err != nil {
		return executionName{}, err
	}
	job, err := parseJob(strings.Join(strings.Split(name, "/")[:6], "/"))
	if err != nil {
		return executionName{}, err
	}
	if !childIDPattern.MatchString(v[3]) {
		return executionName{}, status.Errorf(codes.InvalidArgument, "invalid execution name %q: bad execution ID %q", name, v[3])
	}
	return executionName{job, v[3]}, nil
}

func parseTask(name string) (taskName, error) {
	v, err := splitName(name, "task", "projects/{project}/locations/{location}/jobs/{job}/executions/{execution}/tasks/{task}")
	if err != nil {
		return taskName{}, err
	}
	exec, err := parseExecution(strings.Join(strings.Split(name, "/")[:8], "/"))
	if err != nil {
		return taskName{}, err
	}
	if !childIDPattern.MatchString(v[4]) {
		return taskName{}, status.Errorf(codes.InvalidArgument, "invalid task name %q: bad task ID %q", name, v[4])
	}
	return taskName{exec, v[4]}, nil
}

func parseOperation(name string) (locationName, error) {
	v, err := splitName(name, "operation", "projects/{project}/locations/{location}/operations/{operation}")
	if err != nil {
		return locationName{}, err
	}
	if !childIDPattern.MatchString(v[2]) {
		return locationName{}, status.Errorf(codes.InvalidArgument, "invalid operation name %q", name)
	}
	return checkLocation(v[0], v[1])
}

// wireCopy returns req as a gRPC server receives it: typed nils and nil list
// elements of hand-built requests disappear, and what the wire cannot carry
// (invalid UTF-8) is refused. Handlers work on the copy, so a request built in
// Go (the fuzz test calls handlers directly) cannot reach states the wire
// never produces, and nothing the handler stores aliases the caller's memory.
func wireCopy[M proto.Message](req M) (M, error) {
	var zero M
	b, err := proto.Marshal(req)
	if err != nil {
		return zero, status.Errorf(codes.InvalidArgument, "malformed request: %v", err)
	}
	out, ok := req.ProtoReflect().New().Interface().(M)
	if !ok {
		return zero, status.Error(codes.Internal, "malformed request: unexpected message type")
	}
	if err := proto.Unmarshal(b, out); err != nil {
		return zero, status.Errorf(codes.InvalidArgument, "malformed request: %v", err)
	}
	return out, nil
}

// Paging. Lists are sorted by a string key; the page token is the key of the
// last item returned, so a page never repeats or skips an item that existed
// when the previous page was read, whatever was created or deleted since.

const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// paginate sorts items by key and returns the page that pageSize and token
// select, with the token of the next page ("" when this is the last).
func paginate[T any](items []T, key func(T) string, pageSize int32, token string) ([]T, string, error) {
	if pageSize < 0 {
		return nil, "", status.Errorf(codes.InvalidArgument, "page_size %d is negative", pageSize)
	}
	size := int(pageSize)
	if size == 0 {
		size = defaultPageSize
	}
	size = min(size, maxPageSize)
	type keyed struct {
		key  string
		item T
	}
	sorted := make([]keyed, len(items))
	for i, it := range items {
		sorted[i] = keyed{key(it), it}
	}
	slices.SortFunc(sorted, func(a, b keyed) int { return strings.Compare(a.key, b.key) })
	start := 0
	if token != "" {
		last, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil {
			return nil, "", status.Errorf(codes.InvalidArgument, "invalid page_token %q", token)
		}
		start, _ = slices.BinarySearchFunc(sorted, string(last), func(k keyed, t string) int { return strings.Compare(k.key, t) })
		if start < len(sorted) && sorted[start].key == string(last) {
			start++
		}
	}
	end := min(start+size, len(sorted))
	var next string
	if end < len(sorted) {
		next = base64.RawURLEncoding.EncodeToString([]byte(sorted[end-1].key))
	}
	page := make([]T, 0, end-start)
	for _, k := range sorted[start:end] {
		page = append(page, k.item)
	}
	return page, next, nil
}

// newestFirstKey sorts newer items first (then by name) when keys sort
// ascending.
func newestFirstKey(unixNano int64, name string) string {
	return fmt.Sprintf("%020d/%s", uint64(1<<63-1-unixNano), name)
}
