package session

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/sandrun/sandrun/api"
)

var rules = Rules{TTL: time.Hour, LaunchTimeout: time.Minute}

func TestEnqueueDecision(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	active := func() *Doc {
		return &Doc{Status: StatusActive, CreatedAt: now.Add(-time.Hour), UpdatedAt: now.Add(-time.Minute), NextSeq: 7}
	}
	destroyed := &Doc{Status: StatusDestroyed, NextSeq: 9}
	purging := &Doc{Status: StatusDestroyed, NextSeq: 9, PurgePending: true}
	live := &LeaseDoc{Epoch: 3, Execution: "exec-1", LeaseExpires: now.Add(time.Second)}
	lapsed := &LeaseDoc{Epoch: 3, Execution: "exec-1", LeaseExpires: now.Add(-time.Second)}
	launching := func() *Doc {
		d := active()
		d.Launch = &Launch{ID: "l1", RequestedAt: now.Add(-10 * time.Second)}
		return d
	}
	waitingLaunch := func() *Doc {
		d := launching()
		d.Launch.WaitingFor = WaitMaxHosts
		return d
	}
	staleLaunch := func() *Doc {
		d := active()
		d.Launch = &Launch{ID: "l1", RequestedAt: now.Add(-2 * time.Minute)}
		return d
	}

	// want describes a decision: the answer's status and code ("" when
	// queued), and what else it must carry.
	type want struct {
		status     api.Status
		code       api.ErrorCode
		queuedSeq  int64 // -1: not queued
		launch     bool
		destroy    bool
		purgeFirst bool
		writesDoc  bool
		sessionOut string // the status the answer shows, if it shows one
	}
	for _, tc := range []struct {
		name  string
		op    api.Op
		doc   *Doc
		lease *LeaseDoc
		want  want
	}{
		{"exec of a new session is queued first and claims a host", api.OpExec, nil, nil,
			want{queuedSeq: 0, launch: true, writesDoc: true}},
		{"exec of an active session without a host takes the next sequence and claims one", api.OpExec, active(), nil,
			want{queuedSeq: 7, launch: true, writesDoc: true}},
		{"exec of a hosted session is queued for its host", api.OpExec, active(), live,
			want{queuedSeq: 7, writesDoc: true}},
		{"exec of a session with a lapsed host waits for the reaper", api.OpExec, active(), lapsed,
			want{queuedSeq: 7, writesDoc: true}},
		{"exec while a launch is in flight claims no other", api.OpExec, launching(), nil,
			want{queuedSeq: 7, writesDoc: true}},
		{"exec after a launch timed out claims a new one", api.OpExec, staleLaunch(), nil,
			want{queuedSeq: 7, launch: true, writesDoc: true}},
		{"exec of a destroyed session revives it, its sequence going on", api.OpExec, destroyed, nil,
			want{queuedSeq: 9, launch: true, writesDoc: true}},
		{"any request of a session still being purged purges first", api.OpExec, purging, nil,
			want{queuedSeq: -1, purgeFirst: true}},
		{"get of a missing session is NOT_FOUND", api.OpSessionGet, nil, nil,
			want{status: api.StatusError, code: api.CodeNotFound, queuedSeq: -1}},
		{"get of a destroyed session is NOT_FOUND and does not revive it", api.OpSessionGet, purging, nil,
			want{status: api.StatusError, code: api.CodeNotFound, queuedSeq: -1}},
		{"get of an active session answers without waking it", api.OpSessionGet, active(), nil,
			want{status: api.StatusOK, queuedSeq: -1, sessionOut: StatusActive}},
		{"create of a new session answers and warms a host", api.OpSessionCreate, nil, nil,
			want{status: api.StatusOK, queuedSeq: -1, launch: true, writesDoc: true, sessionOut: StatusActive}},
		{"create of a hosted session answers and claims nothing", api.OpSessionCreate, active(), live,
			want{status: api.StatusOK, queuedSeq: -1, writesDoc: true, sessionOut: StatusActive}},
		{"destroy of a missing session is NOT_FOUND", api.OpSessionDestroy, nil, nil,
			want{status: api.StatusError, code: api.CodeNotFound, queuedSeq: -1}},
		{"destroy of a session no host runs is done at once", api.OpSessionDestroy, active(), nil,
			want{status: api.StatusOK, queuedSeq: -1, destroy: true, sessionOut: StatusDestroyed}},
		{"destroy of a session whose launch waits in line is done at once", api.OpSessionDestroy, waitingLaunch(), nil,
			want{status: api.StatusOK, queuedSeq: -1, destroy: true, sessionOut: StatusDestroyed}},
		{"destroy of a session whose lapsed host is not recovered is done at once", api.OpSessionDestroy, active(), lapsed,
			want{status: api.StatusOK, queuedSeq: -1, destroy: true, sessionOut: StatusDestroyed}},
		{"destroy of a hosted session waits its turn in the inbox", api.OpSessionDestroy, active(), live,
			want{queuedSeq: 7, writesDoc: true}},
		{"destroy of a session whose host is starting waits its turn", api.OpSessionDestroy, launching(), nil,
			want{queuedSeq: 7, writesDoc: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &api.Request{RequestID: "r1", SessionID: "s1", Op: tc.op}
			var before *Doc
			if tc.doc != nil {
				cp := *tc.doc
				before = &cp
			}
			dec, err := rules.Enqueue(EnqueueInput{Req: req, Raw: []byte(`{"x":1}`), Traceparent: "tp", Doc: tc.doc, Lease: tc.lease,
				Shown: Shown{Cwd: "/w", Queued: 2}, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			if tc.doc != nil && (tc.doc.NextSeq != before.NextSeq || tc.doc.Status != before.Status || tc.doc.Launch != before.Launch) {
				t.Errorf("the decision changed the document it was given: %+v, was %+v", tc.doc, before)
			}
			w := tc.want
			if dec.PurgeFirst != w.purgeFirst || dec.Destroy != w.destroy || (dec.Launch != nil) != w.launch || (dec.Doc != nil) != w.writesDoc {
				t.Fatalf("decision = purgeFirst %v destroy %v launch %v writesDoc %v, want %+v",
					dec.PurgeFirst, dec.Destroy, dec.Launch != nil, dec.Doc != nil, w)
			}
			if w.purgeFirst {
				return
			}
			if dec.Item.RequestID != "r1" || dec.Item.SessionID != "s1" || dec.Item.Traceparent != "tp" || !dec.Item.AcceptedAt.Equal(now) || !dec.Item.ExpireAt.Equal(now.Add(rules.TTL)) {
				t.Errorf("item = %+v", dec.Item)
			}
			if w.launch && (dec.Doc.Launch != dec.Launch || dec.Launch.ID == "" || !dec.Launch.RequestedAt.Equal(now)) {
				t.Errorf("the claim %+v is not the one recorded in the document %+v", dec.Launch, dec.Doc.Launch)
			}
			if w.writesDoc && (dec.Doc.Status != StatusActive || !dec.Doc.UpdatedAt.Equal(now) || !dec.Doc.ExpireAt.Equal(now.Add(rules.TTL))) {
				t.Errorf("written document %+v is not active and touched now", dec.Doc)
			}
			if w.queuedSeq >= 0 {
				if dec.Answer != nil || dec.Item.Status != ItemQueued || dec.Item.Seq != w.queuedSeq || dec.Doc.NextSeq != w.queuedSeq+1 {
					t.Fatalf("want queued with seq %d (next %d): answer %v, item %+v, doc %+v", w.queuedSeq, w.queuedSeq+1, dec.Answer, dec.Item, dec.Doc)
				}
				return
			}
			if dec.Answer == nil || dec.Item.Status != ItemDone || dec.Item.Published {
				t.Fatalf("want answered and recorded unpublished: answer %v, item %+v", dec.Answer, dec.Item)
			}
			var recorded api.Completion
			if err := json.Unmarshal([]byte(dec.Item.Completion), &recorded); err != nil {
				t.Fatal(err)
			}
			if recorded.Status != w.status || (w.code != "" && (recorded.Error == nil || recorded.Error.Code != w.code)) {
				t.Errorf("answer = %s %+v, want %s %s", recorded.Status, recorded.Error, w.status, w.code)
			}
			if w.sessionOut != "" {
				if recorded.Session == nil || recorded.Session.Status != w.sessionOut || recorded.Session.Cwd != "/w" || recorded.Session.Queued != 2 {
					t.Errorf("answer shows session %+v, want status %s, cwd /w, 2 queued", recorded.Session, w.sessionOut)
				}
				if tc.lease == live && recorded.Session.Host != live.Execution {
					t.Errorf("answer shows host %q, want %q", recorded.Session.Host, live.Execution)
				}
			}
		})
	}
}

func TestAcquireDecision(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	doc := &Doc{Status: StatusActive, Launch: &Launch{ID: "l1", RequestedAt: now.Add(-time.Second)}}
	for _, tc := range []struct {
		name       string
		doc        *Doc
		lease      *LeaseDoc
		err        error
		epoch      int64
		unreleased bool
	}{
		{"no session", nil, nil, ErrNotFound, 0, false},
		{"destroyed session", &Doc{Status: StatusDestroyed}, nil, ErrDestroyed, 0, false},
		{"live host holds it", doc, &LeaseDoc{Epoch: 4, Execution: "other", LeaseExpires: now.Add(time.Second)}, ErrLeaseHeld, 0, false},
		{"lapsed host not recovered still holds it", doc, &LeaseDoc{Epoch: 4, Execution: "other", LeaseExpires: now.Add(-time.Second)}, ErrLeaseHeld, 0, false},
		{"first host", doc, nil, nil, 1, false},
		{"after a clean release", doc, &LeaseDoc{Epoch: 4}, nil, 5, false},
		{"after a recovery", doc, &LeaseDoc{Epoch: 5, Abandoned: true}, nil, 6, true},
		{"the same execution again", doc, &LeaseDoc{Epoch: 4, Execution: "me", LeaseExpires: now.Add(time.Second)}, nil, 5, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ld, fd, lease, err := rules.Acquire("s1", "me", 15*time.Second, tc.doc, tc.lease, &StateDoc{Shell: NewShell("/w", nil)}, now)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if lease.Epoch != tc.epoch || ld.Epoch != tc.epoch || fd.Epoch != tc.epoch || fd.Host != "me" || ld.Execution != "me" || lease.Unreleased != tc.unreleased {
				t.Errorf("lease %+v, doc %+v, fence %+v; want epoch %d unreleased %v", lease, ld, fd, tc.epoch, tc.unreleased)
			}
			if ld.LaunchID != "l1" || !lease.LaunchRequestedAt.Equal(doc.Launch.RequestedAt) || lease.Shell.Cwd != "/w" || !Fenced(&fd, lease) {
				t.Errorf("lease %+v does not answer launch l1 with the session's shell, or is not fenced by %+v", lease, fd)
			}
		})
	}
}

func TestRecoverDecisionAndHostLost(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, _, ok := rules.Recover(&LeaseDoc{Epoch: 2, Execution: "e", LeaseExpires: now.Add(time.Second)}, now); ok {
		t.Error("a live host was recovered")
	}
	if _, _, ok := rules.Recover(&LeaseDoc{Epoch: 2}, now); ok {
		t.Error("a session without a host was recovered")
	}
	next, fd, ok := rules.Recover(&LeaseDoc{Epoch: 2, Execution: "e", LaunchID: "l", LeaseExpires: now.Add(-time.Second)}, now)
	if !ok || next.Epoch != 3 || next.Held() || !next.Abandoned || next.LaunchID != "l" || fd.Epoch != 3 || fd.Host != "" {
		t.Errorf("recovery = %+v %+v %v", next, fd, ok)
	}
	old := Item{RequestID: "r", SessionID: "s", Op: "exec", Status: ItemRunning, Epoch: 2, Execution: "e"}
	if c := HostLost(&old, 3); c == nil || c.Error.Code != api.CodeHostLost || c.ExecutionID != "e" {
		t.Errorf("HostLost of a request of the old host = %+v", c)
	}
	cur := old
	cur.Epoch = 3
	if c := HostLost(&cur, 3); c != nil {
		t.Errorf("a request of the current host was answered %+v", c)
	}
	u, err := Settle(&old, HostLost(&old, 3), now)
	if err != nil || old.Status != ItemDone || !old.FinishedAt.Equal(now) || string(u.Completion) != old.Completion {
		t.Errorf("settled item %+v, %v", old, err)
	}
}

func TestStartAndFinishOnce(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	lease := &Lease{SessionID: "s", Execution: "e", Epoch: 4}
	it := &Item{Status: ItemQueued}
	if !StartItem(it, lease, now) || it.Status != ItemRunning || it.Epoch != 4 || it.Execution != "e" {
		t.Fatalf("start = %+v", it)
	}
	if StartItem(it, lease, now) {
		t.Error("a running item started twice")
	}
	if StartItem(nil, lease, now) {
		t.Error("a missing item started")
	}
	got, first := FinishItem(it, []byte("one"), now)
	if !first || string(got) != "one" || it.Status != ItemDone {
		t.Fatalf("finish = %q %v %+v", got, first, it)
	}
	if got, first := FinishItem(it, []byte("two"), now); first || string(got) != "one" {
		t.Errorf("a second finish gave %q (first %v), want the first completion", got, first)
	}
}
