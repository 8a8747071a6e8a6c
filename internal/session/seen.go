package session

import (
	"container/list"
	"sync"
	"time"
)

// seenSessions remembers, for the sessions a store enqueued to most
// recently, the session document as the store last wrote it (with its
// update time) and the lease as it last read it, so that the next enqueue
// of a hosted session can commit without reading first (appendItem). It
// holds at most max sessions, forgetting the least recently used.
type seenSessions struct {
	mu    sync.Mutex
	max   int
	order *list.List               // of *seenSession, most recent first
	byID  map[string]*list.Element // session id → its element in order
}

// seenSession is what a store last saw of one session.
type seenSession struct {
	id string
	// doc is the session document whose update time is version.
	doc     Doc
	version time.Time
	// lease is the lease document as read with the session document that
	// the commit leaving version was conditioned on (appendItem), nil when
	// it was missing.
	lease *LeaseDoc
}

// maxSeenSessions bounds a store's memory of sessions (a few hundred bytes
// each): enough for the sessions one dispatcher serves at a time.
const maxSeenSessions = 10000

func newSeenSessions(limit int) *seenSessions {
	return &seenSessions{max: limit, order: list.New(), byID: map[string]*list.Element{}}
}

// get returns a copy of what was seen of the session, if anything.
func (c *seenSessions) get(id string) (seenSession, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byID[id]
	if !ok {
		return seenSession{}, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*seenSession).clone(), true
}

// put records what was seen of a session, in place of what was before.
func (c *seenSessions) put(s seenSession) {
	s = s.clone()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[s.id]; ok {
		e.Value = &s
		c.order.MoveToFront(e)
		return
	}
	c.byID[s.id] = c.order.PushFront(&s)
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byID, last.Value.(*seenSession).id)
	}
}

// forget drops what was seen of the session: it changed since.
func (c *seenSessions) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[id]; ok {
		c.order.Remove(e)
		delete(c.byID, id)
	}
}

// clone copies s deep enough that neither copy's changes reach the other.
func (s seenSession) clone() seenSession {
	if s.doc.Launch != nil {
		l := *s.doc.Launch
		s.doc.Launch = &l
	}
	s.lease = cloneLease(s.lease)
	return s
}

func cloneLease(l *LeaseDoc) *LeaseDoc {
	if l == nil {
		return nil
	}
	cp := *l
	return &cp
}
