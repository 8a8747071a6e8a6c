package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/pool"
	"github.com/sandrun/sandrun/internal/session"
)

// TestStatusShowsTheRunningSystem runs `sandrun status` against a system
// that served a pool hit, a success and a timeout, with requests still
// queued behind a running command.
func TestStatusShowsTheRunningSystem(t *testing.T) {
	w := start(t, options{pool: pool.Policy{Min: 1, Target: 1, Max: 3, MemberTTL: 2 * time.Second}})
	w.waitPool("hold an idle host", time.Minute, func(idle []session.Member) bool { return len(idle) >= 1 })
	hit := w.exec("status-a", "echo one")
	if !hit.PoolHit {
		t.Fatalf("the first request was no pool hit: %+v", hit)
	}
	w.exec("status-a", "echo two")
	timedOut := w.do(&api.Request{SessionID: "status-a", Op: api.OpExec, Command: "sleep 30", TimeoutSeconds: 0.5})
	if timedOut.Error == nil || timedOut.Error.Code != api.CodeTimeout {
		t.Fatalf("want a timeout: %+v", timedOut)
	}

	var rep struct {
		Sessions, Hosts, Queued, Finished int
		Outcomes                          map[string]int
		PoolHits                          int `json:"pool_hits"`
		Latency                           struct {
			TotalP50 float64 `json:"total_p50"`
			TotalP99 float64 `json:"total_p99"`
		} `json:"latency_seconds"`
		Errors []struct {
			RequestID string `json:"request_id"`
			Code      string
		} `json:"recent_errors"`
		Pool             pool.Status
		HostTokenExpires *time.Time `json:"host_token_expires"`
	}
	out := runSandrun(t, w, "status", "--json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if rep.Sessions != 1 || rep.Hosts != 1 || rep.Finished != 3 || rep.Outcomes["ok"] != 2 || rep.Outcomes["TIMEOUT"] != 1 || rep.PoolHits != 1 {
		t.Errorf("status: %+v; want 1 session on 1 host, 3 finished (2 ok, 1 TIMEOUT), 1 pool hit", rep)
	}
	if len(rep.Errors) != 1 || rep.Errors[0].RequestID != timedOut.RequestID || rep.Errors[0].Code != "TIMEOUT" {
		t.Errorf("recent errors %+v; want the timeout %s", rep.Errors, timedOut.RequestID)
	}
	if rep.Latency.TotalP50 <= 0 || rep.Latency.TotalP99 < 0.5 {
		t.Errorf("latency %+v: want a median above zero and a p99 of at least the 0.5 s timeout", rep.Latency)
	}
	if !rep.Pool.Enabled || rep.Pool.Hits != 1 || rep.Pool.Misses != 0 || rep.Pool.HitRate != 1 {
		t.Errorf("pool %+v; want on, 1 hit, no miss", rep.Pool)
	}

	if rep.HostTokenExpires == nil || time.Until(*rep.HostTokenExpires) < 30*time.Minute {
		t.Errorf("host token expires %v; want the launch's token, about an hour from now", rep.HostTokenExpires)
	}

	// The table says the same to a person.
	table := runSandrun(t, w, "status")
	for _, want := range []string{"1 active, 1 hosted", "3 finished (TIMEOUT 1, ok 2)", "1 pool hits", "hit rate 100%", timedOut.RequestID + "  TIMEOUT", "token     the hosts' token expires"} {
		if !strings.Contains(table, want) {
			t.Errorf("status does not say %q:\n%s", want, table)
		}
	}
}
