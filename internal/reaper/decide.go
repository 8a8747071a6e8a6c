package reaper

import (
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandrun/sandrun/internal/jobrunner"
	"github.com/sandrun/sandrun/internal/session"
)

// What the reaper decides in a pass, as functions of what it read and the
// time alone: each is unit-tested without a cloud (decide_test.go). The
// pass reads, calls these, and acts on what they return.

// cutoffs are the times a pass compares records against.
type cutoffs struct {
	// unpublished: a completion recorded before it and still unmarked is
	// published again (its host would have published it by then).
	unpublished time.Time
	// stale: an active session last used before it is destroyed.
	stale time.Time
	// orphan: an execution hosting nothing that was created before it is
	// cancelled (a younger one may be a launch not yet recorded).
	orphan time.Time
}

// cutoffsAt returns the cutoffs of a pass that starts at now.
func cutoffsAt(now time.Time, cfg Config) cutoffs {
	return cutoffs{
		unpublished: now.Add(-cfg.PublishAfter),
		stale:       now.Add(-cfg.TTL),
		orphan:      now.Add(-cfg.OrphanAfter),
	}
}

// hostStep is what a pass does with a host whose lease lapsed.
type hostStep int

const (
	// hostWait: Cloud Run could not be asked; the next pass looks again.
	hostWait hostStep = iota
	// hostCancel: the execution still runs (stopped, or cut off from
	// Firestore, its commands perhaps still running): cancel it, and
	// recover the session only once it ended.
	hostCancel
	// hostRecover: the execution ended (or there is none): take the
	// session from it, answering its running requests HOST_LOST.
	hostRecover
)

// lapsedHost decides about a lapsed host from its execution as Cloud Run
// reported it (e, or the error of asking). A session is recovered only
// once its old host ended, so that no two commands of a session ever run
// at once (docs/reliability.md, "A lost host does nothing more").
func lapsedHost(h session.ExpiredHost, e jobrunner.Execution, err error) (hostStep, error) {
	switch {
	case h.Execution == "", status.Code(err) == codes.NotFound:
		return hostRecover, nil
	case err != nil:
		return hostWait, fmt.Errorf("session %s: look at its lapsed host: %w", h.SessionID, err)
	case e.Running:
		return hostCancel, nil
	}
	return hostRecover, nil
}

// strandedStep is what a pass does with a session that has queued
// requests and no host.
type strandedStep int

const (
	// strandedLeave: a launch is under way (not yet started, or its
	// execution runs and will take the lease), or Cloud Run could not be
	// asked: nothing to do this pass.
	strandedLeave strandedStep = iota
	// strandedRelaunch: no launch in flight: claim one (the store counts
	// the attempt, or gives the session up past the most attempts).
	strandedRelaunch
	// strandedWithdraw: the launch in flight started an execution that
	// ended without taking the lease (it crashed at start): withdraw it,
	// counted, rather than wait it out, then relaunch.
	strandedWithdraw
)

// needsExecution reports whether deciding about w needs its launch's
// execution from Cloud Run.
func needsExecution(w session.Waiting) bool {
	return w.Launch != nil && w.Launch.Execution != ""
}

// stranded decides about a session waiting for a host, given its launch's
// execution as Cloud Run reported it (e, or the error of asking) when
// needsExecution says so.
func stranded(w session.Waiting, e jobrunner.Execution, err error) strandedStep {
	switch {
	case w.Launch == nil:
		return strandedRelaunch
	case !needsExecution(w), err != nil, e.Running:
		return strandedLeave
	}
	return strandedWithdraw
}

// orphans returns the running executions that host nothing (not in
// hosted) and were created before cutoff: the pass cancels them, which
// ends their background processes.
func orphans(running []jobrunner.Execution, hosted map[string]bool, cutoff time.Time) []jobrunner.Execution {
	var out []jobrunner.Execution
	for _, e := range running {
		if !hosted[e.ID] && !e.CreatedAt.After(cutoff) {
			out = append(out, e)
		}
	}
	return out
}
