package session

import (
	"time"
	"unicode/utf8"
)

// Collection and document names in Firestore.
const (
	sessionsCollection = "sessions"
	inboxCollection    = "inbox"
	// runtimeCollection holds, per session, the host lease and the state
	// hosts keep. They live apart from the session document so that a
	// host's frequent writes (lease renewals, shell state after every
	// command) never conflict with the dispatcher's enqueueing.
	runtimeCollection = "runtime"
	leaseDoc          = "lease"
	stateDoc          = "state"
	// fenceDoc holds the epoch that a host's writes are checked against.
	// It is apart from the lease document, which the host renews, so
	// that a renewal never waits for the read locks that the host's own
	// fenced transactions hold (Firestore's pessimistic concurrency).
	fenceDoc = "fence"
)

// Session statuses.
const (
	StatusActive    = "active"
	StatusDestroyed = "destroyed"
)

// Inbox item statuses: queued → done. A request that runs stays queued in
// its item while it runs: its Start marks it running in the lease document
// (LeaseDoc.Running). Items that hosts before that change started say
// running (they are still answered HOST_LOST when their host is lost).
const (
	ItemQueued  = "queued"
	ItemRunning = "running"
	ItemDone    = "done"
)

// Doc is the session document sessions/{session_id}, which the dispatcher
// writes.
type Doc struct {
	Status    string    `firestore:"status"`
	CreatedAt time.Time `firestore:"created_at"`
	// UpdatedAt is the last activity: a request accepted.
	UpdatedAt time.Time `firestore:"updated_at"`
	// ExpireAt is when an idle session is destroyed (Firestore TTL field).
	ExpireAt time.Time `firestore:"expire_at"`
	// NextSeq is the sequence number the next accepted request gets.
	NextSeq int64 `firestore:"next_seq"`
	// Launch is the last host launch claimed, or nil. It is in flight while
	// no host has taken the lease for it and it is recent.
	Launch *Launch `firestore:"launch"`
	// LaunchAttempts counts launches since AttemptsSince; the reaper starts
	// counting afresh once a request finished after AttemptsSince, so that a
	// session whose hosts keep dying is given up on.
	LaunchAttempts int       `firestore:"launch_attempts"`
	AttemptsSince  time.Time `firestore:"attempts_since"`
	// PurgePending marks a destroyed session whose Cloud Storage objects
	// may not all be deleted yet.
	PurgePending bool `firestore:"purge_pending"`
	// HostGoneAt is when the session last lost its host other than by a
	// destroy: the host released its lease (Release), or the reaper took
	// the session from a lapsed one (RecoverHost). Its write is what
	// tells an enqueue that saw the host, and whose commit is conditioned
	// on this document's update time, that the host is gone (appendItem).
	HostGoneAt time.Time `firestore:"host_gone_at"`
}

// Launch is a host launch claimed by the dispatcher or the reaper.
type Launch struct {
	ID          string    `firestore:"id"`
	RequestedAt time.Time `firestore:"requested_at"`
	// Execution is filled in once the Cloud Run execution exists.
	Execution string `firestore:"execution"`
	// Attempts is the session's LaunchAttempts with this launch.
	Attempts int `firestore:"attempts"`
	// WaitingSince is set while the launch waits for a host it cannot have
	// yet (the deployment's most running hosts are running, or Cloud Run
	// refuses launches): the session's place in line is by this time.
	WaitingSince time.Time `firestore:"waiting_since"`
	// WaitingFor says why it waits: WaitMaxHosts or WaitRefused.
	WaitingFor string `firestore:"waiting_for"`
}

// Why a launch waits (Launch.WaitingFor).
const (
	WaitMaxHosts = "max_hosts"
	WaitRefused  = "launch_refused"
)

// LeaseDoc is sessions/{session_id}/runtime/lease: the session's host, if
// any, and the fencing epoch.
type LeaseDoc struct {
	// Epoch rises with every lease taken and every host taken away; a host
	// acts only while the epoch is the one its lease carries.
	Epoch int64 `firestore:"epoch"`
	// Execution hosts the session while LeaseExpires is in the future; it
	// is empty when the session has no host.
	Execution    string    `firestore:"execution"`
	LeaseExpires time.Time `firestore:"lease_expires"`
	StartedAt    time.Time `firestore:"started_at"`
	// LaunchID is the launch the host answered.
	LaunchID string `firestore:"launch_id"`
	// Abandoned is set when the reaper took the session from a host that
	// never released it: that host may have left uploads that no
	// checkpoint names, which the next host sweeps (Lease.Unreleased).
	Abandoned bool `firestore:"abandoned,omitempty"`
	// Running marks the requests that hosts of the session started and
	// did not finish, by request id. A Start writes only this, with the
	// lease's renewal that fences it, and not the inbox item, which stays
	// queued until its Finish records the completion and drops the mark.
	// A mark of an earlier epoch than the lease's is an orphan: its host
	// is gone, and the request is answered HOST_LOST, never run again
	// (RecoverHost, FailOrphans). Acquire and Release keep the marks; a
	// recovery and a destroy, which answer the requests, clear them.
	Running map[string]RunningItem `firestore:"running,omitempty"`
	// Publishing holds the completions that hosts of the session recorded
	// and did not yet find published, by request id, with when each was
	// recorded: a host's Finish adds its completion here, in the commit
	// that records it, and a later write of the lease (its next Start,
	// Finish or renewal) drops what it published since, so that a publish
	// costs no write of its own. PublishDue is the earliest of those times,
	// absent when there is none: the reaper republishes what is due past
	// its cutoff (Unpublished, ClearPublishing). Every rewrite of the lease
	// document (Acquire, RecoverHost, a destroy) keeps both.
	Publishing map[string]time.Time `firestore:"publishing,omitempty"`
	PublishDue time.Time            `firestore:"publish_due,omitempty"`
	ExpireAt   time.Time            `firestore:"expire_at"`
}

