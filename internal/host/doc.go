// Package host is the session host: the program a Cloud Run Jobs execution
// runs for one session. It takes the session's lease, restores the session's
// last checkpoint, runs the session's inbox in order, records each completion
// before publishing it, and, once idle, checkpoints the workspace, gives the
// lease up and exits.
//
// A host acts only while its lease is current: every write it makes is
// fenced by the lease's epoch, and when a renewal finds the lease gone the
// host stops at once, killing what it runs and writing nothing more.
//
// The host never decides what a request means beyond running it, and never
// launches other hosts.
package host
