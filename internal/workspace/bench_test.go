package workspace

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// benchTree builds a workspace of about 100 MB: 8,000 small text files
// (source code, notes: compressible) in 100 directories, and two 25 MB
// files of half-random data (a binary, a dataset). It returns the root
// and the content size.
func benchTree(b *testing.B) (string, int64) {
	b.Helper()
	dir := b.TempDir()
	rng := rand.New(rand.NewPCG(7, 7))
	words := strings.Fields("func return if else for range var const type struct package import err nil " +
		"the of and to in is it that this with data value result context string int error")
	var total int64
	var sb strings.Builder
	for i := range 8000 {
		sb.Reset()
		size := 512 + rng.IntN(12<<10)
		for sb.Len() < size {
			sb.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(8) == 0 {
				sb.WriteString("\n\t")
			} else {
				sb.WriteByte(' ')
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("src/pkg%02d/file%04d.go", i%100, i))
		mustWriteTB(b, p, sb.String())
		total += int64(sb.Len())
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		b.Fatal(err)
	}
	for i := range 2 {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("data/blob%d.bin", i)))
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(f, patternReader(uint64(i), 25<<20))
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		total += n
	}
	return dir, total
}

// countingWriter counts what passes, to report the compression ratio.
type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

func BenchmarkCheckpoint(b *testing.B) {
	dir, total := benchTree(b)
	b.SetBytes(total)
	var out countingWriter
	for b.Loop() {
		out.n = 0
		if _, err := Checkpoint(context.Background(), &out, dir); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(out.n)/float64(total), "archive/input")
}

func BenchmarkRestore(b *testing.B) {
	dir, total := benchTree(b)
	var archive bytes.Buffer
	if _, err := Checkpoint(context.Background(), &archive, dir); err != nil {
		b.Fatal(err)
	}
	scratch := b.TempDir()
	b.SetBytes(total)
	i := 0
	for b.Loop() {
		b.StopTimer()
		target := filepath.Join(scratch, fmt.Sprint(i))
		i++
		b.StartTimer()
		if _, err := Restore(context.Background(), target, bytes.NewReader(archive.Bytes())); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(target); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// smallFilesTree builds a workspace of n small files (about 1 KB each,
// like a node_modules) in two levels of directories, and returns its root.
func smallFilesTree(b *testing.B, n int) string {
	b.Helper()
	dir := b.TempDir()
	content := bytes.Repeat([]byte("module.exports = require('./lib');\n"), 28)
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("m%02d/p%03d/f%06d.js", i%20, i%400, i))
		if i < 400 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
		}
		// Content of its own: a file's bytes are stored once.
		if err := os.WriteFile(p, fmt.Appendf(content[:len(content):len(content)], "// %d\n", i), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

// bareWalk is the floor of an incremental snapshot: visiting every entry
// of the tree and stat'ing it, which finding what changed cannot avoid.
func bareWalk(dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if _, err := os.Lstat(p); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}

// BenchmarkSnapshotOneChange measures the incremental snapshot after one
// file of a 200,000-file workspace changed, against its floor measured in
// the same run, one after the other: a bare walk of the tree (WalkDir and
// an lstat per entry). It reports both times per operation and their
// ratio (snapshot/walk; 1 would be a snapshot as cheap as the walk).
func BenchmarkSnapshotOneChange(b *testing.B) {
	const files = 200_000
	dir := smallFilesTree(b, files)
	ctx := context.Background()
	blobs := newMemBlobs()
	m, _, err := Snapshot(ctx, dir, nil, blobs, nil)
	if err != nil {
		b.Fatal(err)
	}
	var snap, floor time.Duration
	i := 0
	for b.Loop() {
		i++
		j := (i * 7919) % files
		p := filepath.Join(dir, fmt.Sprintf("m%02d/p%03d/f%06d.js", j%20, j%400, j))
		if err := os.WriteFile(p, fmt.Appendf(nil, "changed %d\n", i), 0o644); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		next, st, err := Snapshot(ctx, dir, m, blobs, nil)
		if err != nil {
			b.Fatal(err)
		}
		snap += time.Since(start)
		if st.Hashed == 0 || st.Files != files {
			b.Fatalf("snapshot read %d bytes of %d files, want the changed one of %d", st.Hashed, st.Files, files)
		}
		m = next
		start = time.Now()
		if _, err := bareWalk(dir); err != nil {
			b.Fatal(err)
		}
		floor += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(snap.Seconds()*1000/n, "snapshot-ms/op")
	b.ReportMetric(floor.Seconds()*1000/n, "walk-ms/op")
	b.ReportMetric(snap.Seconds()/floor.Seconds(), "snapshot/walk")
}
