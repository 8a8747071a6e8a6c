package workspace

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"sync"
	"time"
)

// RestoreSnapshot writes the tree that m describes into dir, which must be
// an empty directory or not exist yet, reading m's pages and file content
// from blobs. It applies Restore's rules to every entry, because the
// session's commands chose the names: an entry is written only below dir,
// only into a directory the manifest created earlier, never through a
// link, and a name that is absolute, not canonical, climbing or repeated is
// refused with an error wrapping ErrUnsafe, as is an entry of an unknown
// kind, a blob name that is not a SHA-256 or a place outside its pack.
// File content is fetched with bounded concurrency, each pack once.
//
// On success m holds its entries and the restored files' inodes and
// ctimes, so that the next Snapshot against m reads none of them again.
// On error dir holds part of the tree; the caller should discard it.
func RestoreSnapshot(ctx context.Context, dir string, m *Manifest, blobs Blobs) (Stats, error) {
	var st Stats
	entries, err := loadPages(ctx, m, blobs)
	if err != nil {
		return st, err
	}
	root, err := openTarget(dir)
	if err != nil {
		return st, err
	}
	defer root.Close()
	rs := restorer{ctx: ctx, root: root, stats: &st, dirs: map[string]bool{".": true}, buf: make([]byte, copyBufferSize)}
	fr := fileRestorer{rs: &rs, blobs: blobs, sem: make(chan struct{}, uploadWorkers)}
	for i := range entries {
		if err := ctx.Err(); err != nil {
			break
		}
		e := &entries[i]
		hdr, err := e.header()
		if err == nil && e.Kind == "f" && e.Pack != "" {
			err = fr.packed(e, hdr)
		} else if err == nil && e.Kind == "f" {
			err = fr.start(e, hdr)
		} else if err == nil {
			err = rs.entry(hdr, nil)
		}
		if err != nil {
			fr.errs.set(fmt.Errorf("restore entry %q: %w", e.Path, err))
			break
		}
	}
	if fr.errs.get() == nil {
		fr.startPacks()
	}
	fr.wg.Wait()
	fr.errs.set(ctx.Err())
	if err := fr.errs.get(); err != nil {
		return st, fmt.Errorf("restore into %s: %w", dir, err)
	}
	for _, d := range slices.Backward(rs.lateModes) {
		if err := chmodDir(root, d.name, d.mode); err != nil {
			return st, fmt.Errorf("restore entry %q: %w", d.name+"/", err)
		}
	}
	m.entries = entries
	return st, nil
}

// loadPages reads m's index pages, then its pages, and returns their
// entries in order; m keeps the names of its pages.
func loadPages(ctx context.Context, m *Manifest, blobs Blobs) ([]Entry, error) {
	var pages []string
	var indexEnds []int
	for _, name := range m.Index {
		var chunk []string
		if err := readChunk(ctx, blobs, name, &chunk); err != nil {
			return nil, err
		}
		pages = append(pages, chunk...)
		indexEnds = append(indexEnds, len(pages))
	}
	var entries []Entry
	var pageEnds []int
	for _, name := range pages {
		var chunk []Entry
		if err := readChunk(ctx, blobs, name, &chunk); err != nil {
			return nil, err
		}
		entries = append(entries, chunk...)
		pageEnds = append(pageEnds, len(entries))
	}
	m.pages, m.pageEnds, m.indexEnds = pages, pageEnds, indexEnds
	return entries, nil
}

