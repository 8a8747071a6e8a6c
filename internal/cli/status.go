package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/gcp"
	"github.com/sandrun/sandrun/internal/hostcred"
	"github.com/sandrun/sandrun/internal/pool"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/system"
)

// statusReport is what `sandrun status` prints.
type statusReport struct {
	Sessions int `json:"sessions"`
	Hosts    int `json:"hosts"`
	Queued   int `json:"queued"`
	// The requests finished within Window (at most recentLimit).
	Window     string         `json:"window"`
	Finished   int            `json:"finished"`
	Outcomes   map[string]int `json:"outcomes"`
	Latency    latency        `json:"latency_seconds"`
	ColdStarts int            `json:"cold_starts"`
	PoolHits   int            `json:"pool_hits"`
	Errors     []recentError  `json:"recent_errors"`
	Pool       pool.Status    `json:"pool"`
	// Waiting are the sessions waiting for a host, in line (first come,
	// first served): behind the deployment's most running hosts, or while
	// Cloud Run refuses launches.
	Waiting []session.HostWait `json:"waiting_for_host"`
	// HostTokenExpires is when the hosts' stored token expires; nil when
	// none is stored (hosts then work with their job's own account).
	HostTokenExpires *time.Time `json:"host_token_expires,omitempty"`
}

type latency struct {
	TotalP50 float64 `json:"total_p50"`
	TotalP90 float64 `json:"total_p90"`
	TotalP99 float64 `json:"total_p99"`
	QueueP50 float64 `json:"queue_p50"`
	QueueP99 float64 `json:"queue_p99"`
}

type recentError struct {
	FinishedAt time.Time     `json:"finished_at"`
	SessionID  string        `json:"session_id"`
	RequestID  string        `json:"request_id"`
	Op         string        `json:"op"`
	Code       api.ErrorCode `json:"code"`
	Message    string        `json:"message"`
}

const (
	recentLimit  = 5000
	errorsShown  = 5
	messageShown = 120
	waitingShown = 20
)

func runStatus(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "status", `status [--window D] [--json]

Shows the running system from its Firestore state: active sessions, live
hosts, queued requests; the requests finished within the window by outcome,
their end-to-end and queue latency percentiles, cold starts, and the newest
errors; the warm pool of hosts (idle, starting, hits and misses); the
sessions waiting for a host, with their place in line; and when the hosts'
access token expires. It reads only: it neither creates nor wakes anything.`)
	var cf clientFlags
	cf.define(fs, system.Inspect|system.Status)
	window := fs.Duration("window", 15*time.Minute, "how far back the request figures look")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := cf.parse(fs, env, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "sandrun status: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	clients, err := gcp.Connect(ctx, cf.s.Project, nil)
	if err != nil {
		return err
	}
	defer clients.Close()
	store := session.NewStore(clients.Firestore, clients.Storage, session.Config{})
	now := time.Now()
	o, err := store.Overview(ctx, now.Add(-*window), recentLimit)
	if err != nil {
		return err
	}
	rep := summarize(o, *window)
	if rep.Pool, err = pool.New(cf.s.Pool, store, nil, nil, slog.New(slog.DiscardHandler)).Status(ctx); err != nil {
		return err
	}
	if rep.Waiting, err = store.WaitingForHost(ctx); err != nil {
		return err
	}
	tok, err := hostcred.NewFirestoreStore(clients.Firestore).HostToken(ctx)
	if err != nil {
		return err
	}
	if tok.Value != "" {
		rep.HostTokenExpires = &tok.Expires
	}
	if *asJSON {
		return printJSON(env, rep)
	}
	rep.write(env)
	return nil
}

