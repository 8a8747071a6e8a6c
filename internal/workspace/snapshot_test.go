package workspace

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// memBlobs keeps blobs in memory and, as the Cloud Storage store does,
// stores nothing when the reader fails.
type memBlobs struct {
	mu    sync.Mutex
	blobs map[string][]byte
	puts  int
}

func newMemBlobs() *memBlobs { return &memBlobs{blobs: map[string][]byte{}} }

func (m *memBlobs) Put(ctx context.Context, name string, size int64, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.blobs[name] = b
	m.puts++
	return nil
}

func (m *memBlobs) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[name]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", name, os.ErrNotExist)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func takeSnapshot(t *testing.T, dir string, prev *Manifest, blobs Blobs) (*Manifest, SnapshotStats) {
	t.Helper()
	m, st, err := Snapshot(context.Background(), dir, prev, blobs, nil)
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	// Store and read the manifest as a host does.
	if !storedCopy(t, m).SameAs(m) {
		t.Fatalf("manifest changed through Encode and DecodeManifest")
	}
	return m, st
}

// storedCopy returns m as a new host reads it.
func storedCopy(t *testing.T, m *Manifest) *Manifest {
	t.Helper()
	data, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	stored, err := DecodeManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	return stored
}

// restoreSnapshot restores a stored copy of m, as a new host does, and
// returns where.
func restoreSnapshot(t *testing.T, m *Manifest, blobs Blobs) string {
	t.Helper()
	_, dst := restoreStored(t, m, blobs)
	return dst
}

// restoreStored restores a stored copy of m and returns the copy, which
// now knows the restored files, and where.
func restoreStored(t *testing.T, m *Manifest, blobs Blobs) (*Manifest, string) {
	t.Helper()
	stored := storedCopy(t, m)
	dst := filepath.Join(t.TempDir(), "restored")
	if _, err := RestoreSnapshot(context.Background(), dst, stored, blobs); err != nil {
		t.Fatalf("RestoreSnapshot: %v", err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(dst, "locked"), 0o755) })
	return stored, dst
}

func sameTree(t *testing.T, want, got string) {
	t.Helper()
	w, g := snapshot(t, want), snapshot(t, got)
	for _, name := range slices.Sorted(maps.Keys(w)) {
		if g[name] != w[name] {
			t.Errorf("%q: restored %+v, want %+v", name, g[name], w[name])
		}
	}
	for name := range g {
		if _, ok := w[name]; !ok {
			t.Errorf("%q: restored but not in the source", name)
		}
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	src := sampleTree(t)
	blobs := newMemBlobs()
	m, st := takeSnapshot(t, src, nil, blobs)
	if st.Files != 10 || st.Symlinks != 5 || st.SkippedCount != 0 {
		t.Errorf("snapshot stats %+v", st)
	}
	sameTree(t, src, restoreSnapshot(t, m, blobs))
}

// A change costs what changed: a 1 KiB write beside 8 MiB of files stores
// the 1 KiB and one page, and deletions, new empty directories, new
// symlinks and mode changes round-trip.
func TestSnapshotIsIncremental(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	for i := range 8 {
		mustWrite(t, filepath.Join(src, fmt.Sprintf("data/%d.bin", i)), bytes.Repeat([]byte{byte(i)}, 1<<20), 0o644)
	}
	for i := range 300 {
		mustWrite(t, filepath.Join(src, fmt.Sprintf("src/f%03d.txt", i)), []byte(fmt.Sprint("file ", i)), 0o644)
	}
	blobs := newMemBlobs()
	m1, st1 := takeSnapshot(t, src, nil, blobs)
	if st1.Uploaded < 8<<20 {
		t.Fatalf("first snapshot uploaded %d bytes, want the whole tree", st1.Uploaded)
	}

	mustWrite(t, filepath.Join(src, "src/new.txt"), bytes.Repeat([]byte("k"), 1024), 0o644)
	m2, st2 := takeSnapshot(t, src, m1, blobs)
	if st2.Hashed != 1024 {
		t.Errorf("second snapshot read %d bytes, want only the 1024 written", st2.Hashed)
	}
	if st2.Uploaded < 1024 || st2.Uploaded > 1024+8<<10 {
		t.Errorf("second snapshot uploaded %d bytes in %d blobs for a 1 KiB write", st2.Uploaded, st2.UploadedBlobs)
	}
	sameTree(t, src, restoreSnapshot(t, m2, blobs))

	// Unchanged: nothing read, nothing stored.
	m3, st3 := takeSnapshot(t, src, m2, blobs)
	if st3.Hashed != 0 || st3.Uploaded != 0 || !m3.SameAs(m2) {
		t.Errorf("unchanged tree: read %d, uploaded %d, same manifest %v", st3.Hashed, st3.Uploaded, m3.SameAs(m2))
	}

	// A rewrite that keeps size and mtime is still seen (its ctime moved).
	p := filepath.Join(src, "src/f007.txt")
	info, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, p, []byte("FILE 7"), 0o644)
	if err := os.Chtimes(p, info.ModTime(), info.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(src, "data/3.bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(src, "src/f010.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(src, "empty/dir"), 0o750); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, "../data/0.bin", filepath.Join(src, "src/link"))
	if err := os.Chmod(filepath.Join(src, "data/1.bin"), 0o600); err != nil {
		t.Fatal(err)
	}
	m4, st4 := takeSnapshot(t, src, m3, blobs)
	if st4.Hashed > 1<<20+16 {
		t.Errorf("read %d bytes after a 6-byte rewrite and a chmod", st4.Hashed)
	}
	sameTree(t, src, restoreSnapshot(t, m4, blobs))
}

