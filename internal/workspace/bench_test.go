package workspace

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