// RunningItem is a mark of LeaseDoc.Running: who started the request and
// when.
type RunningItem struct {
	Seq       int64     `firestore:"seq"`
	Epoch     int64     `firestore:"epoch"`
	Execution string    `firestore:"execution"`
	StartedAt time.Time `firestore:"started_at"`
}

// FenceDoc is sessions/{session_id}/runtime/fence: the epoch and host that
// the lease document last gave the session to, written with it by every
// change of holder (never by a renewal). Its fields are named apart from
// the lease's, so that queries of the runtime documents by lease_expires
// or execution never find it.
type FenceDoc struct {
	Epoch    int64     `firestore:"epoch"`
	Host     string    `firestore:"host"`
	ExpireAt time.Time `firestore:"expire_at"`
}

// StateDoc is sessions/{session_id}/runtime/state: what hosts keep of the
// session between them.
type StateDoc struct {
	// Shell is the shell state after the last finished command.
	Shell Shell `firestore:"shell"`
	// Checkpoint is the last workspace checkpoint, or nil.
	Checkpoint *Checkpoint `firestore:"checkpoint"`
	ExpireAt   time.Time   `firestore:"expire_at"`
}

// Checkpoint names the object that holds a workspace checkpoint.
type Checkpoint struct {
	// Object holds the checkpoint: a gzip tar archive of the workspace
	// when Format is empty (what hosts wrote before), the manifest of an
	// incremental checkpoint when it is FormatManifest.
	Object     string    `firestore:"object"`
	Format     string    `firestore:"format"`
	Generation int64     `firestore:"generation"`
	Bytes      int64     `firestore:"bytes"`
	Epoch      int64     `firestore:"epoch"`
	CreatedAt  time.Time `firestore:"created_at"`
}

// FormatManifest marks a Checkpoint whose object is a workspace.Manifest
// over the session's blobs (BlobObject).
const FormatManifest = "manifest"

// Shell is what a shell keeps between commands. Firestore strings are
// UTF-8, while a shell's values are any bytes: values that are not valid
// UTF-8 are kept as bytes instead. Use NewShell and Values.
type Shell struct {
	Cwd      string            `firestore:"cwd"`
	CwdBytes []byte            `firestore:"cwd_bytes,omitempty"`
	Env      map[string]string `firestore:"env"`
	EnvBytes map[string][]byte `firestore:"env_bytes,omitempty"`
}

// NewShell records a shell's working directory and environment.
func NewShell(cwd string, env map[string]string) Shell {
	sh := Shell{Env: make(map[string]string, len(env))}
	if utf8.ValidString(cwd) {
		sh.Cwd = cwd
	} else {
		sh.CwdBytes = []byte(cwd)
	}
	for k, v := range env {
		if utf8.ValidString(v) {
			sh.Env[k] = v
			continue
		}
		if sh.EnvBytes == nil {
			sh.EnvBytes = map[string][]byte{}
		}
		sh.EnvBytes[k] = []byte(v)
	}
	return sh
}

// Values returns the working directory and environment NewShell recorded.
func (sh Shell) Values() (cwd string, env map[string]string) {
	cwd = sh.Cwd
	if sh.CwdBytes != nil {
		cwd = string(sh.CwdBytes)
	}
	env = make(map[string]string, len(sh.Env)+len(sh.EnvBytes))
	for k, v := range sh.Env {
		env[k] = v
	}
	for k, v := range sh.EnvBytes {
		env[k] = string(v)
	}
	return cwd, env
}

// Empty reports whether nothing was recorded.
func (sh Shell) Empty() bool {
	return sh.Cwd == "" && sh.CwdBytes == nil && len(sh.Env) == 0 && len(sh.EnvBytes) == 0
}

// Item is an inbox document sessions/{session_id}/inbox/{request_id}.
type Item struct {
	RequestID string `firestore:"request_id"`
	SessionID string `firestore:"session_id"`
	Op        string `firestore:"op"`
	Seq       int64  `firestore:"seq"`
	Status    string `firestore:"status"`
	// Request is the request's JSON as received (bytes: a rejected one
	// need not be valid UTF-8). A rejected request over
	// api.MaxRequestBytes is not kept (it could pass Firestore's 1 MiB
	// document limit, and its rejection could then never be recorded):
	// RequestBytes says how large it was.
	Request      []byte `firestore:"request"`
	RequestBytes int    `firestore:"request_bytes"`
	// Traceparent is the request's trace context, if any.
	Traceparent string    `firestore:"traceparent"`
	AcceptedAt  time.Time `firestore:"accepted_at"`
	StartedAt   time.Time `firestore:"started_at"`
	FinishedAt  time.Time `firestore:"finished_at"`
	// Epoch and Execution name the host that took the item.
	Epoch     int64  `firestore:"epoch"`
	Execution string `firestore:"execution"`
	// Completion is the completion's JSON once the item is done; every
	// publish of it sends these bytes.
	Completion string `firestore:"completion"`
	// Published marks the completion published. One that a host's Finish
	// recorded has no published field but PublishInLease: the lease
	// document tracks its publish (LeaseDoc.Publishing), and Enqueue's
	// answer to its redelivery says Published from there.
	Published      bool `firestore:"published"`
	PublishInLease bool `firestore:"publish_in_lease,omitempty"`
	// ExpireAt lets Firestore's TTL remove the item once the session's
	// retention has passed.
	ExpireAt time.Time `firestore:"expire_at"`
	// Version is the document's update time when it was read or last
	// written by this process (not stored): Start and Finish condition
	// their write on it. Zero when unknown.
	Version time.Time `firestore:"-"`
}