// A restored tree's manifest knows its files: the next snapshot on the
// new host reads and stores nothing.
func TestSnapshotAfterRestoreReadsNothing(t *testing.T) {
	t.Parallel()
	src := sampleTree(t)
	// Enough files for several pages of the index. Pages are cut where a
	// hash of their content says, and their content holds mtimes, so how
	// many files that takes differs from run to run: about 6,000 on
	// average.
	blobs := newMemBlobs()
	var m *Manifest
	for n := 0; m == nil || len(m.Index) < 2; n += 2000 {
		if n >= 60000 {
			t.Fatalf("%d index pages for %d files", len(m.Index), n)
		}
		for i := n; i < n+2000; i++ {
			mustWrite(t, filepath.Join(src, fmt.Sprintf("many/%d", i)), []byte(fmt.Sprint(i)), 0o644)
		}
		m, _ = takeSnapshot(t, src, m, blobs)
	}
	stored, dst := restoreStored(t, m, blobs)
	// What the restored manifest needs is everything the stored one does:
	// garbage collection keeps exactly that.
	if !maps.Equal(stored.Blobs(), m.Blobs()) {
		t.Errorf("a restored manifest names %d blobs, the one stored %d", len(stored.Blobs()), len(m.Blobs()))
	}
	m2, st := takeSnapshot(t, dst, stored, blobs)
	if st.Hashed != 0 || st.Uploaded != 0 || !m2.SameAs(m) {
		t.Errorf("snapshot after restore read %d and uploaded %d bytes; same manifest %v", st.Hashed, st.Uploaded, m2.SameAs(m))
	}
}

// A file rewritten between hashing and uploading is never stored under a
// name its bytes do not have.
func TestVerifierRefusesChangedContent(t *testing.T) {
	t.Parallel()
	sum := sha256.Sum256([]byte("before"))
	v := &verifier{r: bytes.NewReader([]byte("after!")), h: sha256.New(), want: hex.EncodeToString(sum[:]), left: 6}
	if _, err := io.ReadAll(v); !errors.Is(err, ErrChanged) {
		t.Fatalf("read changed content: %v, want ErrChanged", err)
	}
}

