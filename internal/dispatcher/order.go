package dispatcher

import (
	"context"
	"slices"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
)

// orderGate keeps the messages of each ordering key (a session) in publish
// order whatever Pub/Sub redelivers. Pub/Sub hands a subscriber several
// messages of one key at once, and when one of them is nacked or its ack
// deadline expires it redelivers it after the later ones of its key were
// delivered (a consumer sees m0, m1, m2, m0); Google's emulator moreover
// redelivers a batch of nacked messages of one key in any order. So, per
// key, the gate:
//   - remembers the messages it has seen and not yet handled, in the order
//     it first saw them, which is publish order (pending);
//   - handles only the first of them, one message at a time;
//   - keeps any other one in hand (held, not acknowledged) until those
//     before it are handled, and then handles it;
//   - after refuseDelay nacks the messages it holds, so that they do not
//     pin the subscriber's flow control (the failed message's redelivery
//     needs room) nor their ack deadlines for long; they come back and wait
//     again, each time spending one of their delivery attempts;
//   - gives up on a first message that is not handled within hold (it may
//     never come back here: dead-lettered, or redelivered to another
//     dispatcher after a reconnect), and goes on with the next.
//
// A redelivery of a message that was handled is recognised by the inbox,
// keyed by request id, not here.
type orderGate struct {
	hold, refuseDelay time.Duration
	now               func() time.Time

	mu   sync.Mutex
	keys map[string]*keyState
}

// keyState is what the gate knows of one key. Every field but users is
// read and written only by the holder of turn.
type keyState struct {
	// turn is held by whoever works on the key.
	turn chan struct{}
	// users counts those holding or awaiting turn (under the gate's mu).
	users int
	// pending are the ids of the messages seen and not handled, in the
	// order first seen; headSince is when pending[0] became first, or
	// last failed.
	pending   []string
	headSince time.Time
	// held are the copies of messages kept in hand, by id; refuseTimer
	// nacks them.
	held        map[string][]*pubsub.Message
	refuseTimer *time.Timer
}

func newOrderGate(hold, refuseDelay time.Duration, now func() time.Time) *orderGate {
	return &orderGate{hold: hold, refuseDelay: refuseDelay, now: now, keys: map[string]*keyState{}}
}

// enter waits for the key's turn and returns its state; the caller must
// leave it.
func (g *orderGate) enter(ctx context.Context, key string) (*keyState, error) {
	g.mu.Lock()
	st := g.keys[key]
	if st == nil {
		st = &keyState{turn: make(chan struct{}, 1), held: map[string][]*pubsub.Message{}}
		g.keys[key] = st
	}
	st.users++
	g.mu.Unlock()
	select {
	case st.turn <- struct{}{}:
		return st, nil
	case <-ctx.Done():
		g.mu.Lock()
		st.users--
		g.mu.Unlock()
		return nil, ctx.Err()
	}
}

// leave gives the key's turn to the next, and forgets a key that has
// nothing pending and no one waiting.
func (g *orderGate) leave(key string, st *keyState) {
	g.mu.Lock()
	st.users--
	if st.users == 0 && len(st.pending) == 0 && len(st.held) == 0 {
		delete(g.keys, key)
	}
	g.mu.Unlock()
	<-st.turn
}

// see records a message of the key; a message seen before keeps its place.
func (g *orderGate) see(st *keyState, id string) {
	if !slices.Contains(st.pending, id) {
		if len(st.pending) == 0 {
			st.headSince = g.now()
		}
		st.pending = append(st.pending, id)
	}
}

// first returns the id of the message to handle next, giving up on one
// other than current that has been first for longer than the hold; gaveUp
// names it.
func (g *orderGate) first(st *keyState, current string) (id, gaveUp string) {
	if len(st.pending) > 1 && st.pending[0] != current && g.now().Sub(st.headSince) >= g.hold {
		gaveUp = st.pending[0]
		g.done(st, gaveUp)
	}
	return st.pending[0], gaveUp
}

// done removes a handled message from the pending ones.
func (g *orderGate) done(st *keyState, id string) {
	st.pending = slices.DeleteFunc(st.pending, func(p string) bool { return p == id })
	st.headSince = g.now()
}

