package outbox

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
)

// steps records, in order, what the relay asked of the publisher and the
// store, and fails the calls the test says.
type steps struct {
	log                     []string
	publishErr, markErr     error
	published, traceparents []string
}

func (s *steps) PublishCompletion(ctx context.Context, data []byte, traceparent string) error {
	s.log = append(s.log, "publish "+string(data))
	if s.publishErr != nil {
		return s.publishErr
	}
	s.traceparents = append(s.traceparents, traceparent)
	return nil
}

func (s *steps) MarkPublished(ctx context.Context, sessionID, requestID string) error {
	s.log = append(s.log, "mark "+sessionID+"/"+requestID)
	return s.markErr
}

func TestRelay(t *testing.T) {
	rec := Recorded{SessionID: "s1", RequestID: "r1", Completion: []byte(`{"request_id":"r1"}`), Traceparent: "00-tp"}
	failed := errors.New("unavailable")
	for _, tc := range []struct {
		name                string
		publishErr, markErr error
		wantLog             []string
		wantErr             error
	}{
		{name: "published, then marked", wantLog: []string{`publish {"request_id":"r1"}`, "mark s1/r1"}},
		// Unmarked, it is the reaper's to publish again.
		{name: "publish fails: not marked, error returned", publishErr: failed, wantLog: []string{`publish {"request_id":"r1"}`}, wantErr: failed},
		// Out already: once more at worst, with the same content.
		{name: "mark fails: published, no error", markErr: failed, wantLog: []string{`publish {"request_id":"r1"}`, "mark s1/r1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &steps{publishErr: tc.publishErr, markErr: tc.markErr}
			err := NewRelay(s, s, slog.New(slog.NewTextHandler(io.Discard, nil))).Send(context.Background(), rec)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("Send = %v, want %v", err, tc.wantErr)
			}
			if !slices.Equal(s.log, tc.wantLog) {
				t.Fatalf("calls %q, want %q", s.log, tc.wantLog)
			}
			if tc.publishErr == nil && !slices.Equal(s.traceparents, []string{"00-tp"}) {
				t.Fatalf("published with traceparent %q, want the recorded one", s.traceparents)
			}
		})
	}
}