// hostileManifest stores entries as one page, listed by one index page,
// and returns the manifest.
func hostileManifest(t testing.TB, blobs *memBlobs, entries []Entry) *Manifest {
	page := storeJSON(t, blobs, entries)
	return &Manifest{Version: manifestVersion, Index: []string{storeJSON(t, blobs, []string{page})}}
}

func storeJSON(t testing.TB, blobs *memBlobs, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	data, err := gzipped(b)
	if err != nil {
		t.Fatal(err)
	}
	name := blobName(data)
	blobs.blobs[name] = data
	return name
}

func contentBlob(blobs *memBlobs, content string) string {
	name := blobName([]byte(content))
	blobs.blobs[name] = []byte(content)
	return name
}

func TestRestoreSnapshotRejectsHostileManifests(t *testing.T) {
	t.Parallel()
	blobs := newMemBlobs()
	x := contentBlob(blobs, "x")
	file := func(p string) Entry { return Entry{Path: p, Kind: "f", Mode: 0o644, Size: 1, Blob: x} }
	xy := contentBlob(blobs, "xy")
	packed := func(p string, off int64) Entry {
		return Entry{Path: p, Kind: "f", Mode: 0o644, Size: 1, Blob: x, Pack: xy, Offset: off}
	}
	for name, entries := range map[string][]Entry{
		"through a symlink":        {{Path: "l", Kind: "l", Link: "../outside"}, file("l/victim")},
		"climbing":                 {file("../outside/victim")},
		"absolute":                 {file("/tmp/victim")},
		"not canonical":            {{Path: "d", Kind: "d", Mode: 0o755}, file("d/./f")},
		"duplicate":                {file("f"), file("f")},
		"parent not created":       {file("nodir/f")},
		"unknown kind":             {{Path: "p", Kind: "p"}},
		"blob name not a sum":      {{Path: "f", Kind: "f", Size: 1, Blob: "../../etc/passwd"}},
		"dir over a link":          {{Path: "d", Kind: "l", Link: "/"}, {Path: "d", Kind: "d", Mode: 0o755}},
		"packed through a symlink": {{Path: "l", Kind: "l", Link: "../outside"}, packed("l/victim", 0)},
		"place beyond its pack":    {packed("f", 2)},
		"negative place in a pack": {packed("f", -1)},
		"pack name not a sum":      {{Path: "f", Kind: "f", Size: 1, Blob: x, Pack: "../../etc/passwd"}},
	} {
		t.Run(name, func(t *testing.T) {
			m := hostileManifest(t, blobs, entries)
			_, err := restoreSnapshotContained(t, m, blobs)
			if !errors.Is(err, ErrUnsafe) {
				t.Fatalf("restore: %v, want ErrUnsafe", err)
			}
		})
	}
	// A blob shorter than its entry says is an error, not a short file.
	m := hostileManifest(t, blobs, []Entry{{Path: "f", Kind: "f", Size: 5, Blob: x}})
	if _, err := restoreSnapshotContained(t, m, blobs); err == nil {
		t.Fatal("restore of a truncated blob succeeded")
	}
}

// restoreSnapshotContained restores m into a fresh target beside a file
// it must not touch, and checks that it was not touched.
func restoreSnapshotContained(t *testing.T, m *Manifest, blobs Blobs) (Stats, error) {
	t.Helper()
	sandbox := t.TempDir()
	victim := filepath.Join(sandbox, "outside", "victim")
	mustWrite(t, victim, []byte("untouched"), 0o644)
	st, err := RestoreSnapshot(context.Background(), filepath.Join(sandbox, "target"), m, blobs)
	if b, rerr := os.ReadFile(victim); rerr != nil || string(b) != "untouched" {
		t.Fatalf("outside file changed: %q %v", b, rerr)
	}
	names, rerr := os.ReadDir(sandbox)
	if rerr != nil {
		t.Fatal(rerr)
	}
	for _, n := range names {
		if n.Name() != "outside" && n.Name() != "target" {
			t.Errorf("restore created %s outside its target", n.Name())
		}
	}
	return st, err
}

