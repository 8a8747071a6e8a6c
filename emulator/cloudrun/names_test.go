package cloudrun

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestParseNames(t *testing.T) {
	const job = "projects/p/locations/us-central1/jobs/j"
	tests := []struct {
		name  string
		parse func(string) error
		ok    []string
		bad   []string
	}{
		{"location", func(s string) error { _, err := parseLocation(s); return err },
			[]string{"projects/p/locations/l", "projects/123456/locations/europe-west1", "projects/example.com:p/locations/l"},
			[]string{"", "projects/p", "projects/p/locations/", "projects/P/locations/l", "projects/p/locations/l/", "x/p/locations/l"}},
		{"job", func(s string) error { _, err := parseJob(s); return err },
			[]string{job},
			[]string{job + "/", "projects/p/locations/us-central1/jobs/-", "projects/p/locations/us-central1/jobs/J", job + "/executions/e"}},
		{"execution", func(s string) error { _, err := parseExecution(s); return err },
			[]string{job + "/executions/j-abcde"},
			[]string{job + "/executions/", job + "/executions/A", job + "/runs/j-abcde", job + "/executions/j-abcde/tasks/t"}},
		{"task", func(s string) error { _, err := parseTask(s); return err },
			[]string{job + "/executions/j-abcde/tasks/j-abcde-task0"},
			[]string{job + "/executions/j-abcde/tasks/", job + "/executions/j-abcde/tasks/T"}},
		{"operation", func(s string) error { _, err := parseOperation(s); return err },
			[]string{"projects/p/locations/l/operations/0b1d4f5e-8c1a-4c33-9a1e-1f2a3b4c5d6e"},
			[]string{"operations/x", "projects/p/locations/l/operations/", "projects/p/locations/l/operations/a/b"}},
	}
	for _, tt := range tests {
		for _, s := range tt.ok {
			if err := tt.parse(s); err != nil {
				t.Errorf("%s %q: %v", tt.name, s, err)
			}
		}
		for _, s := range tt.bad {
			if err := tt.parse(s); status.Code(err) != codes.InvalidArgument {
				t.Errorf("%s %q: got %v, want InvalidArgument", tt.name, s, err)
			}
		}
	}
	if _, err := parseJobOrWildcard("projects/p/locations/l/jobs/-", true); err != nil {
		t.Errorf("wildcard job: %v", err)
	}
}

func TestPaginate(t *testing.T) {
	items := []int{5, 3, 9, 1, 7}
	key := func(i int) string { return fmt.Sprintf("%03d", i) }
	var got []int
	token, pages := "", 0
	for {
		page, next, err := paginate(items, key, 2, token)
		if err != nil {
			t.Fatal(err)
		}
		got, pages = append(got, page...), pages+1
		// An item created between pages does not disturb the walk.
		items = append(items, 0)
		if next == "" {
			break
		}
		token = next
	}
	if !slices.Equal(got, []int{1, 3, 5, 7, 9}) || pages != 3 {
		t.Errorf("pages gave %v in %d pages", got, pages)
	}
	if _, _, err := paginate(items, key, -1, ""); status.Code(err) != codes.InvalidArgument {
		t.Errorf("negative page size: %v", err)
	}
	if _, _, err := paginate(items, key, 1, "%%"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad token: %v", err)
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"PATH=/bin", "A=1", "B=2"}, []string{"B=3", "C=4"}, []string{"A=5"})
	want := []string{"PATH=/bin", "A=5", "B=3", "C=4"}
	if !slices.Equal(got, want) {
		t.Errorf("mergeEnv = %v, want %v", got, want)
	}
	if got := mergeEnv([]string{"A=1"}); !slices.Equal(got, []string{"A=1", "PATH=" + defaultPath}) {
		t.Errorf("without PATH: %v", got)
	}
}
