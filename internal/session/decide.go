package session

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/sandrun/sandrun/api"
)

// The decisions of the session store, apart from its persistence: each
// takes what a transaction read and the time, and says what to write and
// what to answer. The Firestore store (Store) and the in-memory one
// (package memstore) both decide with them, so that they cannot differ in
// policy; only reading and writing is theirs.

// Rules are the settings the decisions depend on.
type Rules struct {
	// TTL is how long a session lives without activity.
	TTL time.Duration
	// LaunchTimeout is how long a claimed launch may take to produce a
	// host before another launch may be claimed.
	LaunchTimeout time.Duration
}

// Rules returns the rules cfg sets, with the defaults for zero fields.
func (cfg Config) Rules() Rules {
	r := Rules{TTL: cfg.TTL, LaunchTimeout: cfg.LaunchTimeout}
	if r.TTL <= 0 {
		r.TTL = DefaultTTL
	}
	if r.LaunchTimeout <= 0 {
		r.LaunchTimeout = DefaultLaunchTimeout
	}
	return r
}

// Live reports whether the lease names a host whose lease has not lapsed.
func (l *LeaseDoc) Live(now time.Time) bool {
	return l != nil && l.Execution != "" && l.LeaseExpires.After(now)
}

// Held reports whether the lease names a host, live or lapsed: until the
// reaper recovers a lapsed one, no other host may take the session.
func (l *LeaseDoc) Held() bool { return l != nil && l.Execution != "" }

// LaunchInFlight reports whether d has a launch claimed recently enough
// that its host may still come, and that no host has answered yet.
func (r Rules) LaunchInFlight(d *Doc, lease *LeaseDoc, now time.Time) bool {
	if d == nil || d.Launch == nil || now.Sub(d.Launch.RequestedAt) >= r.LaunchTimeout {
		return false
	}
	return lease == nil || lease.LaunchID != d.Launch.ID
}

// launchStarting reports whether a launch of the session is under way and
// not waiting (WaitingFor): its host is starting, and a destroy waits for
// it in the inbox, in order, as it does for a live host.
func (r Rules) launchStarting(d *Doc, lease *LeaseDoc, now time.Time) bool {
	return r.LaunchInFlight(d, lease, now) && d.Launch.WaitingFor == ""
}

// Shown is what describes a session in an answer besides its document and
// lease, read outside any transaction (it needs no lock): the working
// directory its last command left and how many requests are queued.
type Shown struct {
	Cwd    string
	Queued int
}

// ShowsSession reports whether the answer to op may describe the session,
// so that Enqueue needs Shown for it.
func ShowsSession(op api.Op) bool {
	return op == api.OpSessionGet || op == api.OpSessionCreate || op == api.OpSessionDestroy
}

// EnqueueInput is what Enqueue's decision is made on.
type EnqueueInput struct {
	Req         *api.Request
	Raw         []byte
	Traceparent string
	// Doc and Lease are the session's documents, nil when missing.
	Doc   *Doc
	Lease *LeaseDoc
	// Shown is read when ShowsSession(Req.Op).
	Shown Shown
	Now   time.Time
}

// EnqueueDecision is what to do with a request that is not a duplicate.
type EnqueueDecision struct {
	// PurgeFirst: the session was destroyed and its objects may remain;
	// purge them, then decide again. Nothing else is set.
	PurgeFirst bool
	// Item is the inbox item to create: queued, or done with Answer.
	Item Item
	// Doc is the session document to write, nil when it stays as it is.
	Doc *Doc
	// Answer is set when the request is answered without a host.
	Answer *api.Completion
	// Launch is the host launch claimed (recorded in Doc).
	Launch *Launch
	// Destroy: end the session's life now (Destroyed), answering its
	// unfinished requests Aborted; the caller purges its objects.
	Destroy bool
}

