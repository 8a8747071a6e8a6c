package retry

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/api/googleapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestTransient(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{status.Error(codes.Unavailable, "x"), true},
		{fmt.Errorf("commit: %w", status.Error(codes.Aborted, "x")), true},
		{status.Error(codes.ResourceExhausted, "quota"), true},
		{status.Error(codes.NotFound, "x"), false},
		{status.Error(codes.FailedPrecondition, "x"), false},
		{status.Error(codes.InvalidArgument, "x"), false},
		{&googleapi.Error{Code: 503}, true},
		{fmt.Errorf("write: %w", &googleapi.Error{Code: 429}), true},
		{&googleapi.Error{Code: 412}, false},
		{context.Canceled, false},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), false},
		{errors.New("decode session: bad field"), false},
	}
	for _, tt := range tests {
		if got := Transient(tt.err); got != tt.want {
			t.Errorf("Transient(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

var fast = Policy{Initial: time.Millisecond, Max: 2 * time.Millisecond, MaxElapsed: 5 * time.Second}

func TestDoRetriesTransientOnly(t *testing.T) {
	calls := 0
	err := Do(context.Background(), fast, nil, "test", func(context.Context) error {
		calls++
		if calls < 3 {
			return status.Error(codes.Unavailable, "down")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Do = %v after %d calls, want success after 3", err, calls)
	}

	calls = 0
	permanent := status.Error(codes.InvalidArgument, "bad")
	err = Do(context.Background(), fast, nil, "test", func(context.Context) error { calls++; return permanent })
	if !errors.Is(err, permanent) || calls != 1 {
		t.Fatalf("Do = %v after %d calls, want the permanent error after 1", err, calls)
	}
}

func TestDoStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := Do(ctx, fast, nil, "test", func(context.Context) error {
		calls++
		if calls == 2 {
			cancel()
		}
		return status.Error(codes.Unavailable, "down")
	})
	if err == nil || calls != 2 {
		t.Fatalf("Do = %v after %d calls, want an error after 2", err, calls)
	}
}

// TestReconnect: a stream that ends with UNKNOWN or UNAVAILABLE is opened
// again; one that ends with a permanent status is not; Restart runs again
// whatever the error.
func TestReconnect(t *testing.T) {
	p := Policy{Initial: time.Millisecond, Max: 5 * time.Millisecond}
	ends := []error{status.Error(codes.Unknown, ""), status.Error(codes.Unavailable, "x"), nil}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	err := Reconnect(ctx, p, nil, "stream", func(ctx context.Context) error {
		calls++
		if calls <= len(ends) {
			return ends[calls-1]
		}
		cancel()
		return nil
	})
	if err != nil || calls != len(ends)+1 {
		t.Errorf("Reconnect: %d calls, error %v; want %d calls and nil once ctx ends", calls, err, len(ends)+1)
	}

	calls = 0
	denied := status.Error(codes.PermissionDenied, "no")
	err = Reconnect(context.Background(), p, nil, "stream", func(ctx context.Context) error {
		calls++
		return denied
	})
	if !errors.Is(err, denied) || calls != 1 {
		t.Errorf("Reconnect on a permanent error: %d calls, error %v; want 1 call and %v", calls, err, denied)
	}

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	calls = 0
	Restart(ctx, p, nil, "component", func(ctx context.Context) error {
		if calls++; calls == 3 {
			cancel()
		}
		return denied
	})
	if calls != 3 {
		t.Errorf("Restart ran f %d times, want 3 (until ctx ended)", calls)
	}
}
