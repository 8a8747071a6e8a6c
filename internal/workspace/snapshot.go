package workspace

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// Blobs stores the content-addressed objects of incremental checkpoints.
// A blob's name is the hex SHA-256 of its bytes, so every writer of a name
// writes the same bytes.
type Blobs interface {
	// Put stores the size bytes r yields under name. When r fails, the
	// blob must not be stored.
	Put(ctx context.Context, name string, size int64, r io.Reader) error
	// Get reads the blob name.
	Get(ctx context.Context, name string) (io.ReadCloser, error)
}

// Entry is one entry of a Manifest: a directory, a regular file or a
// symlink, named by its slash-separated path below the workspace root.
type Entry struct {
	Path string `json:"p"`
	// Kind is "d" (directory), "f" (regular file) or "l" (symlink).
	Kind string `json:"k"`
	// Mode holds the permission bits of a file or directory.
	Mode uint32 `json:"m,omitempty"`
	// Size, Mtime (Unix nanoseconds, to the microsecond that restoring can
	// set) and Blob (the name of the blob that
	// holds the content) describe a file.
	Size  int64  `json:"s,omitempty"`
	Mtime int64  `json:"t,omitempty"`
	Blob  string `json:"b,omitempty"`
	// Pack, when set, names the pack that holds a small file's content at
	// Offset: a blob of the content of many small files one after another,
	// and Blob is then the SHA-256 of the file's content, not a blob of
	// its own. Packs spare a workspace of many small files an object (a
	// round trip, in production tens of milliseconds) per file.
	Pack   string `json:"pk,omitempty"`
	Offset int64  `json:"o,omitempty"`
	// Link is a symlink's target, kept as it is.
	Link string `json:"l,omitempty"`
	// Ino and Ctime are what the file is on this host's disk, never
	// stored: Snapshot trusts Blob for a file whose size, mtime, inode and
	// ctime are all unchanged (a write changes the ctime even when a
	// command resets the mtime), and reads only the others.
	Ino   uint64 `json:"-"`
	Ctime int64  `json:"-"`
}

// Manifest describes one incremental checkpoint: the workspace's entries,
// parents first in lexical order, stored as pages (blobs of gzip-compressed
// JSON), whose names are stored as index pages the same way, whose names
// the manifest lists. Pages are cut where a path's hash says so, not by
// position, so that changing, adding or removing a file changes the page
// that holds it and no other (or, when its path is where a page ends,
// splits that page or joins it with the next), and index pages likewise,
// by page name.
type Manifest struct {
	Version  int      `json:"version"`
	Index    []string `json:"index"`
	Files    int64    `json:"files"`
	Dirs     int64    `json:"dirs"`
	Symlinks int64    `json:"symlinks"`
	Bytes    int64    `json:"bytes"`

	pages   []string
	entries []Entry
	// pageEnds and indexEnds say where each page ends in entries and
	// each index page in pages, so that the next Snapshot keeps a page
	// whose entries did not change without encoding it again.
	pageEnds  []int
	indexEnds []int
}

// manifestVersion is the version of the manifest format Snapshot writes:
// 2 adds packs (Entry.Pack). DecodeManifest reads version 1 too.
const manifestVersion = 2

// pageMask cuts a page after an entry whose path hash has these bits all
// zero: pages of 64 entries (a few KB) on average, and index pages of 64
// page names, so that a workspace of 200,000 files has a manifest of about
// 50 names.
const pageMask = 0x3f

// uploadWorkers bounds the blob uploads and downloads in flight: a first
// checkpoint of many small files is bound by round trips, not bandwidth.
const uploadWorkers = 16

// smallFile is the size up to which Snapshot keeps a changed file's bytes
// from hashing to uploading, instead of reading it twice, and stores them
// in a pack rather than a blob of their own.
const smallFile = 256 << 10

// packTarget is the size at which a pack being filled is stored: big
// enough that a workspace of 200,000 small files is a few hundred objects,
// small enough that the packs in flight (one per upload worker) take
// little memory, and that a file changed in a later request costs a pack
// of its own, not a rewrite of the pack it was in.
const packTarget = 1 << 20

// maxPackBytes bounds the pack RestoreSnapshot reads whole: what Snapshot
// writes (packTarget plus one small file) with room to spare, so that a
// corrupt manifest cannot take the host's memory.
const maxPackBytes = 4 << 20

// changeAttempts bounds how often Snapshot reads a file that changes
// while it is read before it leaves the file out.
const changeAttempts = 3

