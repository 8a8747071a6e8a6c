package emulator_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/emulatortest"
)

const bucket = "sandrun-test"

func newStorage(t *testing.T) *storage.BucketHandle {
	t.Helper()
	c, err := storage.NewClient(context.Background())
	if err != nil {
		t.Fatalf("storage client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c.Bucket(bucket)
}

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func write(t *testing.T, w *storage.Writer, data []byte) error {
	t.Helper()
	if _, err := io.Copy(w, bytes.NewReader(data)); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

func TestStorageLargeObjectRoundTrip(t *testing.T) {
	t.Run("temporary", func(t *testing.T) { testLargeObjectRoundTrip(t, "") })
	t.Run("storage_dir", func(t *testing.T) { testLargeObjectRoundTrip(t, t.TempDir()) })
}

func testLargeObjectRoundTrip(t *testing.T, dir string) {
	emulatortest.Start(t, emulator.Config{Buckets: []string{bucket}, StorageDir: dir})
	b := newStorage(t)
	ctx := context.Background()

	// 50 MB is above the client's default 16 MiB chunk, so it travels as a
	// resumable upload in several chunks.
	data := randomBytes(50 << 20)
	w := b.Object("big").NewWriter(ctx)
	if w.ChunkSize != 16<<20 {
		t.Fatalf("client's default chunk size is %d; the test assumes 16 MiB", w.ChunkSize)
	}
	if err := write(t, w, data); err != nil {
		t.Fatalf("upload: %v", err)
	}
	if w.Attrs().Size != int64(len(data)) {
		t.Fatalf("stored size %d, want %d", w.Attrs().Size, len(data))
	}
	r, err := b.Object("big").NewReader(ctx)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	if n != int64(len(data)) || !bytes.Equal(h.Sum(nil), sha256Sum(data)) {
		t.Fatalf("downloaded %d bytes that differ from the %d uploaded", n, len(data))
	}

	// Ranged reads, including one running past the end.
	for _, rg := range []struct{ off, length int64 }{{0, 10}, {17 << 20, 1 << 20}, {int64(len(data)) - 5, 100}} {
		rr, err := b.Object("big").NewRangeReader(ctx, rg.off, rg.length)
		if err != nil {
			t.Fatalf("range %d+%d: %v", rg.off, rg.length, err)
		}
		got, err := io.ReadAll(rr)
		rr.Close()
		if err != nil {
			t.Fatalf("range %d+%d: %v", rg.off, rg.length, err)
		}
		end := min(rg.off+rg.length, int64(len(data)))
		if !bytes.Equal(got, data[rg.off:end]) {
			t.Fatalf("range %d+%d: got %d bytes that differ", rg.off, rg.length, len(got))
		}
	}
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func TestStoragePreconditionsListAndDelete(t *testing.T) {
	emulatortest.Start(t, emulator.Config{Buckets: []string{bucket}})
	b := newStorage(t)
	ctx := context.Background()

	obj := b.Object("sessions/s1/checkpoint")
	if err := write(t, obj.If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx), []byte("v1")); err != nil {
		t.Fatalf("create-only write of a new object: %v", err)
	}
	err := write(t, obj.If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx), []byte("v2"))
	if !isPreconditionFailed(err) {
		t.Fatalf("create-only write of an existing object: %v, want 412", err)
	}
	attrs, err := obj.Attrs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = write(t, obj.If(storage.Conditions{GenerationMatch: attrs.Generation + 1}).NewWriter(ctx), []byte("stale"))
	if !isPreconditionFailed(err) {
		t.Fatalf("write with a wrong generation: %v, want 412", err)
	}
	if err := write(t, obj.If(storage.Conditions{GenerationMatch: attrs.Generation}).NewWriter(ctx), []byte("v2")); err != nil {
		t.Fatalf("write with the current generation: %v", err)
	}
	r, err := obj.NewReader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if string(got) != "v2" {
		t.Fatalf("content %q, want v2 (the stale writes must have changed nothing)", got)
	}

	for _, name := range []string{"sessions/s1/results/r1", "sessions/s10/checkpoint", "sessions/s2/checkpoint"} {
		if err := write(t, b.Object(name).NewWriter(ctx), []byte(name)); err != nil {
			t.Fatal(err)
		}
	}
	if got := list(t, b, "sessions/s1/"); !slices.Equal(got, []string{"sessions/s1/checkpoint", "sessions/s1/results/r1"}) {
		t.Fatalf("list sessions/s1/: %v", got)
	}
	it := b.Objects(ctx, &storage.Query{Prefix: "sessions/", Delimiter: "/"})
	var prefixes []string
	for a, err := it.Next(); !errors.Is(err, iterator.Done); a, err = it.Next() {
		if err != nil {
			t.Fatalf("list with a delimiter: %v", err)
		}
		prefixes = append(prefixes, a.Prefix)
	}
	if !slices.Equal(prefixes, []string{"sessions/s1/", "sessions/s10/", "sessions/s2/"}) {
		t.Fatalf("prefixes under sessions/: %v", prefixes)
	}
	current, err := obj.Attrs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := obj.If(storage.Conditions{GenerationMatch: current.Generation + 1}).Delete(ctx); !isPreconditionFailed(err) {
		t.Fatalf("delete with a wrong generation: %v, want 412", err)
	}
	if err := obj.Generation(current.Generation + 1).Delete(ctx); !errors.Is(err, storage.ErrObjectNotExist) {
		t.Fatalf("delete of a generation that is not the live one: %v, want ErrObjectNotExist", err)
	}
	for _, name := range list(t, b, "sessions/s1/") {
		a, err := b.Object(name).Attrs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Object(name).If(storage.Conditions{GenerationMatch: a.Generation}).Delete(ctx); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
	}
	if got := list(t, b, "sessions/s1/"); len(got) != 0 {
		t.Fatalf("objects left after delete: %v", got)
	}
	if _, err := obj.NewReader(ctx); !errors.Is(err, storage.ErrObjectNotExist) {
		t.Fatalf("read of a deleted object: %v, want ErrObjectNotExist", err)
	}
	if err := obj.Delete(ctx); !errors.Is(err, storage.ErrObjectNotExist) {
		t.Fatalf("delete of a deleted object: %v, want ErrObjectNotExist", err)
	}
	if got := list(t, b, "sessions/"); !slices.Equal(got, []string{"sessions/s10/checkpoint", "sessions/s2/checkpoint"}) {
		t.Fatalf("other sessions' objects: %v", got)
	}
}

// TestStorageOnDiskResumableUploads: resumable uploads go to disk as they
// arrive (storage_uploads.go); to the official client they
// behave as Google's do: create-only and generation preconditions, the
// generation the writer reports is the one reads find, and the object
// lists, reads by generation and deletes as any other.
func TestStorageOnDiskResumableUploads(t *testing.T) {
	emulatortest.Start(t, emulator.Config{Buckets: []string{bucket}, StorageDir: t.TempDir()})
	b := newStorage(t)
	ctx := context.Background()
	upload := func(o *storage.ObjectHandle, data []byte) (*storage.ObjectAttrs, error) {
		w := o.NewWriter(ctx)
		w.ChunkSize = 256 << 10 // several chunks, each a request
		w.ContentType = "application/x-test"
		err := write(t, w, data)
		return w.Attrs(), err
	}
	obj := b.Object("sessions/s1/results/r1/stdout")
	v1 := randomBytes(600 << 10)
	attrs, err := upload(obj.If(storage.Conditions{DoesNotExist: true}), v1)
	if err != nil {
		t.Fatalf("create-only upload: %v", err)
	}
	if _, err := upload(obj.If(storage.Conditions{DoesNotExist: true}), v1); !isPreconditionFailed(err) {
		t.Fatalf("create-only upload of an existing object: %v, want 412", err)
	}
	if _, err := upload(obj.If(storage.Conditions{GenerationMatch: attrs.Generation + 1}), v1); !isPreconditionFailed(err) {
		t.Fatalf("upload with a wrong generation: %v, want 412", err)
	}
	r, err := obj.Generation(attrs.Generation).NewReader(ctx)
	if err != nil {
		t.Fatalf("read at the generation the writer reported (%d): %v", attrs.Generation, err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("read back %d bytes (%v), want the %d uploaded", len(got), err, len(v1))
	}
	stored, err := obj.Attrs(ctx)
	if err != nil || stored.Size != int64(len(v1)) || stored.ContentType != "application/x-test" || !bytes.Equal(stored.MD5, attrs.MD5) || stored.CRC32C != attrs.CRC32C {
		t.Fatalf("stored attributes %+v (%v), writer's %+v", stored, err, attrs)
	}
	v2 := randomBytes(300 << 10)
	if _, err := upload(obj.If(storage.Conditions{GenerationMatch: attrs.Generation}), v2); err != nil {
		t.Fatalf("upload with the current generation: %v", err)
	}
	if got := list(t, b, "sessions/"); !slices.Equal(got, []string{"sessions/s1/results/r1/stdout"}) {
		t.Fatalf("list: %v", got)
	}
	if err := obj.Delete(ctx); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if got := list(t, b, "sessions/"); len(got) != 0 {
		t.Fatalf("left after delete: %v", got)
	}
}

func isPreconditionFailed(err error) bool {
	var e *googleapi.Error
	return errors.As(err, &e) && e.Code == http.StatusPreconditionFailed
}

func list(t *testing.T, b *storage.BucketHandle, prefix string) []string {
	t.Helper()
	var names []string
	it := b.Objects(context.Background(), &storage.Query{Prefix: prefix})
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return names
		}
		if err != nil {
			t.Fatalf("list %s: %v", prefix, err)
		}
		names = append(names, a.Name)
	}
}

// TestStorageServesTheNodeClientsPaths: the official Node.js client
// (@google-cloud/storage 7.x) given STORAGE_EMULATOR_HOST=http://HOST:PORT,
// as Suite.Env sets it, sends its JSON API calls (metadata, listing and
// downloads) to HOST:PORT/b/... with no /storage/v1 prefix, and its uploads
// to /upload/storage/v1/b/...: both must work. These are the requests it
// sends for a listing, a download and a metadata read (checked by hand
// against the client, see docs).
func TestStorageServesTheNodeClientsPaths(t *testing.T) {
	s := emulatortest.Start(t, emulator.Config{Buckets: []string{bucket}})
	w := newStorage(t).Object("dir/hello.txt").NewWriter(context.Background())
	if err := write(t, w, []byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.StorageAddr
	for _, tc := range []struct{ path, want string }{
		{"/b/" + bucket + "/o/dir%2Fhello.txt?alt=media", "hello\n"},
		{"/b/" + bucket + "/o/dir%2Fhello.txt", `"name":"dir/hello.txt"`},
		{"/b/" + bucket + "/o?prefix=dir%2F", `"name":"dir/hello.txt"`},
		{"/b/" + bucket, `"name":"` + bucket + `"`},
	} {
		resp, err := http.Get(base + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(tc.want)) {
			t.Errorf("GET %s: %d %.200s; want 200 with %s", tc.path, resp.StatusCode, body, tc.want)
		}
	}
}

// TestStorageKeepsObjectsOnDisk: the local Cloud Storage keeps its objects
// on disk whatever way they arrive (one streamed multipart request, a
// resumable upload in chunks, many small multipart uploads), so that
// writing 512 MiB does not grow the memory of the process that serves it
// (here the test's own, which also runs the client: a bound far above
// what either holds, and far below what the objects weigh).
func TestStorageKeepsObjectsOnDisk(t *testing.T) {
	emulatortest.Start(t, emulator.Config{Buckets: []string{bucket}})
	b := newStorage(t)
	ctx := context.Background()

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	peak := make(chan uint64)
	stop := make(chan struct{})
	go func() {
		// Sampled, so a short peak between samples can be missed; the
		// objects would stay in a heap that held them.
		var m runtime.MemStats
		var top uint64
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&m)
			top = max(top, m.HeapInuse)
			select {
			case <-stop:
				peak <- top
				return
			case <-tick.C:
			}
		}
	}()

	var written int64
	put := func(name string, size int64, chunk int) {
		t.Helper()
		w := b.Object(name).If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx)
		w.ChunkSize = chunk
		if _, err := io.Copy(w, io.LimitReader(rand.NewChaCha8([32]byte{byte(written >> 20)}), size)); err != nil {
			w.Close()
			t.Fatalf("write %s: %v", name, err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
		if got := w.Attrs().Size; got != size {
			t.Fatalf("%s stored with %d bytes, want %d", name, got, size)
		}
		written += size
	}
	for i := range 4 {
		put(fmt.Sprintf("streamed/%d", i), 64<<20, 0) // one multipart request
	}
	for i := range 3 {
		put(fmt.Sprintf("resumable/%d", i), 64<<20, 8<<20)
	}
	for i := range 256 {
		put(fmt.Sprintf("small/%03d", i), 256<<10, 512<<10) // multipart; the client buffers a chunk of its own
	}
	close(stop)
	top := <-peak
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	const bound = 64 << 20
	t.Logf("wrote %d MiB: heap in use %d MiB before, %d MiB at its sampled peak, %d MiB after",
		written>>20, before.HeapInuse>>20, top>>20, after.HeapInuse>>20)
	if written != 512<<20 {
		t.Fatalf("wrote %d bytes, want 512 MiB", written)
	}
	if top > before.HeapInuse+bound {
		t.Fatalf("the heap grew by %d MiB while 512 MiB were written; want under %d MiB", (top-before.HeapInuse)>>20, bound>>20)
	}
	if got := list(t, b, "small/"); len(got) != 256 {
		t.Fatalf("listed %d small objects, want 256", len(got))
	}
}

// TestStorageSmallUploadsKeepTheirAttributes: an object small enough to
// travel in one multipart request keeps what the writer set (content
// type, metadata, the other headers), reports its MD5, CRC32C and
// creation time (which the blob sweep compares with a lease's start), and is
// refused whole (400, nothing stored) when the CRC32C the writer declares
// does not match its bytes.
func TestStorageSmallUploadsKeepTheirAttributes(t *testing.T) {
	emulatortest.Start(t, emulator.Config{Buckets: []string{bucket}})
	b := newStorage(t)
	ctx := context.Background()
	data := []byte("hello, disk\n")
	w := b.Object("attrs/hello.txt").NewWriter(ctx)
	w.ContentType = "text/plain"
	w.CacheControl = "no-store"
	w.ContentDisposition = "attachment"
	w.Metadata = map[string]string{"session": "s1"}
	if err := write(t, w, data); err != nil {
		t.Fatalf("upload: %v", err)
	}
	a, err := b.Object("attrs/hello.txt").Attrs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(data)
	if a.ContentType != "text/plain" || a.CacheControl != "no-store" || a.ContentDisposition != "attachment" ||
		a.Metadata["session"] != "s1" || a.Size != int64(len(data)) || !bytes.Equal(a.MD5, sum[:]) ||
		a.CRC32C != crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)) || a.Generation != w.Attrs().Generation ||
		time.Since(a.Created).Abs() > time.Minute || !a.Updated.Equal(a.Created) {
		t.Fatalf("stored attributes %+v; writer's %+v", a, w.Attrs())
	}

	w = b.Object("attrs/bad.txt").NewWriter(ctx)
	w.CRC32C, w.SendCRC32C = 12345, true
	err = write(t, w, data)
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) || gerr.Code != http.StatusBadRequest {
		t.Fatalf("upload with a wrong CRC32C: %v, want 400", err)
	}
	if _, err := b.Object("attrs/bad.txt").Attrs(ctx); !errors.Is(err, storage.ErrObjectNotExist) {
		t.Fatalf("the refused object: %v, want ErrObjectNotExist", err)
	}
}

