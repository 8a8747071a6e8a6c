// Package session owns a session's durable state: its document and inbox in
// Firestore, and its objects in Cloud Storage (checkpoints and full outputs).
//
// Every state change is a Firestore transaction or a commit conditioned on
// what was read, so that the dispatcher, the session's host and the reaper
// can race without losing or repeating a request:
//
//   - The dispatcher enqueues a request: one commit, conditioned on the
//     session document it read and holding no lock, de-duplicates it by
//     request_id (the inbox document's id, created only if missing), gives
//     it the session's next sequence number, and claims a host launch when
//     the session has no live host and no launch in flight (appendItem; a
//     destroy is a transaction, which fences the host).
//   - A host takes the session's lease, which raises the session's epoch.
//     Every later write of that host checks that the epoch is still its own
//     (fencing, against the fence document, which renewals do not touch): a
//     host that lost its lease cannot write anything. A renewal is one write
//     to the lease document. A lapsed lease passes to no other host until
//     the reaper recovered it (RecoverHost), after the old execution ended.
//   - A host starts a request by marking it running in the lease document
//     (LeaseDoc.Running), the one write its Start makes, and records its
//     completion in the inbox document before publishing it (outbox), so a
//     lost publish is found and repeated, and a request that was running
//     when its host died is answered HOST_LOST, never re-run. The lease
//     document also tracks that publish (LeaseDoc.Publishing): the host's
//     next write of it notes the completion published.
//   - A host leaves only in a transaction that finds no queued request, so a
//     request that arrives while it leaves is either served by it or sees no
//     host and gets a new one.
//
// What each change decides is apart from how it is stored (decide.go):
// pure functions of what a transaction read and the time (Rules.Enqueue,
// Rules.Acquire, Rules.Recover, StartItem, FinishItem, Relaunch, ...), so
// that policy is unit-tested without a cloud, and so that the in-memory
// store of package memstore, which consumers' unit tests use, decides
// exactly as the Firestore store does. Package storetest is the contract
// both pass. Each consumer declares the part of the store it uses (the
// Store interfaces of packages dispatcher, host, reaper, launch, pool).
//
// The package never runs user commands and never publishes to Pub/Sub: it
// returns what must be published, and callers publish.
package session