// ErrChanged is wrapped by the error Snapshot returns when a file changed
// between being hashed and being uploaded; taking the snapshot again
// usually succeeds.
var ErrChanged = errors.New("file changed while it was read")

// Encode returns the manifest as stored: gzip-compressed JSON.
func (m *Manifest) Encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return gzipped(b)
}

// DecodeManifest reads a manifest as Encode wrote it. Its pages are read
// by RestoreSnapshot.
func DecodeManifest(data []byte) (*Manifest, error) {
	b, err := gunzipped(data)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if m.Version < 1 || m.Version > manifestVersion {
		return nil, fmt.Errorf("manifest version %d: this host reads versions 1 to %d", m.Version, manifestVersion)
	}
	return &m, nil
}

// Blobs returns the names of every blob the manifest needs: its pages, its
// files' content and the packs that hold some. It is complete only for a
// manifest that Snapshot returned or RestoreSnapshot loaded.
func (m *Manifest) Blobs() map[string]bool {
	names := make(map[string]bool, len(m.Index)+len(m.pages)+len(m.entries))
	for _, p := range slices.Concat(m.Index, m.pages) {
		names[p] = true
	}
	for _, e := range m.entries {
		if e.Pack != "" {
			names[e.Pack] = true
		} else if e.Blob != "" {
			names[e.Blob] = true
		}
	}
	return names
}

// SameAs reports whether two manifests describe the same tree.
func (m *Manifest) SameAs(o *Manifest) bool {
	return m != nil && o != nil && slices.Equal(m.Index, o.Index)
}

// SnapshotStats says what a Snapshot found and what it uploaded.
type SnapshotStats struct {
	Stats
	// Hashed counts the bytes of files read because they changed since
	// the previous manifest (or were new).
	Hashed int64
	// Uploaded counts the bytes of blobs stored: new file content and new
	// pages.
	Uploaded      int64
	UploadedBlobs int64
	// EncodedPages counts the manifest pages and index pages encoded:
	// new or changed ones, not those kept from the previous manifest.
	EncodedPages int64
}

// Snapshot checkpoints the tree under dir incrementally against prev (nil
// for the first): it walks the tree, reads only the files whose size,
// mtime, inode or ctime differ from prev's, stores the blobs that prev
// does not have, and returns the new manifest, which the caller stores and
// points the session at. It keeps what Checkpoint keeps (files with their
// permission bits and mtime, directories, empty ones included, with their
// permission bits, symlinks as links) and skips what Checkpoint skips.
//
// A file that keeps changing while it is read (changeAttempts times) is
// left out and reported in Stats.Changed and Stats.Skipped.
//
// storeManifest, when not nil, is handed the new manifest as soon as its
// pages are named and runs beside the uploads of the blobs and pages, so
// that a caller that stores the manifest waits for one round of uploads,
// not two; Snapshot returns once it and the uploads are done. It decides
// itself whether the manifest needs storing (SameAs prev). Its object is
// stored before all the blobs it names may be: it must not become the
// session's checkpoint unless Snapshot succeeds.
func Snapshot(ctx context.Context, dir string, prev *Manifest, blobs Blobs, storeManifest func(context.Context, *Manifest) error) (*Manifest, SnapshotStats, error) {
	var st SnapshotStats
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, st, fmt.Errorf("open workspace %s: %w", dir, err)
	}
	defer root.Close()
	known := map[string]location{}
	if prev != nil {
		for name := range prev.Blobs() {
			known[name] = location{}
		}
		for i := range prev.entries {
			e := &prev.entries[i]
			if e.Pack != "" {
				known[e.Blob] = location{pack: e.Pack, off: e.Offset}
			}
		}
	}
	s := snapshotter{ctx: ctx, root: root, blobs: blobs, stats: &st, known: known}
	if prev != nil {
		s.prev = prev.entries
	}
	s.up = newUploader(ctx, blobs, &st)
	err = walk(ctx, root, &st.Stats, func(ent walkEntry) error {
		e, ok, err := s.entry(ent)
		if ok {
			s.add(e)
		}
		return err
	})
	s.storePack()
	// Pages upload beside the files' blobs: a request waits for one round
	// of uploads, not for two.
	m := &Manifest{Version: manifestVersion, entries: s.entries, Files: st.Files, Dirs: st.Dirs, Symlinks: st.Symlinks, Bytes: st.Bytes}
	if err == nil {
		err = s.storePages(m, prev)
	}
	var stored sync.WaitGroup
	var storeErr error
	if err == nil && storeManifest != nil {
		stored.Go(func() { storeErr = storeManifest(ctx, m) })
	}
	werr := s.up.wait()
	stored.Wait()
	if err == nil {
		err = cmp.Or(werr, storeErr)
	}
	if err != nil {
		return nil, st, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	return m, st, nil
}

