// Package calls records the calls the local cloud serves: every RPC of
// Firestore, Pub/Sub and the Cloud Run Admin API, every Cloud Storage HTTP
// request, and the pushes the services make on open streams (a Pub/Sub
// delivery, a Firestore listener's document change), each with its service,
// method, start and end time, the resources it named and, for Firestore,
// what Google would bill for it. `sandrun bench` reads the record to count
// what a request costs and which calls lie on its critical path: it counts,
// it does not estimate.
//
// Counting per method is always on and cheap. Keeping each call (Log.Keep)
// is for the spans a measurement needs: a log kept for a whole bench run
// would grow without bound. Recording never changes what a service does or
// answers; it only reads requests and responses.
package calls

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// Services, as a Call names them.
const (
	Firestore = "firestore"
	PubSub    = "pubsub"
	Storage   = "storage"
	CloudRun  = "cloudrun"
)

// Call is one call served, or one push made on an open stream.
type Call struct {
	ID int64
	// Service is one of the constants above; Method the RPC's short name
	// (Commit, Publish), a push's name (StreamingPull.Deliver,
	// Listen.Change), an in-stream acknowledgement (StreamingPull.Ack,
	// StreamingPull.ModAck), or, for Cloud Storage, the HTTP method and what
	// it acts on (GET object, POST upload).
	Service, Method string
	// Start and End are when the server received the call and when it
	// answered; a push has End == Start, the moment it was sent.
	Start, End time.Time
	// Stream marks a streaming RPC (StreamingPull, Listen) recorded when it
	// ends: it is open for long and never on a request's path itself; its
	// pushes are.
	Stream bool
	// Keys are the resources the call named: Firestore document and
	// collection paths relative to the database (sessions/s1/inbox/r1),
	// Pub/Sub message attributes as key=value (session_id=s1), Cloud
	// Storage objects as bucket/object, Cloud Run jobs and executions.
	Keys []string
	// Tx is the Firestore transaction the call belongs to, if any, so that
	// a transaction's BeginTransaction, reads and Commit can be tied
	// together.
	Tx string
	// Firestore billing units: document reads, writes and deletes, by the
	// rules of firestore.Usage.
	Reads, Writes, Deletes int64
	// Messages published (Publish) or delivered (StreamingPull.Deliver).
	Messages int64
	// Cause is, for a push, the call whose effect it carries: the Publish
	// of a delivered message, the Commit that wrote the version of the
	// document a listener change carries. 0 when unknown.
	Cause int64
	// Peer is the caller's address (host:port of its connection); for a
	// push, the receiver's. A program's connections tell its calls apart
	// from another program's.
	Peer string
	// Failed reports that the call ended in an error.
	Failed bool
}

// Log records calls. The zero value counts per method and keeps nothing.
type Log struct {
	mu     sync.Mutex
	nextID int64
	counts map[string]int64 // service/method -> calls
	keep   bool
	kept   []Call
	// published maps a Pub/Sub message id to the Publish call that made
	// it, and acks an ack id to the delivered message's attributes, while
	// keeping.
	published map[string]int64
	acks      map[string][]string
	// lastWrite maps a Firestore document to the last Commit that wrote it.
	lastWrite map[string]commit
	// launched maps a Cloud Run execution to the RunJob that made it.
	launched map[string]int64
	// A push can be sent before the call that caused it returns and is
	// recorded (a listener hears of a commit, a subscriber of a message, as
	// the service applies it). Such a push waits here, as its index in kept,
	// for its cause: a listener change by its document's version, a
	// delivery by its message id.
	changeWaits   map[version][]int
	deliveryWaits map[string][]int
}

// version is one write of a Firestore document: its path and update time.
type version struct {
	doc string
	at  int64 // update time, Unix nanoseconds
}

// Keep starts keeping every call (and forgets what was kept before);
// Stop stops keeping and returns what was kept, in the order the calls
// ended.
func (l *Log) Keep() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keep, l.kept = true, nil
	l.published, l.acks, l.lastWrite, l.launched = map[string]int64{}, map[string][]string{}, map[string]commit{}, map[string]int64{}
	l.changeWaits, l.deliveryWaits = map[version][]int{}, map[string][]int{}
}

// Stop stops keeping calls and returns those kept since Keep.
func (l *Log) Stop() []Call {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.kept
	l.keep, l.kept, l.published, l.acks, l.lastWrite, l.launched = false, nil, nil, nil, nil, nil
	l.changeWaits, l.deliveryWaits = nil, nil
	return out
}