// Enqueue decides what a request does to its session: which ops are
// answered here (session.get; session.destroy of a session that no host
// runs or is starting for; session.create; any op of a session being
// revived only after its purge) and which are queued, with the session's
// next sequence number, and whether a host launch is claimed.
func (r Rules) Enqueue(in EnqueueInput) (EnqueueDecision, error) {
	req, doc, lease, now := in.Req, in.Doc, in.Lease, in.Now
	var dec EnqueueDecision
	dec.Item = Item{
		RequestID: req.RequestID, SessionID: req.SessionID, Op: string(req.Op),
		Request: in.Raw, RequestBytes: len(in.Raw), Traceparent: in.Traceparent, AcceptedAt: now, ExpireAt: now.Add(r.TTL),
	}
	exists := doc != nil && doc.Status == StatusActive
	answer := func(c *api.Completion) (EnqueueDecision, error) {
		if err := AnswerItem(&dec.Item, c); err != nil {
			return EnqueueDecision{}, err
		}
		dec.Answer = c
		return dec, nil
	}
	ok := func(d *Doc) *api.Completion {
		c := &api.Completion{RequestID: req.RequestID, SessionID: req.SessionID, Op: req.Op, Status: api.StatusOK}
		c.Session = r.describe(req.SessionID, d, lease, in.Shown, now)
		return c
	}
	notFound := func() *api.Completion {
		return api.ErrorCompletion(req.RequestID, req.SessionID, req.Op, api.CodeNotFound, fmt.Sprintf("session %s does not exist", req.SessionID))
	}

	if req.Op == api.OpSessionGet {
		// Reading a session neither creates nor wakes it.
		if !exists {
			return answer(notFound())
		}
		return answer(ok(doc))
	}
	if doc != nil && doc.Status == StatusDestroyed && doc.PurgePending {
		return EnqueueDecision{PurgeFirst: true}, nil
	}
	if req.Op == api.OpSessionDestroy {
		if !exists {
			return answer(notFound())
		}
		if !lease.Live(now) && !r.launchStarting(doc, lease, now) {
			// No host runs it and none is starting: destroy it here, no
			// host needed. What waits for a host (its requests, a launch
			// refused or in line behind the most hosts) ends now: the
			// requests are answered ABORTED, and a host that starts for it
			// later finds it destroyed and exits.
			c := ok(doc)
			c.Session.Status = StatusDestroyed
			dec.Destroy = true
			return answer(c)
		}
		// Otherwise it waits its turn in the inbox, and the host ends the
		// session.
	}

	if !exists {
		doc = revive(doc, now)
	} else {
		cp := *doc
		doc = &cp
	}
	doc.UpdatedAt, doc.ExpireAt = now, now.Add(r.TTL)
	// A lapsed host that the reaper has not recovered yet may still be
	// running a command: the reaper launches the next host after it.
	needHost := !lease.Held() && !r.LaunchInFlight(doc, lease, now)
	dec.Doc = doc

	if req.Op == api.OpSessionCreate {
		// Creating a session warms it: a host is launched now so that the
		// first command does not wait for one.
		if needHost {
			dec.Launch = doc.claimLaunch(now)
		}
		return answer(ok(doc))
	}

	dec.Item.Seq, dec.Item.Status = doc.NextSeq, ItemQueued
	doc.NextSeq++
	if needHost {
		dec.Launch = doc.claimLaunch(now)
	}
	return dec, nil
}

// describe is the session as an answer shows it.
func (r Rules) describe(id string, d *Doc, lease *LeaseDoc, shown Shown, now time.Time) *api.SessionInfo {
	si := &api.SessionInfo{SessionID: id, Status: d.Status, CreatedAt: d.CreatedAt, LastActiveAt: d.UpdatedAt,
		Cwd: strings.ToValidUTF8(shown.Cwd, "\uFFFD"), Queued: shown.Queued}
	if lease.Live(now) {
		si.Host = lease.Execution
	}
	return si
}

