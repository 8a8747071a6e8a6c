package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/sandrun/sandrun/api"
)

// TestRequestWhileHostLeavesIsServed sends requests timed around the moment
// a session's host goes idle and leaves: before it is idle, while it
// checkpoints and gives up its lease, and after it left. Each is served
// exactly once, with the session's state, and none is lost or HOST_LOST.
func TestRequestWhileHostLeavesIsServed(t *testing.T) {
	const idle = 300 * time.Millisecond
	w := start(t, options{idleTimeout: idle})
	tp := w.subscribe(w.sys.Names.Completions)
	const s = "leaving"
	prev := w.exec(s, "export N=0")
	hosts := map[string]bool{prev.ExecutionID: true}
	sameHost, newHost := 0, 0
	const rounds = 20
	var ids []string
	for i := 1; i <= rounds; i++ {
		// The host finished the last request just before its completion
		// arrived, and leaves about idle later. Sleeping here IS the
		// behaviour under test: it aims the next request at a random
		// moment from a little before the host is idle to after it left.
		time.Sleep(idle - 200*time.Millisecond + rand.N(400*time.Millisecond))
		req := &api.Request{RequestID: fmt.Sprintf("leaving-%02d", i), SessionID: s, Op: api.OpExec,
			Command: "export N=$((N+1)); echo $N"}
		ids = append(ids, req.RequestID)
		got := w.do(req)
		if got.Status != api.StatusOK || got.Stdout != fmt.Sprintf("%d\n", i) {
			t.Fatalf("round %d: %s %+v, stdout %q (want %d), host %s (was %s)", i, got.Status, got.Error, got.Stdout, i, got.ExecutionID, prev.ExecutionID)
		}
		if got.ExecutionID == prev.ExecutionID {
			sameHost++
		} else {
			newHost++
		}
		hosts[got.ExecutionID] = true
		prev = got
	}
	t.Logf("%d requests served by the host that was going idle, %d by a new host; %d hosts", sameHost, newHost, len(hosts))
	if sameHost == 0 || newHost == 0 {
		t.Errorf("the requests did not land on both sides of the host leaving (%d same host, %d new host): the test missed its moment", sameHost, newHost)
	}
	// Once the last host left, nothing more is coming: each request has
	// exactly one completion.
	w.waitNoHost(s)
	per := byRequest(completionsSoFar(tp))
	for _, id := range ids {
		ms := per[id]
		if len(ms) != 1 {
			t.Errorf("request %s: %d completions, want 1", id, len(ms))
			continue
		}
		if c := decodeCompletions(t, ms)[0]; c.Status != api.StatusOK {
			t.Errorf("request %s: %s %+v", id, c.Status, c.Error)
		}
	}
}

// TestUnsetPersistsAcrossHosts: a variable unset in one request stays unset
// on the session's next host, while the others stay exported.
func TestUnsetPersistsAcrossHosts(t *testing.T) {
	w := start(t, options{idleTimeout: 500 * time.Millisecond})
	const s = "unset-hosts"
	w.exec(s, "export A=a B=b")
	first := w.exec(s, "unset A")
	w.waitNoHost(s)
	got := w.exec(s, "echo ${A-unset} $B")
	if got.Stdout != "unset b\n" {
		t.Fatalf("on a new host: %q, want %q", got.Stdout, "unset b\n")
	}
	if got.ExecutionID == first.ExecutionID || !got.ColdStart {
		t.Errorf("expected a new host: execution %s (was %s), cold_start %v", got.ExecutionID, first.ExecutionID, got.ColdStart)
	}
}

// TestHostLogsRequestDone: the host logs each request it served as one JSON
// line with the keys the design names.
func TestHostLogsRequestDone(t *testing.T) {
	w := start(t, options{})
	const s = "log-keys"
	const command = "echo logged; exit 3"
	got := w.exec(s, command)
	if got.ExitCode != 3 {
		t.Fatalf("exit code %d, want 3", got.ExitCode)
	}
	// The host's output reaches w.logs through a pipe the local Cloud Run
	// copies line by line, after the completion was published: look until
	// the line is there.
	prefix := got.ExecutionID + "/task0: "
	var line map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for line == nil {
		for _, l := range strings.Split(w.logs.String(), "\n") {
			rest, ok := strings.CutPrefix(l, prefix)
			if !ok || !strings.Contains(rest, `"request.done"`) || !strings.Contains(rest, got.RequestID) {
				continue
			}
			if err := json.Unmarshal([]byte(rest), &line); err != nil {
				t.Fatalf("request.done line is not one JSON object: %v\n%s", err, rest)
			}
			break
		}
		if line == nil {
			if time.Now().After(deadline) {
				t.Fatalf("no request.done line for request %s after %s", got.RequestID, prefix)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for k, want := range map[string]any{
		"event":            "request.done",
		"execution_id":     got.ExecutionID,
		"session_id":       s,
		"request_id":       got.RequestID,
		"command":          command,
		"exit_code":        float64(3),
		"duration_seconds": got.DurationSeconds,
		"total_seconds":    got.Timing.TotalSeconds,
		"severity":         "INFO",
	} {
		if line[k] != want {
			t.Errorf("%s = %#v, want %#v", k, line[k], want)
		}
	}
	ts, _ := line["timestamp"].(string)
	if when, err := time.Parse(time.RFC3339Nano, ts); err != nil || time.Since(when) > time.Minute || time.Until(when) > time.Second {
		t.Errorf("timestamp %q: %v", ts, err)
	}
	if t.Failed() {
		t.Logf("line: %v", line)
	}
}