type snapshotter struct {
	ctx   context.Context
	root  *os.Root
	blobs Blobs
	stats *SnapshotStats
	// known says where content stored already is, by its SHA-256: prev's
	// and this snapshot's blobs, and the content in packs.
	known map[string]location
	// prev holds the previous manifest's entries, in the order of the
	// walk, and next the first of them the walk has not passed.
	prev    []Entry
	next    int
	up      *uploader
	entries []Entry
	pack    pack
}

// location is where stored content is: a blob of its own (pack empty), or
// at off in a pack, which has no name yet while it is being filled
// (pending).
type location struct {
	pack    string
	off     int64
	pending bool
}

// pack is the pack being filled: the content of the small files, the
// hashes of that content, and the entries (indexes into
// snapshotter.entries) that point into it.
type pack struct {
	data    []byte
	hashes  []string
	members []int
}

// add appends an entry to the manifest; an entry whose content is in the
// pack being filled is named to it when the pack is stored, which happens
// once the pack is full.
func (s *snapshotter) add(e Entry) {
	if e.Kind == "f" && s.known[e.Blob].pending {
		s.pack.members = append(s.pack.members, len(s.entries))
	}
	s.entries = append(s.entries, e)
	if len(s.pack.data) >= packTarget {
		s.storePack()
	}
}

// storePack names the pack being filled by its content, points its
// entries at it, queues its upload and starts a new one.
func (s *snapshotter) storePack() {
	p := s.pack
	if len(p.hashes) == 0 {
		return
	}
	name := blobName(p.data)
	// Stored already as a blob of its own (an identical pack, or content
	// identical to the whole pack; a pack of one file is named by that
	// file's hash, pending in known until now).
	loc, known := s.known[name]
	stored := known && loc.pack == "" && !loc.pending
	for _, i := range p.members {
		s.entries[i].Pack = name
	}
	for _, h := range p.hashes {
		s.known[h] = location{pack: name, off: s.known[h].off}
	}
	s.known[name] = location{}
	if !stored {
		s.up.putData("pack", name, p.data)
	}
	s.pack = pack{}
}

// entry describes one walked entry; ok is false when it is left out.
func (s *snapshotter) entry(ent walkEntry) (e Entry, ok bool, err error) {
	switch typ := ent.info.Mode().Type(); {
	case typ.IsDir():
		s.stats.Dirs++
		return Entry{Path: ent.name, Kind: "d", Mode: uint32(ent.info.Mode().Perm())}, true, nil
	case typ&fs.ModeSymlink != 0:
		target, err := ent.dir.Readlink(ent.base)
		if err != nil {
			s.stats.skip(ent.name, skipReason(err))
			return e, false, nil
		}
		s.stats.Symlinks++
		return Entry{Path: ent.name, Kind: "l", Link: target}, true, nil
	case typ.IsRegular():
		return s.file(ent)
	default:
		s.stats.skip(ent.name, kindName(typ))
		return e, false, nil
	}
}

// file describes a regular file, hashing it unless prev says it is
// unchanged, and queues its blob for upload unless it is stored already.
func (s *snapshotter) file(ent walkEntry) (Entry, bool, error) {
	name := ent.name
	for range changeAttempts {
		e, content, err := s.hashFile(ent)
		if err != nil {
			s.stats.skip(name, skipReason(err))
			return e, false, nil
		}
		if e.Path == "" {
			continue // it changed while it was hashed
		}
		s.stats.Files++
		s.stats.Bytes += e.Size
		loc, stored := s.known[e.Blob]
		switch {
		case stored:
			e.Pack, e.Offset = loc.pack, loc.off
		case content != nil:
			// Small: into the pack being filled.
			e.Offset = int64(len(s.pack.data))
			s.known[e.Blob] = location{off: e.Offset, pending: true}
			s.pack.data = append(s.pack.data, content...)
			s.pack.hashes = append(s.pack.hashes, e.Blob)
		default:
			s.known[e.Blob] = location{}
			s.up.put(s.root, e)
		}
		return e, true, nil
	}
	s.stats.skip(name, "kept changing while it was read")
	if len(s.stats.Changed) < MaxSkippedListed {
		s.stats.Changed = append(s.stats.Changed, name)
	}
	return Entry{}, false, nil
}