// AnswerItem records, in item, completion c as the item's answer, given
// when it was accepted; the item is then done and unpublished.
func AnswerItem(item *Item, c *api.Completion) error {
	c.Timing.AcceptedAt, c.Timing.StartedAt, c.Timing.FinishedAt = item.AcceptedAt, item.AcceptedAt, item.AcceptedAt
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode completion: %w", err)
	}
	item.Status, item.Completion, item.FinishedAt = ItemDone, string(b), item.AcceptedAt
	return nil
}

// Reject is the inbox item that records the rejection c of a request of
// raw bytes: of one over api.MaxRequestBytes, only its size is kept.
func (r Rules) Reject(c *api.Completion, raw []byte, now time.Time) (Item, error) {
	item := Item{RequestID: c.RequestID, SessionID: c.SessionID, Op: string(c.Op), RequestBytes: len(raw), AcceptedAt: now, ExpireAt: now.Add(r.TTL)}
	if len(raw) <= api.MaxRequestBytes {
		item.Request = raw
	}
	err := AnswerItem(&item, c)
	return item, err
}

// revive starts a new life for a session that never existed or was
// destroyed. Its sequence continues, so ordering holds across lives.
func revive(old *Doc, now time.Time) *Doc {
	d := &Doc{Status: StatusActive, CreatedAt: now}
	if old != nil {
		d.NextSeq = old.NextSeq
	}
	return d
}

// claimLaunch records that a launch is under way and returns it.
func (d *Doc) claimLaunch(now time.Time) *Launch {
	if d.LaunchAttempts == 0 {
		d.AttemptsSince = now
	}
	d.LaunchAttempts++
	d.Launch = &Launch{ID: uuid.NewString(), RequestedAt: now, Attempts: d.LaunchAttempts}
	return d.Launch
}

// Destroyed is what ending a session's life writes: its document says so,
// and the lease and the fence raise the epoch with no host, so that a host
// still running can write nothing. The hosts' state is dropped with it.
func (r Rules) Destroyed(d Doc, lease *LeaseDoc, now time.Time) (Doc, LeaseDoc, FenceDoc) {
	d.Status, d.UpdatedAt, d.ExpireAt = StatusDestroyed, now, now.Add(r.TTL)
	d.Launch, d.LaunchAttempts, d.PurgePending = nil, 0, true
	next := LeaseDoc{ExpireAt: now.Add(r.TTL)}
	if lease != nil {
		// What no host found published stays for the reaper.
		next.Epoch, next.Publishing, next.PublishDue = lease.Epoch, lease.Publishing, lease.PublishDue
	}
	next.Epoch++
	return d, next, r.fence(next.Epoch, "", now)
}

// fence is the fence document for epoch and host.
func (r Rules) fence(epoch int64, host string, now time.Time) FenceDoc {
	return FenceDoc{Epoch: epoch, Host: host, ExpireAt: now.Add(r.TTL)}
}

// Aborted is the answer to an unfinished request of a session destroyed
// (why) before it finished.
func Aborted(it *Item, sessionID, why string) *api.Completion {
	return api.ErrorCompletion(it.RequestID, sessionID, api.Op(it.Op), api.CodeAborted,
		fmt.Sprintf("session %s was destroyed (%s) before this request finished", sessionID, why))
}

// DestroyedBy is the reason Aborted gives for a session.destroy request.
func DestroyedBy(requestID string) string { return "session.destroy " + requestID }

