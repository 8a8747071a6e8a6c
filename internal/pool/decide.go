package pool

import "time"

// MemberState is a pool member (launching or idle) as a refill decision
// sees it.
type MemberState struct {
	ID, Execution string
	// Launching is true until the member registers idle.
	Launching bool
	// LaunchedAt is when it was launched; Expires, for an idle member,
	// when it stops being claimable unless renewed.
	LaunchedAt, Expires time.Time
}

// Decision is what one refill does.
type Decision struct {
	// Desired is the number of members, idle and launching, the policy
	// asks for.
	Desired int
	// Remove are the members that died: idle ones past their expiry
	// (they stopped renewing), launching ones past the launch timeout
	// (they never registered). Their records go and their executions are
	// cancelled.
	Remove []MemberState
	// Launch is how many members to start.
	Launch int
}

// Decide is the refill decision, a pure function of the policy, the time,
// the pool's launching and idle members, the recent arrivals of new
// sessions (claims and misses) and the time a member takes to register:
// remove the dead, then launch the shortfall between what the policy
// desires and the live members, within Max.
func Decide(p Policy, now time.Time, members []MemberState, arrivals []time.Time, ready time.Duration) Decision {
	p = p.withDefaults()
	if !p.Enabled() {
		return Decision{}
	}
	d := Decision{Desired: p.Desired(now, arrivals, ready)}
	live := 0
	for _, m := range members {
		if m.Launching && now.Sub(m.LaunchedAt) < p.LaunchTimeout || !m.Launching && m.Expires.After(now) {
			live++
			continue
		}
		d.Remove = append(d.Remove, m)
	}
	d.Launch = max(min(d.Desired, p.Max)-live, 0)
	return d
}
