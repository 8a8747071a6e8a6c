package bench

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/sandrun/sandrun/emulator/calls"
	"github.com/sandrun/sandrun/internal/jobrunner"
)

// What a request costs is read from the local cloud's record of every call
// it served (emulator/calls), one request at a time: the bench sends one
// request, waits until it is answered and the system settles, and takes the
// calls recorded meanwhile. A request's calls are those that name its
// session or no session at all (a Firestore transaction names what any of
// its calls names); calls naming another session belong to that one.
//
// Its critical path is defined as the chain of calls, each of which ended
// before the next one started, that leads from the backend's Publish of the
// request to the delivery of its completion to the backend. It is found
// backwards from the delivery:
//   - a push (a Pub/Sub delivery, a Firestore listener's change) follows
//     the call that caused it (the message's Publish, the last Commit that
//     wrote the document);
//   - any other call follows the last call of the same program that ended
//     before it started, a push to that program included: a program waits
//     for one call before the next on the path, and a call of another
//     program can only reach it through a push;
//   - acknowledgements and deadline changes of Pub/Sub messages are never
//     on it: the Go client sends them in the background, nothing waits on
//     them; nor are open streams (StreamingPull, Listen) themselves, only
//     their pushes.
// Programs are told apart by their connections: the bench's own process
// (the dispatcher, the reaper and the backend's client) and the hosts (whose
// connections cannot be read: hosts are not dumpable). Goroutines of one
// program are not told apart, so a call made beside the path by the same
// program can be taken for a step of it. The serial round trips are the
// chain's calls that are RPCs (its pushes are the hops between programs).

// keySession returns the session a call's key names, or "".
func keySession(key string) string {
	if v, ok := strings.CutPrefix(key, "session_id="); ok {
		return v
	}
	if v, ok := strings.CutPrefix(key, jobrunner.EnvSessionID+"="); ok {
		return v
	}
	segs := strings.Split(key, "/")
	for i := 0; i+1 < len(segs); i++ {
		if segs[i] == "sessions" || segs[i] == "blobs" {
			return segs[i+1]
		}
	}
	return ""
}

// requestCalls returns the calls of cs that belong to session: those that
// name it or no session, a transaction's calls counting what the whole
// transaction names.
func requestCalls(cs []calls.Call, session string) []calls.Call {
	txSessions := map[string]map[string]bool{}
	named := func(c calls.Call) map[string]bool {
		m := map[string]bool{}
		for _, k := range c.Keys {
			if s := keySession(k); s != "" {
				m[s] = true
			}
		}
		return m
	}
	for _, c := range cs {
		if c.Tx == "" {
			continue
		}
		if txSessions[c.Tx] == nil {
			txSessions[c.Tx] = map[string]bool{}
		}
		for s := range named(c) {
			txSessions[c.Tx][s] = true
		}
	}
	var out []calls.Call
	for _, c := range cs {
		n := named(c)
		for s := range txSessions[c.Tx] {
			n[s] = true
		}
		if len(n) == 0 || n[session] {
			out = append(out, c)
		}
	}
	return out
}

// offPath reports the calls that are never on a critical path.
func offPath(c calls.Call) bool {
	switch c.Method {
	case "Acknowledge", "ModifyAckDeadline", "StreamingPull.Ack", "StreamingPull.ModAck":
		return true
	}
	return c.Stream
}

// isPush reports whether c is a push on an open stream.
func isPush(c calls.Call) bool {
	return c.Method == "StreamingPull.Deliver" || c.Method == "Listen.Change"
}

// criticalPath returns the chain of calls from the call from to the call
// to, in order, as defined above; program names the program of a call's
// peer. It fails, with the part it found, when the chain breaks.
func criticalPath(cs []calls.Call, from, to int64, program func(peer string) string) ([]calls.Call, error) {
	byID := map[int64]calls.Call{}
	for _, c := range cs {
		byID[c.ID] = c
	}
	first, ok := byID[from]
	if !ok {
		return nil, fmt.Errorf("call %d not recorded", from)
	}
	cur, ok := byID[to]
	if !ok {
		return nil, fmt.Errorf("call %d not recorded", to)
	}
	chain := []calls.Call{cur}
	in := map[int64]bool{cur.ID: true}
	for cur.ID != from {
		var next calls.Call
		found := false
		if cur.Cause != 0 {
			next, found = byID[cur.Cause]
		} else {
			prog := program(cur.Peer)
			for _, c := range cs {
				if in[c.ID] || offPath(c) || c.End.After(cur.Start) || c.Start.Before(first.Start) || program(c.Peer) != prog {
					continue
				}
				if !found || c.End.After(next.End) || c.End.Equal(next.End) && (c.Start.After(next.Start) || c.Start.Equal(next.Start) && c.ID > next.ID) {
					next, found = c, true
				}
			}
		}
		if !found || in[next.ID] {
			slices.Reverse(chain)
			return chain, fmt.Errorf("the chain breaks before %s %s", cur.Service, cur.Method)
		}
		chain = append(chain, next)
		in[next.ID] = true
		cur = next
	}
	slices.Reverse(chain)
	return chain, nil
}

// pathLine prints a chain as "service Method → ...".
func pathLine(chain []calls.Call) string {
	parts := make([]string, len(chain))
	for i, c := range chain {
		parts[i] = c.Service + " " + c.Method
	}
	return strings.Join(parts, " → ")
}

// Tally counts calls.
type Tally struct {
	// RPCs are the calls answered (streams counted once, when they end);
	// Pushes the deliveries and listener changes sent on open streams.
	RPCs   int `json:"rpcs"`
	Pushes int `json:"pushes"`
	// Firestore billing units.
	Reads   int64 `json:"firestore_reads"`
	Writes  int64 `json:"firestore_writes"`
	Deletes int64 `json:"firestore_deletes"`
	// StorageOps are the Cloud Storage requests.
	StorageOps int `json:"storage_ops"`
	// Published and Delivered are Pub/Sub messages.
	Published int64 `json:"pubsub_published"`
	Delivered int64 `json:"pubsub_delivered"`
	// ByMethod counts RPCs and pushes by "service Method".
	ByMethod map[string]int `json:"by_method"`
}

func tally(cs []calls.Call) Tally {
	t := Tally{ByMethod: map[string]int{}}
	for _, c := range cs {
		t.ByMethod[c.Service+" "+c.Method]++
		if isPush(c) {
			t.Pushes++
		} else {
			t.RPCs++
		}
		t.Reads += c.Reads
		t.Writes += c.Writes
		t.Deletes += c.Deletes
		if c.Service == calls.Storage {
			t.StorageOps++
		}
		if c.Method == "Publish" {
			t.Published += c.Messages
		}
		if c.Method == "StreamingPull.Deliver" {
			t.Delivered += c.Messages
		}
	}
	return t
}

// serialRPCs counts the RPCs of a chain (its pushes are hops, not round
// trips of their own).
func serialRPCs(chain []calls.Call) (rpcs, hops int, byService map[string]int) {
	byService = map[string]int{}
	for _, c := range chain {
		if c.Method == "StreamingPull.Deliver" {
			hops++
		}
		if isPush(c) {
			continue
		}
		rpcs++
		byService[c.Service]++
	}
	return rpcs, hops, byService
}

// methodsLine prints a by-method count, largest first.
func methodsLine(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
