// Package memstore is an in-memory session store: the state that package
// session keeps in Firestore and Cloud Storage, held in maps under one
// mutex, for unit tests of the store's consumers (the dispatcher, the host,
// the reaper, the launcher) that need no cloud.
//
// It decides with the same functions as the Firestore store (session.Rules
// and the others of session's decide.go), and honours the same invariants:
// a host writes only while the fence names its lease's epoch, a completion
// is recorded once, requests are queued in sequence order and a request id
// is accepted once. Each operation is one critical section, as each of the
// Firestore store's is one transaction or one conditioned commit; inbox
// items carry versions, as Firestore documents carry update times. The
// contract suite (package storetest) runs the same assertions against both.
//
// It keeps nothing on disk and takes its time from session.Config.Now (see
// Clock).
package memstore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/session"
)

// Clock is a clock tests move by hand. It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock that reads t until moved.
func NewClock(t time.Time) *Clock { return &Clock{now: t.UTC()} }

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Store is an in-memory session store. It is safe for concurrent use.
type Store struct {
	rules  session.Rules
	bucket string
	now    func() time.Time

	mu       sync.Mutex
	sessions map[string]*state
	objects  map[string]*object
	gen      int64
	// members is the warm pool, by member id; memberWatchers are told
	// each change of a member.
	members        map[string]*session.MemberDoc
	memberWatchers map[string]map[chan *session.MemberDoc]bool
	// writes counts the writes of inbox items: each write's count is the
	// item's Version, as a Firestore document's update time is.
	writes int64
}

// state is one session: what Firestore keeps under sessions/{id}.
type state struct {
	doc       *session.Doc
	lease     *session.LeaseDoc
	fence     *session.FenceDoc
	runtime   *session.StateDoc
	inbox     map[string]*session.Item
	processes map[string]*session.ProcessDoc
	// watchers are signalled whenever the queued items change.
	watchers map[chan struct{}]bool
}

// object is a Cloud Storage object.
type object struct {
	data        []byte
	generation  int64
	created     time.Time
	contentType string
}

// New returns an empty store with cfg's bucket, TTL, launch timeout and
// clock.
func New(cfg session.Config) *Store {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Store{rules: cfg.Rules(), bucket: cfg.Bucket, now: func() time.Time { return now().UTC() },
		sessions: map[string]*state{}, objects: map[string]*object{},
		members: map[string]*session.MemberDoc{}, memberWatchers: map[string]map[chan *session.MemberDoc]bool{}}
}

// session returns the session's state, creating an empty one.
func (s *Store) session(id string) *state {
	st := s.sessions[id]
	if st == nil {
		st = &state{inbox: map[string]*session.Item{}, processes: map[string]*session.ProcessDoc{}, watchers: map[chan struct{}]bool{}}
		s.sessions[id] = st
	}
	return st
}

