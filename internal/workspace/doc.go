// Package workspace checkpoints a session's workspace directory and
// restores it, so that a session's files outlive the host process that
// serves it.
//
// Hosts checkpoint incrementally (Snapshot, RestoreSnapshot): each file's
// content is a blob named by its SHA-256, and a Manifest lists the tree in
// pages that are blobs too. A snapshot reads only the files whose size,
// mtime, inode or ctime changed since the previous manifest (a write
// changes the ctime even when a command resets the mtime; a rename
// changes it too), stores only the blobs that manifest does not
// reference, and encodes only the pages whose entries changed, keeping
// the others by name; pages are cut where a path's hash says, so a change
// disturbs its page and at most a neighbour. What it cannot avoid is a
// stat of every entry, each by its name in its open parent directory:
// in a workspace of 200,000 files that walk is most of its cost.
//
// Small files (up to 256 KiB) are not blobs of their own: a snapshot appends the new ones to a pack
// (a blob of about 1 MiB, named by its SHA-256 too) and the manifest
// places each in its pack, so that a workspace of 200,000 small files is a
// few hundred objects, each a round trip, not 200,000; a restore reads
// each pack once. Content is still found by its hash: a file whose content
// is stored already, in a pack or a blob of its own, is not stored again.
// A pack lives while one file of a manifest is in it, so deleted small
// files keep their bytes in a pack that still holds a live one. Where
// blobs live is the caller's
// (the Blobs interface); which blobs a manifest needs is Manifest.Blobs,
// from which the caller collects garbage.
//
// The single archive below (Checkpoint, Restore) is the format hosts wrote
// before; they still restore it.
//
// The archive is a tar stream compressed with gzip at its fastest level
// (see Level), written to any io.Writer (a Cloud Storage object writer)
// and read from any io.Reader. Both directions stream: memory does not
// grow with file sizes or the size of the tree. Only the standard library
// is used; klauspost/compress would roughly double gzip throughput and
// could be swapped in behind the same API if checkpoints become the
// bottleneck.
//
// It keeps regular files (content, permission bits, mtime), directories
// (permission bits) and symlinks (as links). It leaves out sockets, named
// pipes and devices, which cannot be carried to another host, and says so
// in Stats. Owners are not kept: restored files belong to the user that
// restores them.
//
// # What this package never does
//
// Checkpoint never follows a symlink: a link in the workspace is archived
// as a link, whatever it points to. Restore treats the archive as hostile,
// because the commands of a session wrote the tree: it never writes
// outside its target directory, never writes through a symlink (not even
// one the archive itself created inside the target), and never creates
// hard links, devices or FIFOs; it refuses such an archive with an error
// naming the entry. Restore never merges into a directory that holds
// anything. Neither function knows where the archive is stored.
package workspace
