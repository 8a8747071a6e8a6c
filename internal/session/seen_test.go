package session

import (
	"fmt"
	"testing"
)

// The store's memory of sessions stays bounded, forgetting the session it
// used least recently, and hands out copies.
func TestSeenSessionsIsBounded(t *testing.T) {
	c := newSeenSessions(3)
	for i := range 3 {
		c.put(seenSession{id: fmt.Sprint(i), doc: Doc{NextSeq: int64(i), Launch: &Launch{ID: "l"}}})
	}
	if _, ok := c.get("0"); !ok { // 0 is now the most recent
		t.Fatal("0 forgotten too early")
	}
	c.put(seenSession{id: "3"})
	if _, ok := c.get("1"); ok {
		t.Error("the least recently used session was kept beyond the bound")
	}
	for _, id := range []string{"0", "2", "3"} {
		if _, ok := c.get(id); !ok {
			t.Errorf("%s forgotten", id)
		}
	}
	if n := c.order.Len(); n != 3 || len(c.byID) != 3 {
		t.Errorf("%d sessions remembered (%d by id), want 3", n, len(c.byID))
	}
	s, _ := c.get("0")
	s.doc.Launch.ID = "changed"
	if again, _ := c.get("0"); again.doc.Launch.ID != "l" {
		t.Error("a change to a copy reached the memory")
	}
	c.forget("0")
	if _, ok := c.get("0"); ok {
		t.Error("a forgotten session is remembered")
	}
}