// queued returns the session's queued items in sequence order.
func (st *state) queued() []*session.Item {
	var out []*session.Item
	for _, it := range st.inbox {
		if it.Status == session.ItemQueued {
			out = append(out, it)
		}
	}
	slices.SortFunc(out, func(a, b *session.Item) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

// items returns the session's items whose status is one of statuses, in
// sequence order.
func (st *state) items(statuses ...string) []*session.Item {
	var out []*session.Item
	for _, it := range st.inbox {
		if slices.Contains(statuses, it.Status) {
			out = append(out, it)
		}
	}
	slices.SortFunc(out, func(a, b *session.Item) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

// marks returns the lease document's marks of running requests (nil when
// there is none).
func (st *state) marks() map[string]session.RunningItem {
	if st.lease == nil {
		return nil
	}
	return st.lease.Running
}

// setMarks replaces the lease document's marks (copied on write: the lease
// documents given out share the old map).
func (st *state) setMarks(running map[string]session.RunningItem) {
	ld := *st.lease
	ld.Running = running
	st.lease = &ld
}

// publishing returns the lease document's Publishing (nil when there is
// none).
func (st *state) publishing() map[string]time.Time {
	if st.lease == nil {
		return nil
	}
	return st.lease.Publishing
}

// setPublishing replaces the lease document's Publishing and PublishDue
// (copied on write, as setMarks).
func (st *state) setPublishing(publishing map[string]time.Time) {
	ld := *st.lease
	if len(publishing) == 0 {
		publishing = nil
	}
	ld.Publishing, ld.PublishDue = publishing, session.PublishDue(publishing)
	st.lease = &ld
}

// dropPublishing drops requestIDs from the lease document's Publishing,
// writing it only when it lists one of them.
func (st *state) dropPublishing(requestIDs ...string) {
	publishing := maps.Clone(st.publishing())
	for _, id := range requestIDs {
		delete(publishing, id)
	}
	if len(publishing) != len(st.publishing()) {
		st.setPublishing(publishing)
	}
}

// orphaned returns the session's requests that hosts of epochs before
// epoch left running: those the lease document marks, shown running
// (session.ApplyMark; the caller answers them), and those whose items say
// running.
func (st *state) orphaned(epoch int64) []*session.Item {
	old := maps.Clone(st.marks())
	maps.DeleteFunc(old, func(_ string, m session.RunningItem) bool { return m.Epoch >= epoch })
	out := st.items(session.ItemRunning)
	for _, it := range st.items(session.ItemQueued) {
		if session.ApplyMark(it, old) {
			out = append(out, it)
		}
	}
	return out
}

// changed tells the session's watchers that its queue may have changed.
func (st *state) changed() {
	for ch := range st.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// settle answers each item with what answer gives it (nil skips it) and
// returns the completions to publish.
func (s *Store) settle(items []*session.Item, now time.Time, answer func(*session.Item) *api.Completion) ([]session.Unpublished, error) {
	var out []session.Unpublished
	for _, it := range items {
		c := answer(it)
		if c == nil {
			continue
		}
		next := *it
		u, err := session.Settle(&next, c, now)
		if err != nil {
			return nil, err
		}
		next.Version = s.stamp()
		*it = next
		out = append(out, u)
	}
	return out, nil
}

// stamp returns the Version of an inbox item written now.
func (s *Store) stamp() time.Time {
	s.writes++
	return time.Unix(0, s.writes).UTC()
}

func clone[T any](v *T) *T {
	if v == nil {
		return nil
	}
	c := *v
	return &c
}

// Session returns the session document.
func (s *Store) Session(ctx context.Context, id string) (*session.Doc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.sessions[id]
	if st == nil || st.doc == nil {
		return nil, fmt.Errorf("sessions/%s: %w", id, session.ErrNotFound)
	}
	return clone(st.doc), nil
}

// Item returns an inbox item.
func (s *Store) Item(ctx context.Context, sessionID, requestID string) (*session.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.sessions[sessionID]; st != nil && st.inbox[requestID] != nil {
		return clone(st.inbox[requestID]), nil
	}
	return nil, fmt.Errorf("sessions/%s/inbox/%s: %w", sessionID, requestID, session.ErrNotFound)
}

// Enqueue accepts a valid request (see session.Store.Enqueue).
func (s *Store) Enqueue(ctx context.Context, req *api.Request, raw []byte, traceparent string) (session.Accepted, error) {
	for {
		acc, purge, err := s.enqueue(req, raw, traceparent)
		if err != nil || !purge {
			return acc, err
		}
		// A destroyed session is revived only once its old objects are gone.
		if err := s.Purge(ctx, req.SessionID); err != nil {
			return session.Accepted{}, err
		}
	}
}

func (s *Store) enqueue(req *api.Request, raw []byte, traceparent string) (acc session.Accepted, purgeFirst bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.session(req.SessionID)
	if prev := st.inbox[req.RequestID]; prev != nil {
		item := *prev
		if item.Status == session.ItemDone && item.PublishInLease {
			_, listed := st.publishing()[item.RequestID]
			item.Published = !listed
		}
		return session.Accepted{Item: item, Duplicate: true}, false, nil
	}
	in := session.EnqueueInput{Req: req, Raw: raw, Traceparent: traceparent, Doc: clone(st.doc), Lease: clone(st.lease), Now: s.now()}
	if session.ShowsSession(req.Op) && st.doc != nil {
		if st.runtime != nil {
			in.Shown.Cwd, _ = st.runtime.Shell.Values()
		}
		for _, it := range st.queued() {
			// A request that runs is still queued in its item.
			if _, running := st.marks()[it.RequestID]; !running {
				in.Shown.Queued++
			}
		}
	}
	dec, err := s.rules.Enqueue(in)
	if err != nil {
		return session.Accepted{}, false, fmt.Errorf("enqueue request %s of session %s: %w", req.RequestID, req.SessionID, err)
	}
	if dec.PurgeFirst {
		return session.Accepted{}, true, nil
	}
	if dec.Destroy {
		acc.Aborted, err = s.settle(st.items(session.ItemQueued, session.ItemRunning), in.Now, func(it *session.Item) *api.Completion {
			return session.Aborted(it, req.SessionID, session.DestroyedBy(req.RequestID))
		})
		if err != nil {
			return session.Accepted{}, false, err
		}
		s.destroy(st, in.Now)
		acc.Purge = true
	}
	if dec.Doc != nil {
		st.doc = dec.Doc
	}
	item := dec.Item
	item.Version = s.stamp()
	st.inbox[req.RequestID] = &item
	st.changed()
	acc.Item, acc.Answer, acc.Launch = item, dec.Answer, dec.Launch
	return acc, false, nil
}

// destroy ends the session's life (session.Rules.Destroyed).
func (s *Store) destroy(st *state, now time.Time) {
	doc, ld, fd := s.rules.Destroyed(*st.doc, st.lease, now)
	st.doc, st.lease, st.fence, st.runtime = &doc, &ld, &fd, nil
	st.changed()
}

// Reject records the error completion of an invalid request (see
// session.Store.Reject).
func (s *Store) Reject(ctx context.Context, c *api.Completion, raw []byte) (session.Item, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.session(c.SessionID)
	if prev := st.inbox[c.RequestID]; prev != nil {
		return *prev, true, nil
	}
	item, err := s.rules.Reject(c, raw, s.now())
	if err != nil {
		return session.Item{}, false, fmt.Errorf("record rejection of request %s of session %s: %w", c.RequestID, c.SessionID, err)
	}
	item.Version = s.stamp()
	st.inbox[c.RequestID] = &item
	return item, false, nil
}

// Published notes that a completion a host published reached Pub/Sub
// (see session.Store.Published): one its Finish recorded leaves the lease
// document's Publishing, any other is marked in its item.
func (s *Store) Published(ctx context.Context, lease *session.Lease, requestID string) error {
	s.mu.Lock()
	st := s.sessions[lease.SessionID]
	if st != nil && st.inbox[requestID] != nil && st.inbox[requestID].PublishInLease {
		st.dropPublishing(requestID)
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	return s.MarkPublished(ctx, lease.SessionID, requestID)
}

// ClearPublishing drops republished completions from the session's lease
// document's Publishing.
func (s *Store) ClearPublishing(ctx context.Context, sessionID string, requestIDs []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.sessions[sessionID]; st != nil {
		st.dropPublishing(requestIDs...)
	}
	return nil
}

// MarkPublished notes that an item's completion reached Pub/Sub.
func (s *Store) MarkPublished(ctx context.Context, sessionID, requestID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.sessions[sessionID]
	if st == nil || st.inbox[requestID] == nil {
		return fmt.Errorf("mark request %s of session %s published: %w", requestID, sessionID, session.ErrNotFound)
	}
	st.inbox[requestID].Published, st.inbox[requestID].Version = true, s.stamp()
	return nil
}

// LaunchTimeout is how long a claimed launch stays in flight.
func (s *Store) LaunchTimeout() time.Duration { return s.rules.LaunchTimeout }

// launchOf returns the session's document when its launch is launchID.
func (s *Store) launchOf(sessionID, launchID string) *session.Doc {
	st := s.sessions[sessionID]
	if st == nil || st.doc == nil || st.doc.Launch == nil || st.doc.Launch.ID != launchID {
		return nil
	}
	return st.doc
}

// RecordLaunch notes the execution that a claimed launch started, unless
// the claim was superseded.
func (s *Store) RecordLaunch(ctx context.Context, sessionID, launchID, execution string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.launchOf(sessionID, launchID); d != nil {
		l := *d.Launch
		l.Execution, l.WaitingSince, l.WaitingFor = execution, time.Time{}, ""
		d.Launch = &l
	}
	return nil
}

// LaunchFailed withdraws a launch claim, counted.
func (s *Store) LaunchFailed(ctx context.Context, sessionID, launchID string) error {
	return s.WithdrawLaunch(ctx, sessionID, launchID, true)
}

// WithdrawLaunch withdraws a launch claim so that another may be claimed.
func (s *Store) WithdrawLaunch(ctx context.Context, sessionID, launchID string, counted bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.launchOf(sessionID, launchID); d != nil {
		l := *d.Launch
		l.RequestedAt = time.Time{}
		d.Launch = &l
		if !counted && d.LaunchAttempts > 0 {
			d.LaunchAttempts--
		}
	}
	return nil
}

// KeepClaim keeps a launch claim that has not started an execution in
// flight (see session.Store.KeepClaim).
func (s *Store) KeepClaim(ctx context.Context, sessionID, launchID string, since time.Time, why string) (*session.Launch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.launchOf(sessionID, launchID)
	if d == nil || d.Status != session.StatusActive || d.Launch.Execution != "" {
		return nil, nil
	}
	l := *d.Launch
	l.RequestedAt, l.WaitingSince, l.WaitingFor = s.now(), since.UTC(), why
	d.Launch = &l
	kept := l
	return &kept, nil
}

// Acquire takes the session's lease (see session.Store.Acquire).
func (s *Store) Acquire(ctx context.Context, sessionID, execution string, ttl time.Duration) (*session.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.session(sessionID)
	sent, now := time.Now(), s.now()
	ld, fd, lease, err := s.rules.Acquire(sessionID, execution, ttl, st.doc, st.lease, st.runtime, now)
	if err != nil {
		return nil, fmt.Errorf("acquire lease of session %s for %s: %w", sessionID, execution, err)
	}
	st.lease, st.fence = &ld, &fd
	// Taking the lease is its first renewal, as in the Firestore store.
	lease.NoteRenewal(sent, now, ld.LeaseExpires)
	return lease, nil
}

// fenced runs f on the session's state if lease is current, under the
// store's lock.
func (s *Store) fenced(lease *session.Lease, f func(st *state, now time.Time) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.sessions[lease.SessionID]
	if st == nil || !session.Fenced(st.fence, lease) {
		return session.ErrLeaseLost
	}
	return f(st, s.now())
}

// Renew extends the lease to ttl from now.
func (s *Store) Renew(ctx context.Context, lease *session.Lease, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.sessions[lease.SessionID]
	if st == nil || st.lease == nil || st.lease.Epoch != lease.Epoch || st.lease.Execution != lease.Execution {
		return fmt.Errorf("renew lease of session %s: %w", lease.SessionID, session.ErrLeaseLost)
	}
	sent, now := time.Now(), s.now()
	st.lease.LeaseExpires, st.lease.ExpireAt = now.Add(ttl), now.Add(s.rules.TTL)
	lease.NoteRenewal(sent, now, st.lease.LeaseExpires)
	return nil
}

// renewWith renews the lease held (fenced) as a Start or Finish does
// (session.Lease.WorkExpiry): the Firestore store's fence is that write.
func (s *Store) renewWith(st *state, lease *session.Lease, sent, now time.Time) {
	expires := lease.WorkExpiry(now)
	st.lease.LeaseExpires, st.lease.ExpireAt = expires, now.Add(s.rules.TTL)
	lease.NoteRenewal(sent, now, expires)
}

// Release gives the lease up, unless requests are queued and not force.
func (s *Store) Release(ctx context.Context, lease *session.Lease, force bool) error {
	err := s.fenced(lease, func(st *state, now time.Time) error {
		if !force && len(st.queued()) > 0 {
			return session.ErrWorkPending
		}
		fd := *st.fence
		fd.Host = ""
		st.fence = &fd
		st.lease.Execution, st.lease.LeaseExpires = "", time.Time{}
		st.hostGone(now)
		return nil
	})
	if err != nil {
		return fmt.Errorf("release lease of session %s: %w", lease.SessionID, err)
	}
	return nil
}

// Queued returns up to limit of the session's queued items, in sequence
// order, each with its Version.
func (s *Store) Queued(ctx context.Context, sessionID string, limit int) ([]session.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queuedOf(sessionID, limit), nil
}

// queuedOf copies up to limit (-1: all) of the session's queued items.
// Callers hold s.mu.
func (s *Store) queuedOf(sessionID string, limit int) []session.Item {
	var out []session.Item
	if st := s.sessions[sessionID]; st != nil {
		for _, it := range st.queued() {
			if len(out) == limit {
				break
			}
			out = append(out, *it)
		}
	}
	return out
}

// WatchQueued sends the session's queued items at once and whenever they
// may have changed, until ctx ends; the channel holds only the latest (see
// session.Store.WatchQueued). It never fails.
func (s *Store) WatchQueued(ctx context.Context, sessionID string) <-chan session.Queue {
	out := make(chan session.Queue, 1)
	wake := make(chan struct{}, 1)
	wake <- struct{}{}
	s.mu.Lock()
	st := s.session(sessionID)
	st.watchers[wake] = true
	s.mu.Unlock()
	go func() {
		defer func() {
			s.mu.Lock()
			delete(st.watchers, wake)
			s.mu.Unlock()
		}()
		for {
			select {
			case <-wake:
			case <-ctx.Done():
				return
			}
			s.mu.Lock()
			q := session.Queue{Items: s.queuedOf(sessionID, -1)}
			s.mu.Unlock()
			select {
			case <-out:
			default:
			}
			out <- q
		}
	}()
	return out
}

// Start marks a queued item running under the lease, and renews the lease
// (see session.Store.Start). An item queued still starts whatever version
// seen carries, as the Firestore store's does after reading it again; one
// no longer queued answers ok=false.
func (s *Store) Start(ctx context.Context, lease *session.Lease, seen session.Item) (item *session.Item, ok bool, err error) {
	sent := time.Now()
	err = s.fenced(lease, func(st *state, now time.Time) error {
		it := clone(st.inbox[seen.RequestID])
		if it != nil && session.ApplyMark(it, st.marks()) {
			item = it // started already
			return nil
		}
		// The item is not written: the lease document marks it running.
		if ok = session.StartItem(it, lease, now); ok {
			running := maps.Clone(st.marks())
			if running == nil {
				running = map[string]session.RunningItem{}
			}
			running[it.RequestID] = session.Mark(it, lease, now)
			st.setMarks(running)
			s.renewWith(st, lease, sent, now)
		}
		item = clone(it)
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("start request %s of session %s: %w", seen.RequestID, lease.SessionID, err)
	}
	return item, ok, nil
}

// Finish records the completion of a running item under the lease, with
// the shell state and checkpoint it left, and renews the lease (see
// session.Store.Finish). Whatever version says, a completion is recorded
// once, as the Firestore store's is after reading the item again.
func (s *Store) Finish(ctx context.Context, lease *session.Lease, version time.Time, c *api.Completion, shell *session.Shell, cp *session.Checkpoint) ([]byte, error) {
	b, err := session.Fit(ctx, s, lease.SessionID, c)
	if err != nil {
		return nil, err
	}
	sent := time.Now()
	var recorded []byte
	err = s.fenced(lease, func(st *state, now time.Time) error {
		it := clone(st.inbox[c.RequestID])
		if it == nil {
			return fmt.Errorf("inbox item %s: %w", c.RequestID, session.ErrNotFound)
		}
		var first bool
		if recorded, first = session.FinishItem(it, b, now); !first {
			return nil
		}
		if m, ok := st.marks()[c.RequestID]; ok {
			it.StartedAt, it.Epoch, it.Execution = m.StartedAt, m.Epoch, m.Execution
			running := maps.Clone(st.marks())
			delete(running, c.RequestID)
			st.setMarks(running)
		}
		// The lease document tracks its publish.
		it.Published, it.PublishInLease = false, true
		publishing := maps.Clone(st.publishing())
		if publishing == nil {
			publishing = map[string]time.Time{}
		}
		publishing[c.RequestID] = now
		st.setPublishing(publishing)
		it.Version = s.stamp()
		st.inbox[c.RequestID] = it
		if shell != nil || cp != nil {
			rt := clone(st.runtime)
			if rt == nil {
				rt = &session.StateDoc{}
			}
			if shell != nil {
				rt.Shell = *shell
			}
			if cp != nil {
				cp.Epoch, cp.CreatedAt = lease.Epoch, now
				rt.Checkpoint = clone(cp)
			}
			rt.ExpireAt = now.Add(s.rules.TTL)
			st.runtime = rt
		}
		s.renewWith(st, lease, sent, now)
		st.changed()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("finish request %s of session %s: %w", c.RequestID, lease.SessionID, err)
	}
	if cp != nil && string(recorded) == string(b) {
		lease.Checkpoint = cp
	}
	return recorded, nil
}

// FailOrphans answers HOST_LOST, under a freshly taken lease, the requests
// that earlier hosts of the session left running.
func (s *Store) FailOrphans(ctx context.Context, lease *session.Lease) (lost []session.Unpublished, err error) {
	err = s.fenced(lease, func(st *state, now time.Time) error {
		lost, err = s.settle(st.orphaned(lease.Epoch), now, func(it *session.Item) *api.Completion { return session.HostLost(it, lease.Epoch) })
		if err != nil {
			return err
		}
		running := maps.Clone(st.marks())
		maps.DeleteFunc(running, func(_ string, m session.RunningItem) bool { return m.Epoch < lease.Epoch })
		st.setMarks(running)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fail orphaned requests of session %s: %w", lease.SessionID, err)
	}
	return lost, nil
}

// RecoverHost takes the session from a host whose lease lapsed (see
// session.Store.RecoverHost).
func (s *Store) RecoverHost(ctx context.Context, sessionID string) (lost []session.Unpublished, recovered bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.sessions[sessionID]
	if st == nil {
		return nil, false, nil
	}
	now := s.now()
	next, fd, ok := s.rules.Recover(st.lease, now)
	if !ok {
		return nil, false, nil
	}
	if lost, err = s.settle(st.orphaned(next.Epoch), now, func(it *session.Item) *api.Completion { return session.HostLost(it, next.Epoch) }); err != nil {
		return nil, false, fmt.Errorf("recover session %s from its lost host: %w", sessionID, err)
	}
	st.lease, st.fence = &next, &fd
	st.hostGone(now)
	return lost, true, nil
}

// hostGone records in the session document that the session lost its host
// at now, as the Firestore store does (session.Doc.HostGoneAt).
func (st *state) hostGone(now time.Time) {
	if st.doc != nil {
		d := *st.doc
		d.HostGoneAt = now
		st.doc = &d
	}
}

// ExpiredHosts lists sessions whose host's lease lapsed before now.
func (s *Store) ExpiredHosts(ctx context.Context) ([]session.ExpiredHost, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var out []session.ExpiredHost
	for _, id := range s.ids() {
		ld := s.sessions[id].lease
		if ld != nil && ld.LeaseExpires.After(time.Unix(1, 0)) && ld.LeaseExpires.Before(now) {
			out = append(out, session.ExpiredHost{SessionID: id, Execution: ld.Execution})
		}
	}
	return out, nil
}

// ids lists the sessions' ids in order.
func (s *Store) ids() []string {
	ids := make([]string, 0, len(s.sessions))
	for id := range s.sessions {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Waiting lists active sessions with queued requests and no live host,
// leaving out those skip names.
func (s *Store) Waiting(ctx context.Context, skip func(sessionID string) bool) ([]session.Waiting, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var out []session.Waiting
	for _, id := range s.ids() {
		st := s.sessions[id]
		if len(st.queued()) == 0 || (skip != nil && skip(id)) || st.doc == nil || st.doc.Status != session.StatusActive || st.lease.Live(now) {
			continue
		}
		w := session.Waiting{SessionID: id}
		if s.rules.LaunchInFlight(st.doc, st.lease, now) {
			w.Launch = clone(st.doc.Launch)
		}
		out = append(out, w)
	}
	return out, nil
}

// Relaunch claims a launch for a session with queued requests, no host
// and no launch in flight, or gives up after maxAttempts (see
// session.Store.Relaunch).
func (s *Store) Relaunch(ctx context.Context, sessionID string, maxAttempts int) (launch *session.Launch, failed []session.Unpublished, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.sessions[sessionID]
	now := s.now()
	if st == nil || !s.rules.MayRelaunch(st.doc, st.lease, now) || len(st.queued()) == 0 {
		return nil, nil, nil
	}
	progressed := false
	for _, it := range st.inbox {
		if it.FinishedAt.After(st.doc.AttemptsSince) {
			progressed = true
		}
	}
	doc := clone(st.doc)
	launch, attempts := session.Relaunch(doc, progressed, maxAttempts, now)
	if launch == nil {
		failed, err = s.settle(st.queued(), now, func(it *session.Item) *api.Completion {
			if session.ApplyMark(it, st.marks()) {
				// Its host left it running (a forced release).
				return session.HostLost(it, st.lease.Epoch+1)
			}
			return session.GaveUp(it, sessionID, attempts)
		})
		if err != nil {
			return nil, nil, fmt.Errorf("relaunch session %s: %w", sessionID, err)
		}
		st.changed()
	}
	st.doc = doc
	return launch, failed, nil
}

// Unpublished lists completions recorded before cutoff and not yet marked
// published, across all sessions.
func (s *Store) Unpublished(ctx context.Context, cutoff time.Time, limit int) ([]session.Unpublished, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []session.Unpublished
	for _, id := range s.ids() {
		for _, it := range s.sessions[id].items(session.ItemDone) {
			if len(out) == limit {
				return out, nil
			}
			if !it.Published && !it.PublishInLease && it.FinishedAt.Before(cutoff) {
				out = append(out, session.Unpublished{SessionID: id, RequestID: it.RequestID, Completion: []byte(it.Completion)})
			}
		}
	}
	n := 0
	for _, id := range s.ids() {
		st := s.sessions[id]
		for _, rid := range slices.Sorted(maps.Keys(st.publishing())) {
			it := st.inbox[rid]
			if n < limit && st.publishing()[rid].Before(cutoff) && it != nil && it.Status == session.ItemDone {
				out = append(out, session.Unpublished{SessionID: id, RequestID: rid, Completion: []byte(it.Completion), InLease: true})
				n++
			}
		}
	}
	return out, nil
}

// Stale lists active sessions without activity since cutoff.
func (s *Store) Stale(ctx context.Context, cutoff time.Time) ([]string, error) {
	return s.sessionIDs(func(d *session.Doc) bool { return d.Status == session.StatusActive && d.UpdatedAt.Before(cutoff) }), nil
}

// PurgePending lists destroyed sessions whose objects may remain.
func (s *Store) PurgePending(ctx context.Context) ([]string, error) {
	return s.sessionIDs(func(d *session.Doc) bool { return d.PurgePending }), nil
}

func (s *Store) sessionIDs(match func(*session.Doc) bool) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, id := range s.ids() {
		if d := s.sessions[id].doc; d != nil && match(d) {
			out = append(out, id)
		}
	}
	return out
}

// Hosted lists the execution ids that sessions' hosts and launches, and
// the warm pool's members, name.
func (s *Store) Hosted(ctx context.Context) (map[string]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]bool{}
	for _, m := range s.members {
		if m.Status == session.MemberLaunching || m.Status == session.MemberIdle {
			out[m.Execution] = true
		}
	}
	for _, st := range s.sessions {
		if st.lease != nil && st.lease.Execution != "" {
			out[st.lease.Execution] = true
		}
		if st.doc != nil && st.doc.Launch != nil && st.doc.Launch.Execution != "" {
			out[st.doc.Launch.Execution] = true
		}
	}
	return out, nil
}

// Destroy ends a session's life whatever runs in it (see
// session.Store.Destroy).
func (s *Store) Destroy(ctx context.Context, sessionID, reason string) (host string, answered []session.Unpublished, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.sessions[sessionID]
	if st == nil || st.doc == nil || st.doc.Status == session.StatusDestroyed {
		return "", nil, nil
	}
	now := s.now()
	answered, err = s.settle(st.items(session.ItemQueued, session.ItemRunning), now, func(it *session.Item) *api.Completion { return session.Aborted(it, sessionID, reason) })
	if err != nil {
		return "", nil, fmt.Errorf("destroy session %s: %w", sessionID, err)
	}
	switch {
	case st.lease != nil && st.lease.Execution != "":
		host = st.lease.Execution
	case st.doc.Launch != nil:
		host = st.doc.Launch.Execution
	}
	s.destroy(st, now)
	return host, answered, nil
}

// Purge deletes the objects of a destroyed session and clears its
// purge_pending mark.
func (s *Store) Purge(ctx context.Context, sessionID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name := range s.objects {
		if strings.HasPrefix(name, "sessions/"+sessionID+"/") || strings.HasPrefix(name, "blobs/"+sessionID+"/") {
			delete(s.objects, name)
		}
	}
	if st := s.sessions[sessionID]; st != nil && st.doc != nil && st.doc.Status == session.StatusDestroyed {
		st.doc.PurgePending = false
	}
	return nil
}

// RecordProcess writes a process's registry entry under the lease.
func (s *Store) RecordProcess(ctx context.Context, lease *session.Lease, p session.ProcessDoc) error {
	p.Epoch, p.Execution = lease.Epoch, lease.Execution
	err := s.fenced(lease, func(st *state, now time.Time) error {
		p.ExpireAt = now.Add(s.rules.TTL)
		st.processes[session.ProcessKey(p.Epoch, p.Pid)] = &p
		return nil
	})
	if err != nil {
		return fmt.Errorf("record process %d of session %s: %w", p.Pid, lease.SessionID, err)
	}
	return nil
}

// Processes lists the session's registry, newest first.
func (s *Store) Processes(ctx context.Context, sessionID string) ([]session.ProcessDoc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []session.ProcessDoc
	if st := s.sessions[sessionID]; st != nil {
		for _, p := range st.processes {
			out = append(out, *p)
		}
	}
	slices.SortFunc(out, func(a, b session.ProcessDoc) int { return b.StartedAt.Compare(a.StartedAt) })
	return out, nil
}

// SettleProcesses marks as lost the registry entries that say running
// although their host is gone.
func (s *Store) SettleProcesses(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	settled := 0
	for _, st := range s.sessions {
		for _, p := range st.processes {
			if p.Status != session.ProcessRunning || (st.lease != nil && st.lease.Epoch == p.Epoch && st.lease.Live(now)) {
				continue
			}
			p.Status, p.FinishedAt, p.Reason = session.ProcessLost, now, "its host ended without reporting how the process ended"
			settled++
		}
	}
	return settled, nil
}

// CommitCheckpoint makes cp the session's checkpoint, under the lease.
func (s *Store) CommitCheckpoint(ctx context.Context, lease *session.Lease, cp session.Checkpoint) error {
	err := s.fenced(lease, func(st *state, now time.Time) error {
		cp.Epoch, cp.CreatedAt = lease.Epoch, now
		rt := clone(st.runtime)
		if rt == nil {
			rt = &session.StateDoc{}
		}
		rt.Checkpoint, rt.ExpireAt = clone(&cp), now.Add(s.rules.TTL)
		st.runtime = rt
		return nil
	})
	if err != nil {
		return fmt.Errorf("commit checkpoint %s of session %s: %w", cp.Object, lease.SessionID, err)
	}
	lease.Checkpoint = &cp
	return nil
}

// Bucket is the bucket the objects are said to be in.
func (s *Store) Bucket() string { return s.bucket }

// ObjectURI names an object as gs://bucket/name.
func (s *Store) ObjectURI(name string) string { return "gs://" + s.bucket + "/" + name }

// errPrecondition is a write refused because the object exists, or is not
// at the generation asked for.
var errPrecondition = errors.New("precondition failed")

// put stores data as object name; with mustBeNew it fails if the object
// exists.
func (s *Store) put(name, contentType string, data []byte, mustBeNew bool) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if mustBeNew && s.objects[name] != nil {
		return 0, fmt.Errorf("write object %s: %w", name, errPrecondition)
	}
	s.gen++
	s.objects[name] = &object{data: data, generation: s.gen, created: s.now(), contentType: contentType}
	return s.gen, nil
}

// WriteNewObject copies what r holds into a new object.
func (s *Store) WriteNewObject(ctx context.Context, name, contentType string, r io.Reader) (int64, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return int64(len(data)), fmt.Errorf("write object %s: %w", name, err)
	}
	_, err = s.put(name, contentType, data, true)
	return int64(len(data)), err
}

// PutNewObject stores data as a new object and returns its generation.
func (s *Store) PutNewObject(ctx context.Context, name, contentType string, data []byte) (int64, error) {
	return s.put(name, contentType, bytes.Clone(data), true)
}

// ReplaceObject writes an object whole, replacing what was there.
func (s *Store) ReplaceObject(ctx context.Context, name, contentType string, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("write object %s: %w", name, err)
	}
	_, err = s.put(name, contentType, data, false)
	return err
}

// open returns an object's content at generation (0: the latest).
func (s *Store) open(name string, generation int64) (*session.Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.objects[name]
	if o == nil || (generation != 0 && o.generation != generation) {
		return nil, fmt.Errorf("object %s: %w", name, session.ErrNotFound)
	}
	return &session.Object{ReadCloser: io.NopCloser(bytes.NewReader(o.data)), Size: int64(len(o.data))}, nil
}

// OpenObject reads an object; a missing one is session.ErrNotFound.
func (s *Store) OpenObject(ctx context.Context, name string) (*session.Object, error) {
	return s.open(name, 0)
}

// DeleteObject deletes an object; one already gone is no error.
func (s *Store) DeleteObject(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.objects, name)
	return nil
}

// OpenCheckpoint reads the checkpoint's object at its recorded generation.
func (s *Store) OpenCheckpoint(ctx context.Context, cp *session.Checkpoint) (io.ReadCloser, error) {
	o, err := s.open(cp.Object, cp.Generation)
	if err != nil {
		return nil, fmt.Errorf("open checkpoint %s: %w", cp.Object, err)
	}
	return o, nil
}

// ReadCheckpoint reads the whole of a checkpoint's object.
func (s *Store) ReadCheckpoint(ctx context.Context, cp *session.Checkpoint) ([]byte, error) {
	r, err := s.OpenCheckpoint(ctx, cp)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func blobName(sessionID, name string) string { return "blobs/" + sessionID + "/" + name }

// Blobs returns the session's checkpoint blobs.
func (s *Store) Blobs(sessionID string) session.Blobs { return session.SessionBlobs(s, sessionID) }

// PutBlob stores a checkpoint blob of the session.
func (s *Store) PutBlob(ctx context.Context, sessionID, name string, size int64, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("write blob %s: %w", name, err)
	}
	_, err = s.put(blobName(sessionID, name), "application/octet-stream", data, false)
	return err
}

// GetBlob reads a checkpoint blob of the session.
func (s *Store) GetBlob(ctx context.Context, sessionID, name string) (io.ReadCloser, error) {
	o, err := s.open(blobName(sessionID, name), 0)
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", name, err)
	}
	return o, nil
}

// DeleteBlobs deletes checkpoint blobs of the session.
func (s *Store) DeleteBlobs(ctx context.Context, sessionID string, names []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range names {
		delete(s.objects, blobName(sessionID, name))
	}
	return nil
}

// SweepBlobs deletes the session's blobs that live does not hold and that
// were created before before.
func (s *Store) SweepBlobs(ctx context.Context, sessionID string, live map[string]bool, before time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prefix := blobName(sessionID, "")
	deleted := 0
	for name, o := range s.objects {
		if strings.HasPrefix(name, prefix) && !live[name[len(prefix):]] && o.created.Before(before) {
			delete(s.objects, name)
			deleted++
		}
	}
	return deleted, nil
}