// Acquire decides whether execution may take the session's lease for ttl:
// it returns the lease document and the fence to write and the caller's
// lease, or ErrNotFound, ErrDestroyed or ErrLeaseHeld.
func (r Rules) Acquire(sessionID, execution string, ttl time.Duration, doc *Doc, ld *LeaseDoc, st *StateDoc, now time.Time) (LeaseDoc, FenceDoc, *Lease, error) {
	switch {
	case doc == nil:
		return LeaseDoc{}, FenceDoc{}, nil, ErrNotFound
	case doc.Status == StatusDestroyed:
		return LeaseDoc{}, FenceDoc{}, nil, ErrDestroyed
	case ld.Held() && ld.Execution != execution:
		return LeaseDoc{}, FenceDoc{}, nil, ErrLeaseHeld
	}
	next := LeaseDoc{Execution: execution, LeaseExpires: now.Add(ttl), StartedAt: now, ExpireAt: now.Add(r.TTL)}
	if ld != nil {
		next.Epoch = ld.Epoch
		// The marks of earlier hosts stay until their requests are
		// answered (FailOrphans): dropped, a request would look queued.
		next.Running = maps.Clone(ld.Running)
		next.Publishing, next.PublishDue = maps.Clone(ld.Publishing), ld.PublishDue
	}
	next.Epoch++
	lease := &Lease{SessionID: sessionID, Execution: execution, Epoch: next.Epoch, TTL: ttl, expires: next.LeaseExpires, Acquired: now,
		Unreleased: ld != nil && (ld.Execution != "" || ld.Abandoned),
		orphans:    maps.Clone(next.Running), running: maps.Clone(next.Running), publishing: maps.Clone(next.Publishing)}
	if doc.Launch != nil {
		next.LaunchID = doc.Launch.ID
		lease.LaunchRequestedAt = doc.Launch.RequestedAt
	}
	if st != nil {
		lease.Checkpoint, lease.Shell = st.Checkpoint, st.Shell
	}
	return next, r.fence(next.Epoch, execution, now), lease, nil
}

// Fenced reports whether the fence still gives the session to lease.
func Fenced(fd *FenceDoc, lease *Lease) bool {
	return fd != nil && fd.Epoch == lease.Epoch && fd.Host == lease.Execution
}

// StartItem marks a queued item running under lease; it returns false, and
// changes nothing, when the item is missing or no longer queued.
func StartItem(it *Item, lease *Lease, now time.Time) bool {
	if it == nil || it.Status != ItemQueued {
		return false
	}
	it.Status, it.StartedAt, it.Epoch, it.Execution = ItemRunning, now, lease.Epoch, lease.Execution
	return true
}

// Mark is the mark of LeaseDoc.Running that a Start of it under lease at
// now records.
func Mark(it *Item, lease *Lease, now time.Time) RunningItem {
	return RunningItem{Seq: it.Seq, Epoch: lease.Epoch, Execution: lease.Execution, StartedAt: now}
}

// ApplyMark shows, in a queued item, the mark that running holds of it, if
// any: the item is then running, as started by the mark's host. It reports
// whether there was one.
func ApplyMark(it *Item, running map[string]RunningItem) bool {
	m, ok := running[it.RequestID]
	if !ok || it.Status != ItemQueued {
		return false
	}
	it.Status, it.StartedAt, it.Epoch, it.Execution = ItemRunning, m.StartedAt, m.Epoch, m.Execution
	return true
}

// publishing is the lease document's Publishing; nil for no document.
func (l *LeaseDoc) publishing() map[string]time.Time {
	if l == nil {
		return nil
	}
	return l.Publishing
}

// PublishDue is the earliest time of publishing (LeaseDoc.PublishDue),
// zero when it is empty.
func PublishDue(publishing map[string]time.Time) time.Time {
	var due time.Time
	for _, t := range publishing {
		if due.IsZero() || t.Before(due) {
			due = t
		}
	}
	return due
}

func hasMark(running map[string]RunningItem, requestID string) bool {
	_, ok := running[requestID]
	return ok
}

// FinishItem records completion b in a running (or queued) item; an item
// already done keeps the completion it has, which is returned, and
// recorded is false.
func FinishItem(it *Item, b []byte, now time.Time) (completion []byte, recorded bool) {
	if it.Status == ItemDone {
		return []byte(it.Completion), false
	}
	it.Status, it.Completion, it.FinishedAt = ItemDone, string(b), now
	return b, true
}