// failed restarts the hold of the first message, which failed.
func (g *orderGate) failed(st *keyState) {
	st.headSince = g.now()
}

// holdCopy keeps a copy of a message in hand; nackHeld nacks it after the
// gate's refuseDelay unless it is handled first.
func (g *orderGate) holdCopy(key string, st *keyState, m *pubsub.Message, nackHeld func(key string)) {
	st.held[m.ID] = append(st.held[m.ID], m)
	if st.refuseTimer == nil {
		st.refuseTimer = time.AfterFunc(g.refuseDelay, func() { nackHeld(key) })
	}
}

// takeHeld removes and returns the copies of message id held.
func (g *orderGate) takeHeld(st *keyState, id string) []*pubsub.Message {
	copies := st.held[id]
	delete(st.held, id)
	return copies
}

// takeAllHeld removes and returns every copy held, in pending order.
func (g *orderGate) takeAllHeld(st *keyState) []*pubsub.Message {
	var all []*pubsub.Message
	for _, id := range st.pending {
		all = append(all, g.takeHeld(st, id)...)
	}
	for id := range st.held { // held but no longer pending: handled or given up
		all = append(all, g.takeHeld(st, id)...)
	}
	if st.refuseTimer != nil {
		st.refuseTimer.Stop()
		st.refuseTimer = nil
	}
	return all
}

// ordered handles a message of an ordering key in its key's order and says
// what to do with it.
func (d *Dispatcher) ordered(ctx context.Context, m *pubsub.Message) verdict {
	key := m.OrderingKey
	st, err := d.order.enter(ctx, key)
	if err != nil {
		d.messageLog(m).Error("request not handled: the session's earlier messages held it up; Pub/Sub will redeliver it", "event", "request.nacked", "error", err.Error())
		return nack
	}
	defer d.order.leave(key, st)
	d.order.see(st, m.ID)
	first, gaveUp := d.order.first(st, m.ID)
	if gaveUp != "" {
		d.messageLog(m).Warn("an earlier message of the session was not handled in time; going on without it", "event", "order.hold_expired",
			"given_up_message_id", gaveUp, "order_hold", d.cfg.OrderHold.String())
		d.handleHeld(ctx, key, st)
		first, _ = d.order.first(st, m.ID)
	}
	if first != m.ID {
		d.messageLog(m).Info("request held until the session's earlier messages are handled", "event", "request.held", "waiting_for_message_id", first)
		d.order.holdCopy(key, st, m, d.nackHeld)
		return held
	}
	if v := d.try(ctx, m); v != ack {
		d.order.failed(st)
		return v
	}
	d.order.done(st, m.ID)
	for _, c := range d.order.takeHeld(st, m.ID) {
		d.ack(c)
	}
	d.handleHeld(ctx, key, st)
	return ack
}

// handleHeld handles, in order, the held messages that are now first.
func (d *Dispatcher) handleHeld(ctx context.Context, key string, st *keyState) {
	for len(st.pending) > 0 {
		id := st.pending[0]
		copies := d.order.takeHeld(st, id)
		if len(copies) == 0 {
			return
		}
		m := copies[0]
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.HandleTimeout)
		v := d.try(hctx, m)
		cancel()
		if v != ack {
			d.order.failed(st)
			for _, c := range copies {
				d.nack(c)
			}
			return
		}
		d.order.done(st, id)
		for _, c := range copies {
			d.ack(c)
		}
	}
}

// nackHeld nacks every message held for a key: Pub/Sub delivers them again
// and they wait again.
func (d *Dispatcher) nackHeld(key string) {
	st, err := d.order.enter(context.Background(), key)
	if err != nil {
		return
	}
	defer d.order.leave(key, st)
	for _, m := range d.order.takeAllHeld(st) {
		d.nack(m)
	}
}

// nackAllHeld nacks every message held, as the dispatcher stops.
func (d *Dispatcher) nackAllHeld() {
	d.order.mu.Lock()
	keys := make([]string, 0, len(d.order.keys))
	for k := range d.order.keys {
		keys = append(keys, k)
	}
	d.order.mu.Unlock()
	for _, k := range keys {
		d.nackHeld(k)
	}
}
