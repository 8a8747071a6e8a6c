package reaper

import (
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandrun/sandrun/internal/jobrunner"
	"github.com/sandrun/sandrun/internal/session"
)

// These tests need no cloud: they check the reaper's decisions alone.

func TestCutoffs(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg := Config{PublishAfter: 30 * time.Second, TTL: 7 * 24 * time.Hour, OrphanAfter: 2 * time.Minute}
	got := cutoffsAt(now, cfg)
	want := cutoffs{
		unpublished: now.Add(-30 * time.Second),
		stale:       now.Add(-7 * 24 * time.Hour),
		orphan:      now.Add(-2 * time.Minute),
	}
	if got != want {
		t.Fatalf("cutoffsAt = %+v, want %+v", got, want)
	}
}

func TestLapsedHost(t *testing.T) {
	unreachable := status.Error(codes.Unavailable, "Cloud Run is down")
	for _, tc := range []struct {
		name    string
		host    session.ExpiredHost
		exec    jobrunner.Execution
		err     error
		want    hostStep
		wantErr bool
	}{
		{name: "no execution recorded: recover", host: session.ExpiredHost{SessionID: "s"}, want: hostRecover},
		{name: "execution ended: recover", host: session.ExpiredHost{SessionID: "s", Execution: "e"}, exec: jobrunner.Execution{ID: "e"}, want: hostRecover},
		{name: "execution gone from Cloud Run: recover", host: session.ExpiredHost{SessionID: "s", Execution: "e"}, err: status.Error(codes.NotFound, "no such execution"), want: hostRecover},
		{name: "execution still runs: cancel, do not recover", host: session.ExpiredHost{SessionID: "s", Execution: "e"}, exec: jobrunner.Execution{ID: "e", Running: true}, want: hostCancel},
		{name: "Cloud Run cannot be asked: wait", host: session.ExpiredHost{SessionID: "s", Execution: "e"}, err: unreachable, want: hostWait, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := lapsedHost(tc.host, tc.exec, tc.err)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Fatalf("lapsedHost = %v, %v; want %v (error: %v)", got, err, tc.want, tc.wantErr)
			}
			if tc.wantErr && !errors.Is(err, tc.err) {
				t.Fatalf("error %v does not wrap %v", err, tc.err)
			}
		})
	}
}

func TestStranded(t *testing.T) {
	started := &session.Launch{ID: "l1", Execution: "e1", Attempts: 1}
	for _, tc := range []struct {
		name     string
		waiting  session.Waiting
		exec     jobrunner.Execution
		err      error
		needExec bool
		want     strandedStep
	}{
		{name: "no launch in flight: relaunch", waiting: session.Waiting{SessionID: "s"}, want: strandedRelaunch},
		{name: "launch not yet started: leave it", waiting: session.Waiting{SessionID: "s", Launch: &session.Launch{ID: "l1", Attempts: 1}}, want: strandedLeave},
		{name: "its execution runs and will take the lease: leave it", waiting: session.Waiting{SessionID: "s", Launch: started}, needExec: true,
			exec: jobrunner.Execution{ID: "e1", Running: true}, want: strandedLeave},
		{name: "its execution ended without the lease: withdraw and relaunch", waiting: session.Waiting{SessionID: "s", Launch: started}, needExec: true,
			exec: jobrunner.Execution{ID: "e1"}, want: strandedWithdraw},
		{name: "Cloud Run cannot be asked: leave it", waiting: session.Waiting{SessionID: "s", Launch: started}, needExec: true,
			err: status.Error(codes.Unavailable, "down"), want: strandedLeave},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := needsExecution(tc.waiting); got != tc.needExec {
				t.Fatalf("needsExecution = %v, want %v", got, tc.needExec)
			}
			if got := stranded(tc.waiting, tc.exec, tc.err); got != tc.want {
				t.Fatalf("stranded = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestOrphans(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cutoff := now.Add(-2 * time.Minute)
	old, young := now.Add(-time.Hour), now.Add(-time.Second)
	running := []jobrunner.Execution{
		{ID: "hosting", Running: true, CreatedAt: old},
		{ID: "pool-member", Running: true, CreatedAt: old},
		{ID: "orphan", Running: true, CreatedAt: old},
		{ID: "at-cutoff", Running: true, CreatedAt: cutoff},
		// A launch records its execution a moment after starting it.
		{ID: "young", Running: true, CreatedAt: young},
	}
	hosted := map[string]bool{"hosting": true, "pool-member": true}
	var ids []string
	for _, e := range orphans(running, hosted, cutoff) {
		ids = append(ids, e.ID)
	}
	if want := []string{"orphan", "at-cutoff"}; !slices.Equal(ids, want) {
		t.Fatalf("orphans = %v, want %v", ids, want)
	}
	if got := orphans(nil, hosted, cutoff); len(got) != 0 {
		t.Fatalf("orphans of nothing running = %v", got)
	}
}