// Recover decides what taking the session from a lapsed host writes: the
// lease with a raised epoch, no host and marked abandoned, and the fence
// with it; ok=false when the lease names no host or a live one.
func (r Rules) Recover(ld *LeaseDoc, now time.Time) (next LeaseDoc, fence FenceDoc, ok bool) {
	if ld == nil || ld.Execution == "" || ld.Live(now) {
		return LeaseDoc{}, FenceDoc{}, false
	}
	epoch := ld.Epoch + 1
	// LaunchID stays: the launch it names was answered, and is not in
	// flight any more.
	// What the lost host did not find published stays for the reaper.
	return LeaseDoc{Epoch: epoch, LaunchID: ld.LaunchID, Abandoned: true, Publishing: ld.Publishing, PublishDue: ld.PublishDue, ExpireAt: now.Add(r.TTL)},
		r.fence(epoch, "", now), true
}

// HostLost is the answer to an item that a host of an epoch before epoch
// left running, or nil when the item is not one.
func HostLost(it *Item, epoch int64) *api.Completion {
	if it.Status != ItemRunning || it.Epoch >= epoch {
		return nil
	}
	c := api.ErrorCompletion(it.RequestID, it.SessionID, api.Op(it.Op), api.CodeHostLost,
		fmt.Sprintf("the host running this request (%s) stopped before it finished; the request was not re-run", it.Execution))
	c.ExecutionID = it.Execution
	return c
}

// Settle records answer c of an unfinished item at now, with the item's
// timing, and returns the completion to publish.
func Settle(it *Item, c *api.Completion, now time.Time) (Unpublished, error) {
	c.Timing = api.Timing{AcceptedAt: it.AcceptedAt, StartedAt: it.StartedAt, FinishedAt: now,
		TotalSeconds: now.Sub(it.AcceptedAt).Seconds()}
	if !it.StartedAt.IsZero() {
		c.Timing.QueueSeconds = it.StartedAt.Sub(it.AcceptedAt).Seconds()
		c.Timing.RunSeconds = now.Sub(it.StartedAt).Seconds()
	}
	b, err := json.Marshal(c)
	if err != nil {
		return Unpublished{}, fmt.Errorf("encode completion of request %s: %w", it.RequestID, err)
	}
	it.Status, it.Completion, it.FinishedAt = ItemDone, string(b), now
	return Unpublished{SessionID: it.SessionID, RequestID: it.RequestID, Completion: b}, nil
}

// MayRelaunch reports whether a launch may be claimed for the session
// apart from its queue: it is active, no host holds its lease (a lapsed
// host is the reaper's to recover first) and no launch is in flight.
func (r Rules) MayRelaunch(doc *Doc, ld *LeaseDoc, now time.Time) bool {
	return doc != nil && doc.Status == StatusActive && !ld.Held() && !r.LaunchInFlight(doc, ld, now)
}

// Relaunch decides, for a session that MayRelaunch with queued requests,
// between claiming a launch (returned, recorded in doc) and giving up
// (nil, and doc has no launch left, after attempts launches): it gives up
// after maxAttempts launches with no request finished since they began to
// be counted (progressed false).
func Relaunch(doc *Doc, progressed bool, maxAttempts int, now time.Time) (launch *Launch, attempts int) {
	if progressed {
		doc.LaunchAttempts = 0
	}
	if doc.LaunchAttempts < maxAttempts {
		return doc.claimLaunch(now), 0
	}
	attempts = doc.LaunchAttempts
	doc.Launch, doc.LaunchAttempts = nil, 0
	return nil, attempts
}

// GaveUp is the answer to a queued request of a session that no host
// could be started for after attempts launches.
func GaveUp(it *Item, sessionID string, attempts int) *api.Completion {
	return api.ErrorCompletion(it.RequestID, sessionID, api.Op(it.Op), api.CodeLaunchFailed,
		fmt.Sprintf("no host could be started for session %s after %d attempts", sessionID, attempts))
}