// hashFile reads a file's identity from an open descriptor (O_NOFOLLOW:
// never a link; O_NONBLOCK: never stuck on a FIFO swapped in) and its
// content hash, from prev when its identity is unchanged. It returns an
// empty Entry when the file changed while it was read, and the content
// when the file is small and was read.
func (s *snapshotter) hashFile(ent walkEntry) (Entry, []byte, error) {
	name := ent.name
	o := s.prevEntry(name)
	if o != nil {
		// Most files of a large workspace are unchanged: the walk's stat
		// tells, without opening them.
		if e := statEntry(name, ent.info); unchanged(o, e) {
			e.Blob = o.Blob
			return e, nil, nil
		}
	}
	f, err := ent.dir.OpenFile(ent.base, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return Entry{}, nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return Entry{}, nil, err
	}
	if !info.Mode().IsRegular() {
		return Entry{}, nil, fmt.Errorf("%s", kindName(info.Mode().Type()))
	}
	e := statEntry(name, info)
	if o != nil && unchanged(o, e) {
		e.Blob = o.Blob
		return e, nil, nil
	}
	h := sha256.New()
	var content []byte
	var r io.Reader = io.LimitReader(ctxReader{s.ctx, f}, e.Size)
	if e.Size <= smallFile {
		content = make([]byte, 0, e.Size)
		r = io.TeeReader(r, (*sliceWriter)(&content))
	}
	n, err := io.Copy(h, r)
	if err != nil {
		if s.ctx.Err() != nil {
			return Entry{}, nil, s.ctx.Err()
		}
		return Entry{}, nil, err
	}
	s.stats.Hashed += n
	after, err := f.Stat()
	if err != nil {
		return Entry{}, nil, err
	}
	if ino, ctime := identity(after); n != e.Size || after.Size() != e.Size || ino != e.Ino || ctime != e.Ctime {
		return Entry{}, nil, nil
	}
	e.Blob = hex.EncodeToString(h.Sum(nil))
	return e, content, nil
}

// prevEntry returns the previous manifest's entry for name, or nil. The
// walk and the manifest's entries are in the same order, so one pass over
// the entries beside the walk finds them, without a map of 200,000 paths.
// Entries out of that order (a manifest another writer made) are not
// found: their files are read again, nothing worse.
func (s *snapshotter) prevEntry(name string) *Entry {
	for s.next < len(s.prev) && walkBefore(s.prev[s.next].Path, name) {
		s.next++
	}
	if s.next < len(s.prev) && s.prev[s.next].Path == name {
		return &s.prev[s.next]
	}
	return nil
}

// walkBefore reports whether walk visits path a before path b: names in
// lexical order within a directory, a directory's content right after it.
// That is the order of the bytes with "/" below every other byte (no name
// holds a "/" or a NUL).
func walkBefore(a, b string) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			switch {
			case a[i] == '/':
				return true
			case b[i] == '/':
				return false
			}
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

// statEntry describes a regular file as info shows it, without its
// content.
func statEntry(name string, info fs.FileInfo) Entry {
	e := Entry{Path: name, Kind: "f", Mode: uint32(info.Mode().Perm()), Size: info.Size(), Mtime: truncMtime(info.ModTime())}
	e.Ino, e.Ctime = identity(info)
	return e
}

// unchanged reports whether a file is as its entry o of the previous
// manifest found it: same size, mtime, inode and ctime.
func unchanged(o *Entry, e Entry) bool {
	return o.Kind == "f" && o.Size == e.Size && o.Mtime == e.Mtime && o.Ino == e.Ino && o.Ctime == e.Ctime
}

type sliceWriter []byte

func (w *sliceWriter) Write(p []byte) (int, error) {
	*w = append(*w, p...)
	return len(p), nil
}

// storedEntry is an Entry as a page stores it: a path or link target that
// is not valid UTF-8 (any bytes but NUL are a valid name) goes as bytes,
// which JSON strings cannot carry.
type storedEntry struct {
	entryFields
	PathBytes []byte `json:"pb,omitempty"`
	LinkBytes []byte `json:"lb,omitempty"`
}

type entryFields Entry

