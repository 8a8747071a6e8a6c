package calls

import (
	"slices"
	"testing"
	"time"
)

func TestLogLinksPushesToTheirCauses(t *testing.T) {
	var l Log
	l.Record(Call{Service: Firestore, Method: "Commit"}) // not kept: counted only
	l.Keep()
	t0 := time.Now()
	listenAdded := t0.Add(-time.Second)
	v1, v2 := t0.Add(-time.Hour), t0.Add(time.Millisecond)
	commit := l.RecordCommit(Call{Service: Firestore, Method: "Commit", Start: t0, End: t0.Add(time.Millisecond)}, map[string]time.Time{"c/a": v1})
	live := l.RecordChange(Call{Service: Firestore, Method: "Listen.Change"}, "c/a", v1, listenAdded)
	// A listener added after the commit sees the document in its first
	// snapshot: that change is not the commit's doing.
	first := l.RecordChange(Call{Service: Firestore, Method: "Listen.Change"}, "c/a", v1, t0.Add(time.Second))
	// A listener can hear of a commit before the commit returns and is
	// recorded; so can a subscriber of a message before its Publish.
	early := l.RecordChange(Call{Service: Firestore, Method: "Listen.Change"}, "c/a", v2, listenAdded)
	delivery := l.RecordDelivery(Call{Service: PubSub, Method: "StreamingPull.Deliver", Keys: []string{"session_id=s1"}}, "m1", "ack1")
	later := l.RecordCommit(Call{Service: Firestore, Method: "Commit", Start: t0, End: t0.Add(2 * time.Millisecond)}, map[string]time.Time{"c/a": v2, "c/b": v2})
	publish := l.RecordPublish(Call{Service: PubSub, Method: "Publish", Keys: []string{"session_id=s1"}}, []string{"m1"})
	ack := l.RecordAck(Call{Service: PubSub, Method: "Acknowledge"}, []string{"ack1"})
	runJob := l.RecordRunJob(Call{Service: CloudRun, Method: "RunJob"}, "jobs/j/executions/e1")
	l.TaskStarted("jobs/j/executions/e1")
	kept := l.Stop()

	byID := map[int64]Call{}
	for _, c := range kept {
		byID[c.ID] = c
	}
	if got := byID[live].Cause; got != commit {
		t.Errorf("a live change's cause is %d, want the commit %d", got, commit)
	}
	if got := byID[first].Cause; got != 0 {
		t.Errorf("a first-snapshot change's cause is %d, want none", got)
	}
	if got := byID[early].Cause; got != later {
		t.Errorf("a change recorded before its commit has cause %d, want the commit %d", got, later)
	}
	if got := byID[delivery].Cause; got != publish {
		t.Errorf("a delivery recorded before its publish has cause %d, want the publish %d", got, publish)
	}
	if got := byID[ack].Keys; !slices.Equal(got, []string{"session_id=s1"}) {
		t.Errorf("an ack names %v, want the delivered message's keys", got)
	}
	last := kept[len(kept)-1]
	if last.Method != "Task.Start" || last.Cause != runJob {
		t.Errorf("the task start is %+v, want one caused by the RunJob %d", last, runJob)
	}
	if n := l.Counts()["firestore/Commit"]; n != 3 {
		t.Errorf("commits counted %d, want 3 (kept or not)", n)
	}
	if len(l.Kept()) != 0 {
		t.Errorf("calls are kept after Stop")
	}
	var none *Log
	if id := none.Record(Call{}); id != 0 {
		t.Errorf("a nil log recorded a call")
	}
}
