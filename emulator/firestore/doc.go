// Package firestore is sandrun's own Firestore: an in-memory server of the
// google.firestore.v1.Firestore gRPC service that the official client
// library (cloud.google.com/go/firestore) talks to when
// FIRESTORE_EMULATOR_HOST points at it. It exists because Google's
// emulator needs a JVM and gcloud, which the local cloud does without.
//
// # What it owns
//
// Documents of any project and database, kept as a multi-version history
// (store.go): every commit is one new version with a strictly increasing,
// microsecond-precision commit time. On top of it:
//
//   - reads: BatchGetDocuments, GetDocument, ListDocuments (with missing
//     documents), ListCollectionIds, each at the latest version, at a
//     read_time, or in a transaction (reads.go);
//   - writes: Commit, BatchWrite and the single-document CreateDocument,
//     UpdateDocument and DeleteDocument, with update masks, preconditions
//     (exists, update_time), field transforms (server time, increment,
//     maximum, minimum, array union and remove), the 1 MiB document limit
//     counted by Firestore's storage-size rules, and the usual name, field
//     path and value validation (commit.go, values.go, names.go);
//   - transactions: read-write transactions lock pessimistically, as a
//     Standard-edition database does in the PESSIMISTIC concurrency mode
//     that terraform/firestore.tf sets: every document a transaction reads
//     (found or missing) and everything its queries can match is locked
//     until it commits, rolls back or expires (60 s idle, 270 s in all);
//     a write of a locked document, in a transaction or not, waits, and
//     fails with ABORTED "Transaction lock timeout." after
//     Options.LockTimeout (2 s, Google's emulator's figure); reads never
//     wait.
//     Read-only transactions read one snapshot and lock nothing
//     (transaction.go, Server.commit);
//   - limits and precision: timestamps are kept to the microsecond and
//     server timestamps to the millisecond; a string or bytes value over
//     1,048,487 bytes is refused, in Google's emulator's words (values.go);
//   - queries: RunQuery and RunAggregationQuery (COUNT, SUM, AVG) with
//     field, unary and composite (AND, OR) filters, orders with Firestore's
//     implicit orders, cursors, offset, limit, projections and collection
//     group queries, comparing values in Firestore's type order (query.go).
//     A collection group query reads the collections with its ID, not the
//     whole database; a query with an equality filter on a string, boolean
//     or null reads only the documents of its scope that an internal index
//     lists under that value (index.go), not its whole collection or
//     collection group; its result is the same either way;
//   - Listen: the watch protocol for document and query targets, with
//     resume tokens that name a store version so that a client whose stream
//     broke gets exactly the changes it missed (listen.go).
//
// # What it does not emulate
//
// Security rules and authentication (every caller is the owner), Firestore's
// indexes (no query fails for a missing index: the internal ones are
// created as queries need them),
// per-document write rate limits, Firestore's index-range locks (a query
// here locks what its filter matches), vector search (find_nearest), query explain,
// pipelines (ExecutePipeline), PartitionQuery, the Write streaming RPC,
// existence filters and bloom filters in Listen. Without Persist, stop the
// server and the data is gone; with it (persist.go), the documents as they
// last were, with their create and update times, outlive a restart, as
// Google's emulator's --export-on-exit and --import-data keep them, but
// not their history, transactions or resume tokens. Read times reach back
// only as far as Options.History. Methods not implemented answer
// Unimplemented.
//
// Each behaviour above is checked against Google's Firestore emulator by
// the package's tests (TestOfficialEmulator runs them all there); the
// differences found are in docs/reliability.md.
//
// It must never be pointed at by production code: it keeps no data safe.
package firestore
