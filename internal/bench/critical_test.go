package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/sandrun/sandrun/emulator/calls"
)

// A warm request as the local cloud recorded it before issue 18's cuts, on
// a millisecond clock: the backend (peer b) publishes; the dispatcher (peer
// d, in the same process as b) appends in a transaction; the host (peer h)
// is woken by its listener, marks the request running, records and
// publishes the completion; the backend receives it. Around it: the
// dispatcher's ack and a read after its commit, the host's lease renewal,
// another session's commit, and a reaper query, none of which is on the
// path. Today's warm request appends with one conditioned commit and reads
// nothing after it (the counts bench prints its path); this older shape is
// kept because its transaction and its calls off the path are what
// requestCalls and criticalPath must get right.
func warmRequestCalls() []calls.Call {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	c := func(id int64, service, method string, start, end int, peer string, keys ...string) calls.Call {
		return calls.Call{ID: id, Service: service, Method: method, Start: at(start), End: at(end), Peer: peer, Keys: keys}
	}
	fs, ps := calls.Firestore, calls.PubSub
	out := []calls.Call{
		c(1, ps, "Publish", 0, 2, "b", "session_id=s1", "request_id=r1"),
		c(2, ps, "StreamingPull.Deliver", 3, 3, "d", "session_id=s1", "request_id=r1"),
		c(3, fs, "BeginTransaction", 4, 5, "d"),
		c(4, fs, "BatchGetDocuments", 5, 7, "d", "sessions/s1"),
		c(5, fs, "Commit", 8, 10, "d", "sessions/s1", "sessions/s1/inbox/r1"),
		c(6, fs, "Listen.Change", 11, 11, "h", "sessions/s1/inbox/r1"),
		c(7, ps, "Acknowledge", 11, 12, "d", "session_id=s1", "request_id=r1"),  // after the commit, not waited on
		c(8, fs, "BatchGetDocuments", 11, 13, "d", "sessions/s1/runtime/lease"), // the dispatcher's read after its commit
		c(9, fs, "Commit", 14, 16, "h", "sessions/s1/inbox/r1"),                 // mark running
		c(10, fs, "Commit", 14, 17, "x", "sessions/s2/inbox/q"),                 // another session's
		c(11, fs, "RunQuery", 16, 18, "d", "runtime"),                           // a reaper query: names no session
		c(12, fs, "Commit", 20, 22, "h", "sessions/s1/inbox/r1"),                // record the completion
		c(13, ps, "Publish", 23, 24, "h", "session_id=s1", "request_id=r1", "status=ok"),
		c(14, fs, "Commit", 23, 25, "h", "sessions/s1/runtime/lease"), // a renewal, concurrent with the publish
		c(15, ps, "StreamingPull.Deliver", 26, 26, "b", "session_id=s1", "request_id=r1", "status=ok"),
		c(16, fs, "Listen", 0, 30, "h", "sessions/s1/inbox"),
	}
	out[1].Messages, out[14].Messages, out[0].Messages, out[12].Messages = 1, 1, 1, 1
	out[1].Cause, out[14].Cause, out[5].Cause = 1, 13, 5
	out[2].Tx, out[3].Tx, out[4].Tx = "t1", "t1", "t1"
	out[3].Reads, out[4].Writes, out[5].Reads = 1, 2, 1
	return out
}

// program puts the backend and the dispatcher in one process, as the bench
// runs them.
func program(peer string) string {
	if peer == "b" || peer == "d" {
		return "sandrun"
	}
	return peer
}

func TestCriticalPathFollowsCausesAndEachProgramsLastCall(t *testing.T) {
	cs := requestCalls(warmRequestCalls(), "s1")
	chain, err := criticalPath(cs, 1, 15, program)
	if err != nil {
		t.Fatalf("critical path: %v (found %s)", err, pathLine(chain))
	}
	want := "pubsub Publish → pubsub StreamingPull.Deliver → firestore BeginTransaction → firestore BatchGetDocuments → firestore Commit → " +
		"firestore Listen.Change → firestore Commit → firestore Commit → pubsub Publish → pubsub StreamingPull.Deliver"
	if got := pathLine(chain); got != want {
		t.Errorf("path\n got %s\nwant %s", got, want)
	}
	rpcs, hops, by := serialRPCs(chain)
	if rpcs != 7 || hops != 2 || by[calls.Firestore] != 5 || by[calls.PubSub] != 2 {
		t.Errorf("serial RPCs %d, hops %d, by service %v; want 7, 2, firestore 5 and pubsub 2", rpcs, hops, by)
	}
}

func TestRequestCallsKeepTheSessionsAndUnnamedCalls(t *testing.T) {
	cs := requestCalls(warmRequestCalls(), "s1")
	for _, c := range cs {
		if c.ID == 10 {
			t.Errorf("another session's commit was taken as the request's")
		}
	}
	// 16 calls, less the other session's commit; the transaction's
	// BeginTransaction names nothing itself but belongs through its
	// transaction.
	if len(cs) != 15 {
		t.Errorf("got %d calls, want 15", len(cs))
	}
	other := requestCalls(warmRequestCalls(), "s2")
	for _, c := range other {
		if c.ID == 3 {
			t.Errorf("s1's BeginTransaction was taken as s2's: its transaction names s1")
		}
	}
}

func TestTallyCountsBillingUnitsAndMessages(t *testing.T) {
	got := tally(requestCalls(warmRequestCalls(), "s1"))
	if got.Reads != 2 || got.Writes != 2 || got.Deletes != 0 {
		t.Errorf("Firestore %d reads, %d writes, %d deletes; want 2, 2, 0", got.Reads, got.Writes, got.Deletes)
	}
	if got.Published != 2 || got.Delivered != 2 || got.Pushes != 3 || got.RPCs != 12 {
		t.Errorf("published %d, delivered %d, pushes %d, RPCs %d; want 2, 2, 3, 12", got.Published, got.Delivered, got.Pushes, got.RPCs)
	}
	if got.ByMethod["firestore Commit"] != 4 {
		t.Errorf("by method %v: want 4 firestore Commit", got.ByMethod)
	}
}

func TestCriticalPathReportsABrokenChain(t *testing.T) {
	cs := requestCalls(warmRequestCalls(), "s1")
	// Without its cause, the host's wake-up has nothing before it in the
	// host's program.
	for i := range cs {
		if cs[i].ID == 6 {
			cs[i].Cause = 0
		}
	}
	chain, err := criticalPath(cs, 1, 15, program)
	if err == nil || !strings.Contains(err.Error(), "Listen.Change") {
		t.Fatalf("got %v (path %s), want the chain to break before the listener's change", err, pathLine(chain))
	}
}

func TestKeySession(t *testing.T) {
	for key, want := range map[string]string{
		"sessions/s1/inbox/r1":             "s1",
		"sessions/s1":                      "s1",
		"sandrun-local/sessions/s1/out/r1": "s1",
		"bucket/blobs/s1/ab12":             "s1",
		"session_id=s1":                    "s1",
		"SANDRUN_SESSION_ID=s1":            "s1",
		"pool/m-1":                         "",
		"runtime":                          "",
		"request_id=r1":                    "",
		"projects/p/locations/r/jobs/j/executions/e": "",
	} {
		if got := keySession(key); got != want {
			t.Errorf("keySession(%q) = %q, want %q", key, got, want)
		}
	}
}
