package host

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/session"
)

// item is a queued request named id; a foreground command when op is exec.
func item(id string, op api.Op) session.Item {
	raw, _ := json.Marshal(api.Request{RequestID: id, Op: op, Command: "sleep 120"})
	return session.Item{RequestID: id, Op: string(op), Request: raw}
}

// pass does what one pass of the serve loop does with the queued items,
// every Start succeeding, and returns the ids it started.
func pass(f *flight, queued []session.Item) []string {
	var ids []string
	for _, it := range candidates(queued) {
		if f.mayStart(api.Op(it.Op)) {
			f.started(&it)
			ids = append(ids, it.RequestID)
		}
	}
	return ids
}

func TestServeOrder(t *testing.T) {
	exec, fileRead, kill, list, destroy := api.OpExec, api.OpFileRead, api.OpProcessKill, api.OpProcessList, api.OpSessionDestroy
	// step is one pass: the requests that finished (or the foreground
	// command that began: "begun") before it, the queue it sees, and what
	// it must start.
	type step struct {
		before []string
		queued []session.Item
		want   []string
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"requests run one at a time in order", []step{
			{queued: []session.Item{item("a", exec), item("b", fileRead)}, want: []string{"a"}},
			{before: []string{"a"}, queued: []session.Item{item("b", fileRead), item("c", exec)}, want: []string{"b"}},
		}},
		{"control overtakes what is queued behind a running command", []step{
			{queued: []session.Item{item("long", exec)}, want: []string{"long"}},
			{before: []string{"begun"}, queued: []session.Item{item("q1", exec), item("q2", exec), item("list", list), item("kill", kill)}, want: []string{"list", "kill"}},
			// The kill ended the command; the queued run once it is answered.
			{before: []string{"long", "list"}, queued: []session.Item{item("q1", exec), item("q2", exec)}},
			{before: []string{"kill"}, queued: []session.Item{item("q1", exec), item("q2", exec)}, want: []string{"q1"}},
		}},
		{"a kill waits until the command queued before it has begun", []step{
			{queued: []session.Item{item("a", exec), item("kill", kill)}, want: []string{"a"}},
			{queued: []session.Item{item("kill", kill)}},
			{before: []string{"begun"}, queued: []session.Item{item("kill", kill)}, want: []string{"kill"}},
		}},
		{"no command starts while a kill is served", []step{
			{queued: []session.Item{item("kill", kill), item("a", exec), item("list", list)}, want: []string{"kill", "list"}},
			{before: []string{"list"}, queued: []session.Item{item("a", exec)}},
			{before: []string{"kill"}, queued: []session.Item{item("a", exec)}, want: []string{"a"}},
		}},
		{"control waits for a quick request", []step{
			{queued: []session.Item{item("read", fileRead), item("kill", kill)}, want: []string{"read"}},
			{queued: []session.Item{item("kill", kill)}},
			{before: []string{"read"}, queued: []session.Item{item("kill", kill)}, want: []string{"kill"}},
		}},
		{"destroy overtakes everything and then nothing starts", []step{
			{queued: []session.Item{item("long", exec)}, want: []string{"long"}},
			{queued: []session.Item{item("q1", exec), item("list", list), item("destroy", destroy), item("q2", exec)}},
			{before: []string{"begun"}, queued: []session.Item{item("q1", exec), item("list", list), item("destroy", destroy), item("q2", exec)}, want: []string{"destroy"}},
			{before: []string{"long"}, queued: []session.Item{item("q1", exec), item("list", list), item("q2", exec)}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &flight{ops: map[string]api.Op{}}
			for i, s := range tc.steps {
				for _, id := range s.before {
					if id == "begun" {
						close(f.begun)
						continue
					}
					f.ended(finished{requestID: id, foreground: id == f.fg})
				}
				if got := pass(f, s.queued); !slices.Equal(got, s.want) {
					t.Fatalf("step %d started %v, want %v", i, got, s.want)
				}
			}
		})
	}
}

// The serve loop never starts again what it took while a listener's Queue
// still lists it, and forgets it once a view of the inbox no longer does.
func TestUntakenSkipsWhatTheLoopTook(t *testing.T) {
	a, b, c := item("a", api.OpExec), item("b", api.OpExec), item("c", api.OpExec)
	taken := map[string]bool{"a": true}
	// A Queue sent before a's Start landed still lists it.
	if got := ids(untaken([]session.Item{a, b}, taken)); !slices.Equal(got, []string{"b"}) {
		t.Errorf("untaken %v, want b", got)
	}
	if !taken["a"] {
		t.Error("a was forgotten while the inbox still listed it")
	}
	if got := ids(untaken([]session.Item{b, c}, taken)); !slices.Equal(got, []string{"b", "c"}) || len(taken) != 0 {
		t.Errorf("untaken %v with taken %v, want b c and nothing taken", got, taken)
	}
}

func ids(items []session.Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.RequestID)
	}
	return out
}