// TestStorageTemporaryDirectoryGoesWithTheSuite: without
// Config.StorageDir, objects are files in a temporary directory that
// Close removes; with it, they stay there after Close.
func TestStorageTemporaryDirectoryGoesWithTheSuite(t *testing.T) {
	kept := t.TempDir()
	for _, dir := range []string{"", kept} {
		ctx := context.Background()
		s, err := emulator.Start(ctx, emulator.Config{Buckets: []string{bucket}, StorageDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		c, err := storage.NewClient(ctx, option.WithEndpoint("http://"+s.StorageAddr+"/storage/v1/"), option.WithoutAuthentication())
		if err != nil {
			t.Fatal(err)
		}
		if err := write(t, c.Bucket(bucket).Object("a/b").NewWriter(ctx), []byte("on disk")); err != nil {
			t.Fatalf("upload: %v", err)
		}
		c.Close()
		file := filepath.Join(s.StorageDir, bucket, "a", "b")
		if got, err := os.ReadFile(file); err != nil || string(got) != "on disk" {
			t.Fatalf("the object's file %s: %q, %v", file, got, err)
		}
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		_, err = os.Stat(file)
		if dir == "" && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the temporary directory's object after Close: %v, want it gone", err)
		}
		if dir != "" && err != nil {
			t.Errorf("the object in Config.StorageDir after Close: %v, want it kept", err)
		}
	}
}
