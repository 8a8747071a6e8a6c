// Package files performs the file operations of a sandrun session host
// (the file.* requests) on the local file system: read, write, delete,
// stat and exists, list, find, search, replace, and the streaming ends of
// upload and download.
//
// It is plain Go over the os package. It knows nothing of Pub/Sub,
// Firestore, Cloud Storage or the api package's JSON: it takes and
// returns its own types, named after the wire contract
// (docs/design/protocol-v1-files-processes.md) so that the host's mapping
// is one line per field. Errors wrap one of ErrInvalid, ErrNotFound,
// ErrPrecondition and ErrTooLarge, which the host maps to
// INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION and RESOURCE_EXHAUSTED;
// an error wrapping none of them is the machine's (INTERNAL), or the
// context's.
//
// # Paths
//
// Every path goes through ResolvePath: a relative path is joined to the
// session's working directory (Ops.Cwd), an absolute one is kept, and both
// are cleaned. The sandbox user may touch any file the operating system
// lets it touch: the package is no jail. An empty path, a NUL byte, or
// more than MaxPathBytes is ErrInvalid.
//
// One exception: the entries of the host's own /proc directory
// (/proc/self, /proc/thread-self, /proc/PID of the host or of any of its
// threads), which hold the host's environment and memory and so its cloud
// credential, are refused with ErrPrecondition however the path reaches
// them. The check is made on the opened file, so a symlink swapped in
// between cannot get past it.
//
// # Writes
//
// A write that replaces content (Write, WriteFrom, Replace) goes to a
// temporary file in the same directory, is synced, gets the file's mode
// and is renamed over the file, so that a reader or a crash sees the old
// content or the new, never half of it. New files get 0644 and new
// parent directories 0755; an existing file keeps its mode unless one is
// given. A write to a symlink writes the file the link points to.
//
// # Memory
//
// Nothing reads a whole file into memory except Replace, which is bounded
// by MaxReplaceBytes. Read reads only the part it returns; Search streams
// each file line by line through one buffer; WriteFrom and the file that
// OpenForRead returns stream through one buffer: memory does not grow
// with the size of a file (the tests stream 500 MB).
//
// # What this package never does
//
// It never follows a symlink when deleting or listing: Delete removes a
// link, never its target, and List, Find and Search list a link below
// their root as a link and never enter it, so a link loop ends nowhere.
// (The root a request names is followed, as `ls link/` would.) It never
// runs a command or starts a process, never changes the working
// directory or any process-wide state, and never leaves a partly written
// file behind a replacing write: on any failure the temporary file is
// removed and the file is as it was.
package files
