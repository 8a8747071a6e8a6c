package pool

import (
	"fmt"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	idle := func(id string, expiresIn time.Duration) MemberState {
		return MemberState{ID: id, Execution: "e-" + id, LaunchedAt: now.Add(-time.Minute), Expires: now.Add(expiresIn)}
	}
	launching := func(id string, ago time.Duration) MemberState {
		return MemberState{ID: id, Execution: "e-" + id, Launching: true, LaunchedAt: now.Add(-ago)}
	}
	everySecond := func(n int) []time.Time { // n arrivals, one a second, the last just now
		var ts []time.Time
		for i := range n {
			ts = append(ts, now.Add(-time.Duration(i)*time.Second))
		}
		return ts
	}
	for _, tc := range []struct {
		name     string
		policy   Policy
		members  []MemberState
		arrivals []time.Time
		ready    time.Duration
		launch   int
		remove   []string
	}{
		{"off", Policy{}, nil, everySecond(60), 5 * time.Second, 0, nil},
		{"empty pool launches its minimum", Policy{Min: 2}, nil, nil, 5 * time.Second, 2, nil},
		{"launching members count", Policy{Min: 2}, []MemberState{launching("a", time.Second), idle("b", 10*time.Second)}, nil, 5 * time.Second, 0, nil},
		{"an expired idle member is removed and replaced", Policy{Min: 2}, []MemberState{idle("a", -time.Second), idle("b", 10*time.Second)}, nil, 5 * time.Second, 1, []string{"a"}},
		{"a member that never registered is removed and replaced", Policy{Min: 1, LaunchTimeout: time.Minute}, []MemberState{launching("a", 2*time.Minute)}, nil, 5 * time.Second, 1, []string{"a"}},
		{"more members than desired: none launched, none retired (they leave when idle for long)", Policy{Min: 1}, []MemberState{idle("a", time.Minute), idle("b", time.Minute), idle("c", time.Minute)}, nil, 5 * time.Second, 0, nil},
		// One a second (60 over the 59 s they span), 6 s to start: about 6
		// start to replace the claimed, and half as many again wait idle:
		// ⌈60/59 × 6 × 1.5⌉ = 10.
		{"steady arrivals, default peak", Policy{Min: 2, Target: 4, Max: 24}, nil, everySecond(60), 6 * time.Second, 10, nil},
		// With peak 4: 6 starting and 24 idle, within the maximum of 24.
		{"steady arrivals, peak 4", Policy{Min: 2, Target: 4, Max: 24, Peak: 4}, nil, everySecond(60), 6 * time.Second, 24, nil},
		{"peak 4, half the pool there", Policy{Min: 2, Target: 4, Max: 24, Peak: 4}, []MemberState{idle("a", time.Minute), launching("b", time.Second)}, everySecond(60), 6 * time.Second, 22, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.policy, now, tc.members, tc.arrivals, tc.ready)
			var removed []string
			for _, m := range d.Remove {
				removed = append(removed, m.ID)
			}
			if d.Launch != tc.launch || fmt.Sprint(removed) != fmt.Sprint(tc.remove) {
				t.Errorf("Decide launches %d and removes %v (desired %d); want %d and %v", d.Launch, removed, d.Desired, tc.launch, tc.remove)
			}
		})
	}
}

// simulateBurst runs the refill decision against new sessions arriving one
// a second for two minutes, then 20 at four a second, members taking ready
// to start; a refill runs at each arrival (as the dispatcher's claim asks
// for one) and every 10 s. It returns how many of the burst's sessions
// found an idle member.
func simulateBurst(policy Policy, ready time.Duration) int {
	start := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	type member struct {
		launched time.Time
		claimed  bool
	}
	var members []*member
	var arrivals []time.Time
	refill := func(now time.Time) {
		var states []MemberState
		for _, m := range members {
			if m.claimed {
				continue
			}
			if now.Sub(m.launched) < ready {
				states = append(states, MemberState{Launching: true, LaunchedAt: m.launched})
			} else {
				states = append(states, MemberState{LaunchedAt: m.launched, Expires: now.Add(time.Minute)})
			}
		}
		for range Decide(policy, now, states, arrivals, ready).Launch {
			members = append(members, &member{launched: now})
		}
	}
	claim := func(now time.Time) bool {
		for _, m := range members {
			if !m.claimed && now.Sub(m.launched) >= ready {
				m.claimed = true
				return true
			}
		}
		return false
	}
	// The pool holds its minimum when sessions begin to arrive.
	refill(start.Add(-ready - time.Second))
	var times []time.Time
	for i := range 120 {
		times = append(times, start.Add(time.Duration(i)*time.Second))
	}
	burstAt := start.Add(120 * time.Second)
	for i := range 20 {
		times = append(times, burstAt.Add(time.Duration(i)*250*time.Millisecond))
	}
	hits := 0
	lastTick := start
	for _, now := range times {
		for lastTick.Add(10 * time.Second).Before(now) {
			lastTick = lastTick.Add(10 * time.Second)
			refill(lastTick)
		}
		hit := claim(now)
		if hit && !now.Before(burstAt) {
			hits++
		}
		arrivals = append(arrivals, now)
		refill(now)
	}
	return hits
}

// TestBurstServedFromThePool: after two minutes of one new session a
// second, a burst of 20 at four a second, members taking 6 s to start (the
// bench's simulated 5 s cold start and the host's own start). With the
// default peak the pool holds about 3 idle members and serves under half of
// the burst; with peak 4 it serves at least 19 of 20 (95 %).
func TestBurstServedFromThePool(t *testing.T) {
	base := Policy{Min: 2, Target: 4, Max: 24}
	defaultHits := simulateBurst(base, 6*time.Second)
	peak := base
	peak.Peak = 4
	peakHits := simulateBurst(peak, 6*time.Second)
	t.Logf("burst hits: default peak %d of 20, peak 4 %d of 20", defaultHits, peakHits)
	if peakHits < 19 {
		t.Errorf("with peak 4, %d of 20 burst sessions found an idle member; want at least 19", peakHits)
	}
	if defaultHits >= 19 {
		t.Errorf("with the default peak, %d of 20 found one: the scenario no longer tells the policies apart", defaultHits)
	}
	// A slower start (10 s) with the same maximum.
	if slow := simulateBurst(peak, 10*time.Second); slow < 19 {
		t.Logf("with 10 s starts, peak 4 served %d of 20 (the maximum of 24 bounds it)", slow)
	}
}