// MarshalJSON stores the entry with names that are not UTF-8 as bytes.
func (e Entry) MarshalJSON() ([]byte, error) {
	s := storedEntry{entryFields: entryFields(e)}
	if !utf8.ValidString(e.Path) {
		s.Path, s.PathBytes = "", []byte(e.Path)
	}
	if !utf8.ValidString(e.Link) {
		s.Link, s.LinkBytes = "", []byte(e.Link)
	}
	return json.Marshal(s)
}

// UnmarshalJSON reads what MarshalJSON stored.
func (e *Entry) UnmarshalJSON(b []byte) error {
	var s storedEntry
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*e = Entry(s.entryFields)
	if s.PathBytes != nil {
		e.Path = string(s.PathBytes)
	}
	if s.LinkBytes != nil {
		e.Link = string(s.LinkBytes)
	}
	return nil
}

// truncMtime is an mtime as an Entry keeps it.
func truncMtime(t time.Time) int64 { return t.UnixNano() / 1000 * 1000 }

// identity returns the inode and ctime of a file, which change on every
// write even when a command resets the mtime.
func identity(info fs.FileInfo) (ino uint64, ctime int64) {
	if sys, ok := info.Sys().(*syscall.Stat_t); ok {
		return sys.Ino, sys.Ctim.Nano()
	}
	return 0, 0
}

// storePages cuts the manifest's entries into pages, and the list of
// pages into index pages, and stores those not known already: a change
// rewrites one page, one index page and the manifest, however large the
// workspace. A page of prev whose entries are unchanged is kept by its
// name, not encoded again: encoding every page to find the changed one
// cost a 1 KB write into 200,000 files about a second of CPU.
func (s *snapshotter) storePages(m, prev *Manifest) error {
	var prevPages cut[Entry]
	var prevIndex cut[string]
	if prev != nil {
		prevPages = cut[Entry]{items: prev.entries, names: prev.pages, ends: prev.pageEnds}
		prevIndex = cut[string]{items: prev.pages, names: prev.Index, ends: prev.indexEnds}
	}
	var err error
	if m.pages, m.pageEnds, err = storeCut(s, m.entries, func(e Entry) string { return e.Path }, sameStored, prevPages); err != nil {
		return err
	}
	m.Index, m.indexEnds, err = storeCut(s, m.pages, func(name string) string { return name }, func(a, b string) bool { return a == b }, prevIndex)
	return err
}

// sameStored reports whether two entries are stored alike: all but what
// only this host's disk knows.
func sameStored(a, b Entry) bool {
	a.Ino, a.Ctime, b.Ino, b.Ctime = 0, 0, 0, 0
	return a == b
}

// cut is a list of items cut into stored chunks: chunk i is
// items[ends[i-1]:ends[i]], stored as the blob names[i].
type cut[T any] struct {
	items []T
	names []string
	ends  []int
}

// byFirst indexes the chunks by the key of their first item; it is nil
// when the cut is not one (a manifest whose pages were not read).
func (c cut[T]) byFirst(key func(T) string) map[string]int {
	if len(c.names) == 0 || len(c.ends) != len(c.names) || c.ends[len(c.ends)-1] != len(c.items) {
		return nil
	}
	m := make(map[string]int, len(c.names))
	start := 0
	for i, end := range c.ends {
		if end < start {
			return nil
		}
		if end > start {
			m[key(c.items[start])] = i
		}
		start = end
	}
	return m
}

func (c cut[T]) chunk(i int) []T {
	start := 0
	if i > 0 {
		start = c.ends[i-1]
	}
	return c.items[start:c.ends[i]]
}