// readChunk reads one page or index page into v.
func readChunk(ctx context.Context, blobs Blobs, name string, v any) error {
	if !validBlobName(name) {
		return fmt.Errorf("read manifest: %w: page name %q", ErrUnsafe, name)
	}
	r, err := blobs.Get(ctx, name)
	if err != nil {
		return fmt.Errorf("read manifest page %s: %w", name, err)
	}
	data, err := io.ReadAll(io.LimitReader(r, maxPageBytes+1))
	r.Close()
	if err != nil {
		return fmt.Errorf("read manifest page %s: %w", name, err)
	}
	b, err := gunzipped(data)
	if err != nil {
		return fmt.Errorf("read manifest page %s: %w", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode manifest page %s: %w", name, err)
	}
	return nil
}

// header turns an entry into the tar header Restore's checks take.
func (e *Entry) header() (*tar.Header, error) {
	hdr := &tar.Header{Name: e.Path, Mode: int64(e.Mode & 0o777)}
	switch e.Kind {
	case "d":
		hdr.Typeflag = tar.TypeDir
	case "l":
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.Link
	case "f":
		if !validBlobName(e.Blob) {
			return nil, fmt.Errorf("%w: blob name %q", ErrUnsafe, e.Blob)
		}
		if e.Size < 0 {
			return nil, fmt.Errorf("%w: negative size", ErrUnsafe)
		}
		if e.Pack != "" && (!validBlobName(e.Pack) || e.Offset < 0 || e.Offset > maxPackBytes || e.Size > maxPackBytes) {
			return nil, fmt.Errorf("%w: place %d+%d in pack %q", ErrUnsafe, e.Offset, e.Size, e.Pack)
		}
		hdr.Typeflag, hdr.Size, hdr.ModTime = tar.TypeReg, e.Size, time.Unix(0, e.Mtime)
	default:
		return nil, fmt.Errorf("%w: entry kind %q", ErrUnsafe, e.Kind)
	}
	return hdr, nil
}

// validBlobName reports whether name is a hex SHA-256, the only names
// Snapshot gives blobs.
func validBlobName(name string) bool {
	b, err := hex.DecodeString(name)
	return err == nil && len(b) == 32 && hex.EncodeToString(b) == name
}

// fileRestorer writes files with bounded concurrency. Names are checked
// in manifest order before a file's write starts, so the checks see the
// same tree as a sequential restore.
type fileRestorer struct {
	rs    *restorer
	blobs Blobs
	sem   chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex // guards the restorer's stats
	errs  firstError
	// packs holds the checked files of each pack, in the order the packs
	// first appear, written once every entry is checked.
	packs     map[string][]checkedFile
	packOrder []string
}

// checkedFile is a file entry whose name passed the restorer's checks.
type checkedFile struct {
	e    *Entry
	name string
	mode fs.FileMode
	hdr  *tar.Header
}

func (fr *fileRestorer) start(e *Entry, hdr *tar.Header) error {
	name, mode, err := fr.rs.check(hdr)
	if err != nil {
		return err
	}
	fr.run(fmt.Sprintf("entry %q", e.Path), func() error { return fr.write(checkedFile{e, name, mode, hdr}) })
	return nil
}

// packed checks a file whose content is in a pack, to be written with
// the pack's other files.
func (fr *fileRestorer) packed(e *Entry, hdr *tar.Header) error {
	name, mode, err := fr.rs.check(hdr)
	if err != nil {
		return err
	}
	if fr.packs == nil {
		fr.packs = map[string][]checkedFile{}
	}
	if _, seen := fr.packs[e.Pack]; !seen {
		fr.packOrder = append(fr.packOrder, e.Pack)
	}
	fr.packs[e.Pack] = append(fr.packs[e.Pack], checkedFile{e, name, mode, hdr})
	return nil
}

// startPacks reads each pack once and writes its files.
func (fr *fileRestorer) startPacks() {
	for _, name := range fr.packOrder {
		files := fr.packs[name]
		fr.run("pack "+name, func() error { return fr.writePack(name, files) })
	}
}

// run runs one restore when a worker is free, unless one failed already.
func (fr *fileRestorer) run(what string, restore func() error) {
	fr.sem <- struct{}{}
	if fr.errs.get() != nil {
		<-fr.sem
		return
	}
	fr.wg.Add(1)
	go func() {
		defer func() { <-fr.sem; fr.wg.Done() }()
		if err := restore(); err != nil {
			fr.errs.set(fmt.Errorf("restore %s: %w", what, err))
		}
	}()
}

// writePack reads a pack whole (it is small) and writes the files whose
// content it holds.
func (fr *fileRestorer) writePack(name string, files []checkedFile) error {
	r, err := fr.blobs.Get(fr.rs.ctx, name)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(io.LimitReader(r, maxPackBytes+1))
	r.Close()
	if err != nil {
		return fmt.Errorf("read pack %s: %w", name, err)
	}
	if len(data) > maxPackBytes {
		return fmt.Errorf("%w: pack %s holds more than %d bytes", ErrUnsafe, name, maxPackBytes)
	}
	for _, cf := range files {
		end := cf.e.Offset + cf.e.Size
		if end > int64(len(data)) {
			return fmt.Errorf("entry %q: %w: bytes %d to %d of a pack of %d", cf.e.Path, ErrUnsafe, cf.e.Offset, end, len(data))
		}
		if err := fr.writeFrom(cf, bytes.NewReader(data[cf.e.Offset:end])); err != nil {
			return fmt.Errorf("entry %q: %w", cf.e.Path, err)
		}
	}
	return nil
}

// write restores a file from its own blob.
func (fr *fileRestorer) write(cf checkedFile) error {
	r, err := fr.blobs.Get(fr.rs.ctx, cf.e.Blob)
	if err != nil {
		return err
	}
	defer r.Close()
	return fr.writeFrom(cf, r)
}

// writeFrom writes one file from r and records its identity in its entry.
func (fr *fileRestorer) writeFrom(cf checkedFile, r io.Reader) error {
	e, hdr := cf.e, cf.hdr
	f, n, err := fr.rs.file(cf.name, cf.mode, hdr, r, make([]byte, min(copyBufferSize, max(hdr.Size, 512))))
	if err != nil {
		return err
	}
	info, err := f.Stat()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	e.Ino, e.Ctime = identity(info)
	e.Mtime = truncMtime(info.ModTime())
	fr.mu.Lock()
	fr.rs.stats.Files++
	fr.rs.stats.Bytes += n
	fr.mu.Unlock()
	return nil
}