// Kept returns a copy of the calls kept so far, without stopping.
func (l *Log) Kept() []Call {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.kept)
}

// Counts returns the number of calls served so far by "service/method".
func (l *Log) Counts() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.counts)
}

// Record adds a call and returns its id (0 when not keeping).
func (l *Log) Record(c Call) int64 { return l.record(c, nil) }

// commit is a Commit call as a listener change's cause.
type commit struct {
	id  int64
	at  int64 // the version it wrote, Unix nanoseconds
	end time.Time
}

// RecordCommit adds a Firestore commit that wrote each of writes (a
// document's path and the update time the commit gave it), so that
// listener changes of those versions name it as their cause.
func (l *Log) RecordCommit(c Call, writes map[string]time.Time) int64 {
	return l.record(c, func(l *Log, c *Call) {
		for doc, at := range writes {
			v := version{doc, at.UnixNano()}
			l.lastWrite[doc] = commit{c.ID, v.at, c.End}
			for _, i := range l.changeWaits[v] {
				l.kept[i].Cause = c.ID
			}
			delete(l.changeWaits, v)
		}
	})
}

// RecordChange adds a listener's change of doc to the version updated at,
// caused by the Commit that wrote that version, unless the commit ended
// before the listener's target was added (since): a change in a listener's
// first snapshot is caused by the listener's opening, not by the write
// that made the document. A change of a version whose commit is not
// recorded yet gets its cause when it is.
func (l *Log) RecordChange(c Call, doc string, at, since time.Time) int64 {
	return l.record(c, func(l *Log, c *Call) {
		v := version{doc, at.UnixNano()}
		if w, ok := l.lastWrite[doc]; ok && w.at == v.at {
			if w.end.After(since) {
				c.Cause = w.id
			}
			return
		}
		l.changeWaits[v] = append(l.changeWaits[v], len(l.kept))
	})
}

// RecordPublish adds a Publish that made the messages ids.
func (l *Log) RecordPublish(c Call, ids []string) int64 {
	return l.record(c, func(l *Log, c *Call) {
		for _, id := range ids {
			l.published[id] = c.ID
			for _, i := range l.deliveryWaits[id] {
				l.kept[i].Cause = c.ID
			}
			delete(l.deliveryWaits, id)
		}
	})
}

// RecordDelivery adds the delivery of message id under ackID, caused by its
// Publish; acknowledgements of ackID then name the message's keys.
func (l *Log) RecordDelivery(c Call, id, ackID string) int64 {
	return l.record(c, func(l *Log, c *Call) {
		if p, ok := l.published[id]; ok {
			c.Cause = p
		} else {
			l.deliveryWaits[id] = append(l.deliveryWaits[id], len(l.kept))
		}
		l.acks[ackID] = c.Keys
	})
}

// RecordRunJob adds a RunJob that made execution (its full name).
func (l *Log) RecordRunJob(c Call, execution string) int64 {
	return l.record(c, func(l *Log, c *Call) {
		if execution != "" {
			l.launched[execution] = c.ID
		}
	})
}

// TaskStarted records, as a push, that a task of execution (its full name)
// started, caused by the RunJob that made the execution: a new host's first
// call follows it.
func (l *Log) TaskStarted(execution string) {
	now := time.Now()
	l.record(Call{Service: CloudRun, Method: "Task.Start", Start: now, End: now, Keys: []string{execution}},
		func(l *Log, c *Call) { c.Cause = l.launched[execution] })
}

// RecordAck adds an acknowledgement or deadline change of ackIDs, with the
// keys of the messages they name.
func (l *Log) RecordAck(c Call, ackIDs []string) int64 {
	return l.record(c, func(l *Log, c *Call) {
		for _, a := range ackIDs {
			c.Keys = append(c.Keys, l.acks[a]...)
		}
		slices.Sort(c.Keys)
		c.Keys = slices.Compact(c.Keys)
	})
}

// record adds c and returns its id. link, when not nil, runs under the
// lock with the log's maps (only while keeping), before c is appended to
// kept (at index len(l.kept)), so that a call can name its cause or leave
// what later calls need to name theirs.
func (l *Log) record(c Call, link func(l *Log, c *Call)) int64 {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts == nil {
		l.counts = map[string]int64{}
	}
	l.counts[c.Service+"/"+c.Method]++
	if !l.keep {
		return 0
	}
	l.nextID++
	c.ID = l.nextID
	if link != nil {
		link(l, &c)
	}
	l.kept = append(l.kept, c)
	return c.ID
}