// storeCut cuts items into chunks, each ending after an item whose key's
// hash says so (or at the end), and returns their names in order and
// where each ends. A chunk equal to one of prev keeps that one's name;
// any other is stored, unless known already, as a blob of
// gzip-compressed JSON. Cuts depend only on the keys, so a change
// disturbs the chunk that holds it and, where it adds or removes a cut,
// its neighbour, never the rest.
func storeCut[T any](s *snapshotter, items []T, key func(T) string, same func(a, b T) bool, prev cut[T]) ([]string, []int, error) {
	var names []string
	var ends []int
	reuse := prev.byFirst(key)
	flush := func(chunk []T, end int) error {
		ends = append(ends, end)
		if len(chunk) > 0 {
			if i, ok := reuse[key(chunk[0])]; ok && slices.EqualFunc(chunk, prev.chunk(i), same) {
				names = append(names, prev.names[i])
				return nil
			}
		}
		b, err := json.Marshal(chunk)
		if err != nil {
			return fmt.Errorf("encode manifest page: %w", err)
		}
		data, err := gzipped(b)
		if err != nil {
			return err
		}
		name := blobName(data)
		names = append(names, name)
		s.stats.EncodedPages++
		if _, stored := s.known[name]; !stored {
			s.known[name] = location{}
			s.up.putData("manifest page", name, data)
		}
		return nil
	}
	start := 0
	for i, it := range items {
		if pathHash(key(it))&pageMask == 0 {
			if err := flush(items[start:i+1], i+1); err != nil {
				return nil, nil, err
			}
			start = i + 1
		}
	}
	if start < len(items) || len(names) == 0 {
		if err := flush(items[start:], len(items)); err != nil {
			return nil, nil, err
		}
	}
	return names, ends, nil
}

// pathHash is the 32-bit FNV-1a hash of p, computed in place: a hasher
// allocated per entry showed in the profile of a snapshot of 200,000
// files.
func pathHash(p string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(p); i++ {
		h ^= uint32(p[i])
		h *= 16777619
	}
	return h
}

func blobName(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// gzipWriters holds compressors for gzipped: a new one allocates about a
// megabyte, and a snapshot of a large workspace compresses thousands of
// pages. A reset compressor writes the same bytes as a new one, which the
// pages' names (their hashes) rely on.
var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(io.Discard, Level) // Level is valid
	return zw
}}

func gzipped(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(&buf)
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// maxPageBytes bounds what a manifest or a page may expand to, so that a
// corrupt one cannot take the host's memory.
const maxPageBytes = 256 << 20

func gunzipped(data []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	b, err := io.ReadAll(io.LimitReader(zr, maxPageBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPageBytes {
		return nil, fmt.Errorf("more than %d bytes", maxPageBytes)
	}
	return b, nil
}

// uploader stores file blobs with bounded concurrency and keeps the first
// error.
type uploader struct {
	ctx   context.Context
	blobs Blobs
	stats *SnapshotStats
	sem   chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex // guards stats
	errs  firstError
}

func newUploader(ctx context.Context, blobs Blobs, st *SnapshotStats) *uploader {
	return &uploader{ctx: ctx, blobs: blobs, stats: st, sem: make(chan struct{}, uploadWorkers)}
}

// put stores the blob of a file too large for a pack: from the file read
// again, verified against e.Blob.
func (u *uploader) put(root *os.Root, e Entry) {
	u.run(e.Path, e.Size, func() error { return u.store(root, e) })
}

// putData stores data as the blob name.
func (u *uploader) putData(what, name string, data []byte) {
	u.run(what+" "+name, int64(len(data)), func() error {
		return u.blobs.Put(u.ctx, name, int64(len(data)), bytes.NewReader(data))
	})
}

// run runs one upload of size bytes, when a worker is free.
func (u *uploader) run(what string, size int64, upload func() error) {
	select {
	case u.sem <- struct{}{}:
	case <-u.ctx.Done():
		u.errs.set(u.ctx.Err())
		return
	}
	u.wg.Add(1)
	go func() {
		defer func() { <-u.sem; u.wg.Done() }()
		if err := upload(); err != nil {
			u.errs.set(fmt.Errorf("store %s: %w", what, err))
			return
		}
		u.mu.Lock()
		u.stats.Uploaded += size
		u.stats.UploadedBlobs++
		u.mu.Unlock()
	}()
}

func (u *uploader) store(root *os.Root, e Entry) error {
	f, err := root.OpenFile(e.Path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return u.blobs.Put(u.ctx, e.Blob, e.Size, &verifier{r: io.LimitReader(ctxReader{u.ctx, f}, e.Size), h: sha256.New(), want: e.Blob, left: e.Size})
}

func (u *uploader) wait() error {
	u.wg.Wait()
	return u.errs.get()
}

// firstError keeps the first error of concurrent workers.
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// verifier yields a file's content and fails at its end unless the content
// hashes to want: a file rewritten between hashing and uploading must not
// be stored under a name its bytes do not have.
type verifier struct {
	r    io.Reader
	h    hash.Hash
	want string
	left int64
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.left -= int64(n)
	if err == io.EOF && (v.left != 0 || hex.EncodeToString(v.h.Sum(nil)) != v.want) {
		return n, ErrChanged
	}
	return n, err
}