// summarize turns the recorded completions of recent requests into figures.
func summarize(o *session.Overview, window time.Duration) *statusReport {
	rep := &statusReport{Sessions: o.Sessions, Hosts: o.Hosts, Queued: o.Queued, Window: window.String(),
		Outcomes: map[string]int{}, Errors: []recentError{}}
	var total, queue []float64
	for _, it := range o.Recent {
		var c api.Completion
		if err := json.Unmarshal([]byte(it.Completion), &c); err != nil {
			continue
		}
		rep.Finished++
		outcome := string(c.Status)
		if c.Error != nil {
			outcome = string(c.Error.Code)
			if len(rep.Errors) < errorsShown {
				rep.Errors = append(rep.Errors, recentError{FinishedAt: it.FinishedAt, SessionID: it.SessionID, RequestID: it.RequestID,
					Op: it.Op, Code: c.Error.Code, Message: c.Error.Message})
			}
		}
		rep.Outcomes[outcome]++
		if c.ColdStart {
			rep.ColdStarts++
		}
		if c.PoolHit {
			rep.PoolHits++
		}
		total = append(total, c.Timing.TotalSeconds)
		queue = append(queue, c.Timing.QueueSeconds)
	}
	slices.Sort(total)
	slices.Sort(queue)
	rep.Latency = latency{TotalP50: quantile(total, 0.5), TotalP90: quantile(total, 0.9), TotalP99: quantile(total, 0.99),
		QueueP50: quantile(queue, 0.5), QueueP99: quantile(queue, 0.99)}
	return rep
}

// quantile returns the q-quantile of sorted values (nearest rank), 0 for
// none.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1)+0.5)]
}

func (rep *statusReport) write(env *Env) {
	w := env.Stdout
	fmt.Fprintf(w, "sessions  %d active, %d hosted, %d requests queued\n", rep.Sessions, rep.Hosts, rep.Queued)
	fmt.Fprintf(w, "requests  last %s: %d finished", rep.Window, rep.Finished)
	if rep.Finished > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(rep.Outcomes)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, rep.Outcomes[k]))
		}
		fmt.Fprintf(w, " (%s); %d cold starts, %d pool hits", strings.Join(parts, ", "), rep.ColdStarts, rep.PoolHits)
	}
	fmt.Fprintln(w)
	if rep.Finished > 0 {
		l := rep.Latency
		fmt.Fprintf(w, "latency   end to end p50 %.3fs, p90 %.3fs, p99 %.3fs; waiting p50 %.3fs, p99 %.3fs\n",
			l.TotalP50, l.TotalP90, l.TotalP99, l.QueueP50, l.QueueP99)
	}
	p := rep.Pool
	switch {
	case p.Enabled || p.Idle+p.Launching+p.Hits+p.Misses > 0:
		fmt.Fprintf(w, "pool      %d idle, %d starting", p.Idle, p.Launching)
		if p.Enabled {
			fmt.Fprintf(w, " (wants %d)", p.Desired)
		}
		fmt.Fprintf(w, "; last %s: %d hits, %d misses", p.Window, p.Hits, p.Misses)
		if p.Hits+p.Misses > 0 {
			fmt.Fprintf(w, " (hit rate %.0f%%)", 100*p.HitRate)
		}
		fmt.Fprintf(w, "; a host takes %.1fs to start\n", p.ReadySeconds)
	default:
		fmt.Fprintln(w, "pool      off")
	}
	if len(rep.Waiting) > 0 {
		fmt.Fprintf(w, "waiting   %d sessions wait for a host, first come first served:\n", len(rep.Waiting))
		for i, h := range rep.Waiting {
			if i == waitingShown {
				fmt.Fprintf(w, "  ... and %d more\n", len(rep.Waiting)-i)
				break
			}
			why := "the most running hosts are running"
			if h.For == session.WaitRefused {
				why = "Cloud Run refuses launches; retrying"
			}
			fmt.Fprintf(w, "  %d. %s  since %s  (%s)\n", h.Place, h.SessionID, h.Since.UTC().Format(time.RFC3339), why)
		}
	}
	if t := rep.HostTokenExpires; t != nil {
		fmt.Fprintf(w, "token     the hosts' token expires %s (in %s; renewed 20m before by default)\n", t.UTC().Format(time.RFC3339), time.Until(*t).Round(time.Second))
	} else {
		fmt.Fprintln(w, "token     none stored: hosts work with their job's own account")
	}
	if len(rep.Errors) > 0 {
		fmt.Fprintln(w, "errors    newest first:")
		for _, e := range rep.Errors {
			msg := e.Message
			if r := []rune(msg); len(r) > messageShown {
				msg = string(r[:messageShown]) + "..."
			}
			fmt.Fprintf(w, "  %s  %s  %s %s  %s: %s\n", e.FinishedAt.UTC().Format(time.RFC3339), e.SessionID, e.Op, e.RequestID, e.Code, msg)
		}
	}
}