// FuzzRestoreSnapshot feeds RestoreSnapshot manifests described by the
// bytes (lines "<kind><path>\x00<arg>", as FuzzRestore's) and checks that
// it never panics and never writes outside its target.
func FuzzRestoreSnapshot(f *testing.F) {
	f.Add([]byte("dd\nfd/f\x00data\nld/l\x00..\nfd/l/x\x00y"))
	f.Add([]byte("ll\x00../outside\nfl/victim\x00x\ndl/sub"))
	f.Add([]byte("f../outside/victim\x00x\nf/abs\x00y\npfifo\x00"))
	f.Fuzz(func(t *testing.T, desc []byte) {
		blobs := newMemBlobs()
		var entries []Entry
		for line := range bytes.SplitSeq(desc, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			p, arg, _ := bytes.Cut(line[1:], []byte{0})
			e := Entry{Path: string(p), Kind: string(line[:1]), Mode: 0o755}
			switch e.Kind {
			case "f":
				e.Size, e.Blob = int64(len(arg)), contentBlob(blobs, string(arg))
			case "l":
				e.Link = string(arg)
			}
			entries = append(entries, e)
		}
		m := hostileManifest(t, blobs, entries)
		st, err := restoreSnapshotContained(t, m, blobs)
		if err == nil && (st.Files < 0 || st.Bytes < 0) {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestSnapshotPacksSmallFiles: small files travel in packs, so that a
// workspace of thousands of them is a few dozen objects, not one per
// file; the manifest names the packs (not the files' own hashes) as the
// blobs it needs, content seen before is not stored again, and the tree
// comes back whole, also after a change that puts one file in a new pack.
func TestSnapshotPacksSmallFiles(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	const files = 3000
	for i := range files {
		mustWrite(t, filepath.Join(src, fmt.Sprintf("d%02d/f%04d.txt", i/100, i)), bytes.Repeat([]byte{byte('a' + i%26)}, 700+i), 0o644)
	}
	mustWrite(t, filepath.Join(src, "copy.txt"), bytes.Repeat([]byte{'a'}, 700), 0o644) // same content as d00/f0000.txt
	blobs := newMemBlobs()
	m1, st1 := takeSnapshot(t, src, nil, blobs)
	// About 3.2 MB of files: 4 packs, ~50 pages and their index.
	if st1.UploadedBlobs > 100 {
		t.Errorf("%d files stored as %d blobs, want them packed into under 100", files, st1.UploadedBlobs)
	}
	for name := range m1.Blobs() {
		if _, ok := blobs.blobs[name]; !ok {
			t.Errorf("the manifest needs blob %s, which was not stored", name)
		}
	}
	var copies []Entry
	for _, e := range m1.entries {
		if e.Kind == "f" && e.Pack == "" {
			t.Errorf("small file %s is not in a pack", e.Path)
		}
		if e.Path == "copy.txt" || e.Path == "d00/f0000.txt" {
			copies = append(copies, e)
		}
	}
	if len(copies) != 2 || copies[0].Pack != copies[1].Pack || copies[0].Offset != copies[1].Offset {
		t.Errorf("two files of the same content: %+v, want one place", copies)
	}
	m1, dst := restoreStored(t, m1, blobs)
	sameTree(t, src, dst)

	// A change on the restored host: one new pack holding the new file.
	mustWrite(t, filepath.Join(dst, "d05/new.txt"), []byte("new content"), 0o644)
	m2, st2 := takeSnapshot(t, dst, m1, blobs)
	if st2.Hashed != int64(len("new content")) {
		t.Errorf("read %d bytes after an 11-byte write", st2.Hashed)
	}
	if st2.UploadedBlobs > 3 {
		t.Errorf("stored %d blobs after an 11-byte write, want its pack, a page and the index", st2.UploadedBlobs)
	}
	sameTree(t, dst, restoreSnapshot(t, m2, blobs))
}

// A manifest of the first format (no packs) is still read; one of a
// format newer than this host's is refused.
func TestDecodeManifestVersions(t *testing.T) {
	for version, ok := range map[int]bool{1: true, manifestVersion: true, manifestVersion + 1: false, 0: false} {
		data, err := (&Manifest{Version: version, Index: []string{}}).Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeManifest(data); (err == nil) != ok {
			t.Errorf("version %d: %v, want accepted %v", version, err, ok)
		}
	}
}

// TestSnapshotFindsEveryChange: an incremental snapshot, which trusts a
// file whose size, mtime, inode and ctime are unchanged and keeps the
// previous manifest's unchanged pages, still finds every kind of change,
// each in a tree of many pages, and encodes only the pages around it.
func TestSnapshotFindsEveryChange(t *testing.T) {
	t.Parallel()
	sameMtime := func(t *testing.T, p string, write func()) {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		write()
		if err := os.Chtimes(p, info.ModTime(), info.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	for name, change := range map[string]func(t *testing.T, src string){
		"edit": func(t *testing.T, src string) {
			mustWrite(t, filepath.Join(src, "d07/f0707.txt"), []byte("edited, and longer than before"), 0o644)
		},
		"create": func(t *testing.T, src string) {
			mustWrite(t, filepath.Join(src, "d03/new.txt"), []byte("new"), 0o644)
		},
		"delete": func(t *testing.T, src string) {
			if err := os.Remove(filepath.Join(src, "d11/f1111.txt")); err != nil {
				t.Fatal(err)
			}
		},
		"rename": func(t *testing.T, src string) {
			if err := os.Rename(filepath.Join(src, "d02/f0202.txt"), filepath.Join(src, "d15/moved.txt")); err != nil {
				t.Fatal(err)
			}
		},
		// Two files of one size and mtime swap names: each name's size
		// and mtime are as before; its inode is not.
		"swap": func(t *testing.T, src string) {
			a, b, tmp := filepath.Join(src, "d04/f0404.txt"), filepath.Join(src, "d04/f0405.txt"), filepath.Join(src, "d04/tmp")
			if err := os.Chtimes(b, time.Unix(1e9, 0), time.Unix(1e9, 0)); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(a, time.Unix(1e9, 0), time.Unix(1e9, 0)); err != nil {
				t.Fatal(err)
			}
			for _, mv := range [][2]string{{a, tmp}, {b, a}, {tmp, b}} {
				if err := os.Rename(mv[0], mv[1]); err != nil {
					t.Fatal(err)
				}
			}
		},
		// The same size and mtime, other bytes, in place: only the ctime
		// tells.
		"rewrite keeping size and mtime": func(t *testing.T, src string) {
			p := filepath.Join(src, "d09/f0909.txt")
			sameMtime(t, p, func() {
				f, err := os.OpenFile(p, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteAt([]byte("XYZ"), 0); err != nil {
					t.Fatal(err)
				}
				f.Close()
			})
		},
		"chmod": func(t *testing.T, src string) {
			if err := os.Chmod(filepath.Join(src, "d12/f1212.txt"), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"file becomes a symlink": func(t *testing.T, src string) {
			p := filepath.Join(src, "d13/f1313.txt")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			mustSymlink(t, "f1314.txt", p)
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := t.TempDir()
			for i := range 1600 {
				mustWrite(t, filepath.Join(src, fmt.Sprintf("d%02d/f%04d.txt", i/100, i)), fmt.Appendf(nil, "content %04d", i), 0o644)
			}
			blobs := newMemBlobs()
			m1, st1 := takeSnapshot(t, src, nil, blobs)
			if len(m1.pages) < 10 {
				t.Fatalf("%d pages, want a tree of many", len(m1.pages))
			}
			// As a new host: the stored manifest, restored.
			m1, dst := restoreStored(t, m1, blobs)
			change(t, dst)
			m2, st2 := takeSnapshot(t, dst, m1, blobs)
			sameTree(t, dst, restoreSnapshot(t, m2, blobs))
			if m2.SameAs(m1) {
				t.Fatal("the change was not seen: the same manifest")
			}
			// Around the change: its page, maybe a neighbour, and the
			// index pages that list them.
			if st2.EncodedPages > 4 || st2.EncodedPages >= st1.EncodedPages {
				t.Errorf("encoded %d pages after one change (first snapshot: %d)", st2.EncodedPages, st1.EncodedPages)
			}
			kept := 0
			for _, p := range m2.pages {
				if slices.Contains(m1.pages, p) {
					kept++
				}
			}
			if len(m2.pages)-kept > 2 {
				t.Errorf("%d of %d pages are new after one change", len(m2.pages)-kept, len(m2.pages))
			}
		})
	}
}

// The snapshot finds each file's previous entry by walking the previous
// manifest beside the tree, so walkBefore must be the walk's order, also
// for names that sort around "/": an unchanged tree is read not at all.
func TestSnapshotWalkOrder(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	for _, name := range []string{"a", "a.txt", "a-b/x", "a b", "ab", "a/b/c", "a/b.c", "a/b-c/d", "A", "\xffz", "z\x01", "a/\xe9t\xe9"} {
		p := filepath.Join(src, name)
		if name == "a" {
			p = filepath.Join(src, "a/f")
		}
		mustWrite(t, p, []byte(name), 0o644)
	}
	blobs := newMemBlobs()
	m1, _ := takeSnapshot(t, src, nil, blobs)
	if !slices.IsSortedFunc(m1.entries, func(a, b Entry) int {
		if walkBefore(a.Path, b.Path) {
			return -1
		}
		return 1
	}) {
		t.Errorf("walk order is not walkBefore's: %v", m1.entries)
	}
	m2, st := takeSnapshot(t, src, m1, blobs)
	if st.Hashed != 0 || !m2.SameAs(m1) {
		t.Errorf("unchanged tree: read %d bytes again", st.Hashed)
	}
}

// failingBlobs refuses every blob whose content is not name-checked yet:
// all of them.
type failingBlobs struct{ *memBlobs }

func (f failingBlobs) Put(ctx context.Context, name string, size int64, r io.Reader) error {
	return errors.New("storage unavailable")
}

// The caller's manifest store runs beside the uploads, sees the manifest
// Snapshot returns, and a snapshot whose uploads failed fails even when the
// manifest was stored (its caller must not commit it).
func TestSnapshotStoresTheManifestBesideTheUploads(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "big"), bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	var handed *Manifest
	store := func(ctx context.Context, m *Manifest) error { handed = m; return nil }
	m, _, err := Snapshot(context.Background(), dir, nil, newMemBlobs(), store)
	if err != nil {
		t.Fatal(err)
	}
	if handed == nil || !handed.SameAs(m) || handed.Files != 1 {
		t.Fatalf("the store was handed %+v; Snapshot returned %+v", handed, m)
	}

	handed = nil
	if _, _, err := Snapshot(context.Background(), dir, nil, failingBlobs{newMemBlobs()}, store); err == nil || handed == nil {
		t.Fatalf("a snapshot whose uploads failed: %v (manifest handed: %v)", err, handed != nil)
	}
	refused := errors.New("manifest refused")
	if _, _, err := Snapshot(context.Background(), dir, nil, newMemBlobs(), func(context.Context, *Manifest) error { return refused }); !errors.Is(err, refused) {
		t.Fatalf("a snapshot whose manifest was not stored: %v", err)
	}
}
