package files

import (
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// genReader yields n bytes of a fixed pseudo-random sequence whose period
// (1 MiB + 7) is prime to every buffer size, so that a chunk dropped,
// repeated or moved changes the content. It allocates nothing per Read.
type genReader struct {
	n     int64
	block []byte
	pos   int
}

func newGenReader(n int64) *genReader {
	rng := rand.New(rand.NewPCG(5, 6))
	block := make([]byte, 1<<20+7)
	for i := range block {
		block[i] = byte(rng.Uint32())
	}
	return &genReader{n: n, block: block}
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.n == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.n {
		p = p[:g.n]
	}
	k := copy(p, g.block[g.pos:])
	g.pos = (g.pos + k) % len(g.block)
	g.n -= int64(k)
	return k, nil
}

// TestStream500MB streams 500 MB through an io.Pipe into WriteFrom (as an
// upload from Cloud Storage does) and back out of OpenForRead (as a
// download does), and checks that the bytes round-trip (SHA-256) and that
// memory does not grow with the file: what the whole test allocates is
// bounded by a few buffers.
func TestStream500MB(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 500 MB; skipped with -short")
	}
	const size = 500 << 20
	dir := t.TempDir()
	o := Ops{Cwd: dir}
	ctx := context.Background()
	gen := newGenReader(size) // allocated before measuring: it is the test's source, not the code's

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()

	pr, pw := io.Pipe()
	sent := sha256.New()
	go func() {
		buf := make([]byte, 64<<10)
		_, err := io.CopyBuffer(io.MultiWriter(pw, sent), gen, buf)
		pw.CloseWithError(err)
	}()
	info, err := o.WriteFrom(ctx, "up/big.bin", pr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != size || info.Type != TypeFile || info.Mode != DefaultMode {
		t.Fatalf("WriteFrom = %+v", info)
	}
	written := time.Since(start)

	f, info, err := o.OpenForRead(ctx, "up/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if info.Size != size {
		t.Fatalf("OpenForRead size %d", info.Size)
	}
	got := sha256.New()
	n, err := io.CopyBuffer(got, struct{ io.Reader }{f}, make([]byte, 256<<10))
	if err != nil || n != size {
		t.Fatalf("read back %d bytes, %v", n, err)
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)

	if string(sent.Sum(nil)) != string(got.Sum(nil)) {
		t.Fatalf("the file read back differs from what was streamed in")
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("500 MB: write %v (%.0f MB/s), write+read %v; allocated %d KiB in all, heap in use %d KiB before, %d KiB after",
		written.Round(time.Millisecond), size/written.Seconds()/1e6, elapsed.Round(time.Millisecond),
		alloc>>10, before.HeapInuse>>10, after.HeapInuse>>10)
	if alloc > 4<<20 {
		t.Errorf("streaming 500 MB allocated %d bytes; memory must not grow with the file", alloc)
	}
}
