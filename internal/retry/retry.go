// Package retry decides, in one place, which failures of Google Cloud calls
// are worth another try, and retries them with capped exponential backoff.
//
// Each call is retried in exactly one layer: the one that makes it.
//   - Firestore: the session store. Its methods retry their transactions
//     (FirestoreTransaction) and single-document reads (Firestore), and return an
//     error only once retrying is pointless or the policy's time ran out;
//     their callers (dispatcher, host, pool, reaper, launcher) never wrap
//     them in Do again, which would multiply the attempts and the wait.
//     Its queries and single writes are tried once: their callers loop
//     anyway (the host's lease renewal retries until its fence, the
//     reaper's next pass, the host's next inbox read).
//   - Pub/Sub publishing: package outbox (PublishCompletion, DeadLetter).
//   - Cloud Run: the pool retries a member's launch; a session's launch is
//     retried by package launch's per-session backoff, not by Do.
//
// What a layer above does with a final error is not another retry of the
// call: the dispatcher nacks (Pub/Sub delivers the message again), the
// launcher falls back from the pool to a new execution.
package retry

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/cenkalti/backoff/v4"
	"google.golang.org/api/googleapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Policy is how often and how long to retry one kind of dependency.
type Policy struct {
	Initial    time.Duration
	Max        time.Duration
	MaxElapsed time.Duration
}

// Policies per dependency. Pub/Sub and Firestore calls are short and cheap
// to repeat; a launch may wait on Cloud Run's quota for a while.
var (
	Firestore = Policy{Initial: 20 * time.Millisecond, Max: 2 * time.Second, MaxElapsed: 30 * time.Second}
	// FirestoreTransaction outlasts a transaction that its caller
	// abandoned (a dispatcher killed inside it): Firestore keeps such a
	// transaction's locks for 60 s, and every transaction that touches the
	// same documents meanwhile is aborted ("Transaction lock timeout").
	// Giving up sooner turns each abandoned transaction into a nack, a
	// redelivery after the subscription's backoff, and the session's later
	// requests held behind it (TestReliabilityDispatcherKilled).
	FirestoreTransaction = Policy{Initial: 20 * time.Millisecond, Max: 2 * time.Second, MaxElapsed: 75 * time.Second}
	PubSub               = Policy{Initial: 50 * time.Millisecond, Max: 5 * time.Second, MaxElapsed: 60 * time.Second}
	Storage              = Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second, MaxElapsed: 60 * time.Second}
	CloudRun             = Policy{Initial: 250 * time.Millisecond, Max: 10 * time.Second, MaxElapsed: 60 * time.Second}
	// Stream reopens a stream that ended (a Pub/Sub StreamingPull): for
	// as long as its consumer runs, so without a time limit.
	Stream = Policy{Initial: 100 * time.Millisecond, Max: 10 * time.Second}
)

// Transient reports whether err may go away on its own, so that the call
// that failed is worth repeating.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted, codes.Internal:
			return true
		}
		return false
	}
	var g *googleapi.Error
	if errors.As(err, &g) {
		return g.Code == http.StatusTooManyRequests || g.Code == http.StatusRequestTimeout || g.Code >= 500
	}
	// Anything else is sandrun's own error (a decoding failure, a lost
	// lease): repeating the call would repeat the failure.
	return false
}

// Do calls f until it succeeds, fails permanently, ctx ends or the policy's
// time runs out. Each retry is logged once with its attempt number.
func Do(ctx context.Context, p Policy, logger *slog.Logger, what string, f func(context.Context) error) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = p.Initial, p.Max, p.MaxElapsed
	attempt := 0
	return backoff.RetryNotify(func() error {
		attempt++
		err := f(ctx)
		if err != nil && !Transient(err) {
			return backoff.Permanent(err)
		}
		return err
	}, backoff.WithContext(b, ctx), func(err error, wait time.Duration) {
		if logger != nil {
			logger.Warn("retrying", "event", "retry", "what", what, "attempt", attempt, "wait_seconds", wait.Seconds(), "error", err.Error())
		}
	})
}

// Reopenable reports whether a stream that ended with err is worth opening
// again: a transient failure, or UNKNOWN, which Pub/Sub's StreamingPull
// ends with at times and which its Go client does not retry.
func Reopenable(err error) bool {
	return Transient(err) || status.Code(err) == codes.Unknown
}

// Reconnect runs the stream consumer f again each time it ends with a
// Reopenable error (or with none) before ctx ends, waiting with backoff in
// between; the backoff starts over once f has run for longer than the
// policy's Max. Each reconnection is logged once with its attempt number.
// It returns when ctx ends, with what f last returned, or with f's first
// error that is not Reopenable.
func Reconnect(ctx context.Context, p Policy, logger *slog.Logger, what string, f func(context.Context) error) error {
	return rerun(ctx, p, logger, what, "stream ended; reconnecting", "stream.reconnect", Reopenable, f)
}

// Restart runs f again each time it returns before ctx ends, whatever it
// returned, as a process supervisor restarts a program that stopped; the
// waits and logs are Reconnect's. It returns what f returned once ctx ends.
func Restart(ctx context.Context, p Policy, logger *slog.Logger, what string, f func(context.Context) error) error {
	return rerun(ctx, p, logger, what, "stopped; restarting", "component.restart", func(error) bool { return true }, f)
}

func rerun(ctx context.Context, p Policy, logger *slog.Logger, what, msg, event string, again func(error) bool, f func(context.Context) error) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = p.Initial, p.Max, 0
	attempt := 0
	for {
		start := time.Now()
		err := f(ctx)
		if ctx.Err() != nil || (err != nil && !again(err)) {
			return err
		}
		if time.Since(start) > p.Max {
			b.Reset()
			attempt = 0
		}
		attempt++
		wait := b.NextBackOff()
		if logger != nil {
			reason := "returned without error"
			if err != nil {
				reason = err.Error()
			}
			logger.Warn(msg, "event", event, "what", what, "attempt", attempt, "wait_seconds", wait.Seconds(), "error", reason)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}
