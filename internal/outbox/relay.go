package outbox

import (
	"context"
	"log/slog"
)

// Sender publishes a recorded completion (a Publisher does).
type Sender interface {
	PublishCompletion(ctx context.Context, data []byte, traceparent string) error
}

// Marker records that a completion was published (the session store does;
// a host does through its lease, session.Store.Published).
type Marker interface {
	MarkPublished(ctx context.Context, sessionID, requestID string) error
}

// Recorded is a completion as the session store recorded it.
type Recorded struct {
	SessionID, RequestID string
	// Completion is the recorded JSON, published as it is.
	Completion []byte
	// Traceparent is the trace context the published message carries; ""
	// for none.
	Traceparent string
}

// Relay hands recorded completions to the backend: it publishes one, then
// marks it published. The dispatcher, the host and the reaper all publish
// through it.
//
// The order is what makes an answer never lost: a completion is recorded
// before it is published, and marked only after, so one whose publish
// failed, or whose publisher died, stays unmarked and the reaper publishes
// it again. A completion may so be published twice, always with the same
// content; backends de-duplicate by request_id.
type Relay struct {
	sender Sender
	marker Marker
	logger *slog.Logger
}

// NewRelay returns a relay publishing with sender and marking with marker.
func NewRelay(sender Sender, marker Marker, logger *slog.Logger) *Relay {
	return &Relay{sender: sender, marker: marker, logger: logger}
}

// Send publishes a recorded completion and marks it published. It returns
// the publish's error (logged here, once): the completion stays unmarked,
// and the reaper publishes it later. A failure to mark is only logged: the
// completion is out, and publishing it once more does no harm.
func (r *Relay) Send(ctx context.Context, c Recorded) error {
	if err := r.sender.PublishCompletion(ctx, c.Completion, c.Traceparent); err != nil {
		r.logger.Warn("publish failed; the completion stays recorded and the reaper publishes it", "event", "completion.publish_failed",
			"session_id", c.SessionID, "request_id", c.RequestID, "error", err.Error())
		return err
	}
	if err := r.marker.MarkPublished(ctx, c.SessionID, c.RequestID); err != nil {
		r.logger.Warn("completion published but not marked; the reaper may publish it once more", "event", "completion.mark_failed",
			"session_id", c.SessionID, "request_id", c.RequestID, "error", err.Error())
	}
	return nil
}
