package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"github.com/google/uuid"

	"github.com/sandrun/sandrun/internal/procfs"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/workspace"
)

// checkpoint measures the workspace checkpoints hosts take, through the
// same store and the same local Cloud Storage: what one request that
// writes 1 KB costs in a workspace of 100 MB (bytes uploaded over bytes
// changed, and time against writing 1 KB as one object), what 1 % changed
// costs, and a whole workspace's first checkpoint and restore against a
// tar of the same tree written to and read from one object. With
// Config.LargeCheckpoints it measures the same for 1 GB in four files and
// for 200,000 small files, which take minutes and a few GB of disk.
func (r *runner) checkpoint(ctx context.Context) error {
	mb := 100
	if r.cfg.Quick {
		mb = 20
	}
	trees := []benchTree{{name: fmt.Sprintf("%d MB workspace", mb), fill: func(dir string) (int64, error) { return makeWorkspace(dir, int64(mb)<<20) }}}
	if r.cfg.LargeCheckpoints {
		trees = append(trees,
			benchTree{name: "1 GB in 4 files", fill: func(dir string) (int64, error) { return makeBigFiles(dir, 4, 256<<20) }},
			benchTree{name: "200,000 small files", fill: func(dir string) (int64, error) { return makeSmallFiles(dir, 200_000) }})
	}
	for _, tree := range trees {
		if err := r.checkpointTree(ctx, tree); err != nil {
			return fmt.Errorf("%s: %w", tree.name, err)
		}
	}
	// The local Cloud Storage runs in this process and keeps objects on
	// disk: its memory must not follow the bytes checkpointed.
	if b, err := procfs.PeakRSS(os.Getpid()); err == nil {
		r.add(Result{Name: "bench process peak memory (local cloud, client), checkpoint measurement", Unit: "MB", Value: float64(b >> 20),
			Note: "the process's peak resident memory since it started (VmHWM)"})
	}
	return nil
}

// benchTree is a workspace the checkpoint measurement fills.
type benchTree struct {
	name string
	fill func(dir string) (int64, error)
}

func (r *runner) checkpointTree(ctx context.Context, tree benchTree) error {
	dir := filepath.Join(r.state, "bench-workspace-"+uuid.NewString()[:8])
	defer os.RemoveAll(dir)
	total, err := tree.fill(dir)
	if err != nil {
		return err
	}
	store := session.NewStore(r.clients.Firestore, r.clients.Storage, session.Config{Bucket: r.sys.Bucket})
	sessionID := "bench-checkpoint-" + uuid.NewString()[:8]
	blobs := store.Blobs(sessionID)
	mbs := func(d time.Duration) float64 { return float64(total) / (1 << 20) / d.Seconds() }

	// The first checkpoint stores everything; its floor is tar -cf of the
	// tree into one object.
	start := time.Now()
	m, st, err := workspace.Snapshot(ctx, dir, nil, blobs, nil)
	if err != nil {
		return err
	}
	first := time.Since(start)
	tarWrite, tarRead, err := r.tarFloor(ctx, dir)
	if err != nil {
		return err
	}
	r.add(Result{Name: "checkpoint " + tree.name + ", first", Unit: "MB/s", Value: mbs(first), Floor: mbs(tarWrite),
		FloorName: "tar -cf of the tree, written as one object",
		Note:      fmt.Sprintf("%d files, %d MB, %d blobs uploaded; %.2f s (floor %.2f s)", st.Files, st.Bytes>>20, st.UploadedBlobs, first.Seconds(), tarWrite.Seconds())})

	// One request that writes 1 KB: what it uploads, over 1 KB, and how
	// long its checkpoint takes against writing 1 KB as one object.
	n := 20
	if r.cfg.Quick {
		n = 5
	}
	var ratios, times, floors []float64
	for i := range n {
		// Content of its own each time: content seen before is not
		// uploaded again.
		content := fmt.Appendf(bytes.Repeat([]byte{'k'}, 1024-8), "%08d", i)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("request-%03d.txt", i)), content, 0o644); err != nil {
			return err
		}
		start := time.Now()
		next, st, err := workspace.Snapshot(ctx, dir, m, blobs, nil)
		if err != nil {
			return err
		}
		// The host writes the manifest as an object of its own.
		root, err := writeManifest(ctx, store, sessionID, i, next)
		if err != nil {
			return err
		}
		times = append(times, ms(time.Since(start)))
		ratios = append(ratios, float64(st.Uploaded+root)/1024)
		m = next
		floor, _, err := r.rawObject(ctx, 1024)
		if err != nil {
			return err
		}
		floors = append(floors, ms(floor))
	}
	slices.Sort(ratios)
	slices.Sort(times)
	slices.Sort(floors)
	r.add(Result{Name: "checkpoint after a 1 KB write, " + tree.name + ": bytes uploaded / bytes written", Unit: "x", Value: ratios[len(ratios)/2],
		Samples: n, Note: fmt.Sprintf("median of %d; besides the file: its manifest page, index page and the manifest", n)})
	r.add(Result{Name: "checkpoint after a 1 KB write, " + tree.name, Unit: "ms", P50: times[len(times)/2], P99: times[len(times)-1],
		Floor: floors[len(floors)/2], FloorName: "one 1 KB object write", Samples: n,
		Note: "a walk of the tree (a stat per entry) and the uploads"})

	if written, err := changePercent(dir, 1); err == nil {
		before := time.Now()
		next, st, err := workspace.Snapshot(ctx, dir, m, blobs, nil)
		if err != nil {
			return err
		}
		m = next
		r.add(Result{Name: "checkpoint after 1% changed, " + tree.name + ": bytes uploaded / bytes written", Unit: "x",
			Value: float64(st.Uploaded) / float64(written),
			Note: fmt.Sprintf("%d KB written (512 KB of them into one 20 MB file, which is uploaded whole), %d KB read as changed, %d KB uploaded, %.2f s",
				written>>10, st.Hashed>>10, st.Uploaded>>10, time.Since(before).Seconds())})
	}

	// Restore on a new host: manifest pages and blobs into an empty
	// directory; its floor is reading the tar object and tar -xf.
	target := dir + "-restored"
	defer os.RemoveAll(target)
	stored, err := m.Encode()
	if err != nil {
		return err
	}
	fresh, err := workspace.DecodeManifest(stored)
	if err != nil {
		return err
	}
	start = time.Now()
	rst, err := workspace.RestoreSnapshot(ctx, target, fresh, blobs)
	if err != nil {
		return err
	}
	restore := time.Since(start)
	r.add(Result{Name: "restore " + tree.name, Unit: "MB/s", Value: mbs(restore), Floor: mbs(tarRead),
		FloorName: "one object read, then tar -xf",
		Note:      fmt.Sprintf("%d files; %.2f s (floor %.2f s)", rst.Files, restore.Seconds(), tarRead.Seconds())})
	return store.Purge(ctx, sessionID)
}

// writeManifest stores m as the host does, and returns its size.
func writeManifest(ctx context.Context, store *session.Store, sessionID string, seq int, m *workspace.Manifest) (int64, error) {
	data, err := m.Encode()
	if err != nil {
		return 0, err
	}
	w := store.CreateObject(ctx, fmt.Sprintf("sessions/%s/checkpoints/bench-%06d.manifest.gz", sessionID, seq), "application/gzip")
	if _, err := w.Write(data); err != nil {
		w.Close()
		return 0, err
	}
	return int64(len(data)), w.Close()
}

// tarFloor times the plain way to keep and bring back the tree: tar -cf
// into a file written as one object, and the object read into a file and
// unpacked with tar -xf.
func (r *runner) tarFloor(ctx context.Context, dir string) (write, read time.Duration, err error) {
	file := dir + ".tar"
	defer os.Remove(file)
	obj := r.clients.Storage.Bucket(r.sys.Bucket).Object("floor/" + uuid.NewString())
	defer obj.Delete(context.WithoutCancel(ctx))
	start := time.Now()
	if out, err := exec.CommandContext(ctx, "tar", "-cf", file, "-C", dir, ".").CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("tar -cf: %v: %s", err, out)
	}
	if err := copyToObject(ctx, obj, file); err != nil {
		return 0, 0, err
	}
	write = time.Since(start)
	os.Remove(file)
	target := dir + "-floor"
	defer os.RemoveAll(target)
	start = time.Now()
	rd, err := obj.NewReader(ctx)
	if err != nil {
		return 0, 0, err
	}
	f, err := os.Create(file)
	if err == nil {
		_, err = io.Copy(f, rd)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	rd.Close()
	if err != nil {
		return 0, 0, fmt.Errorf("read the tar object: %w", err)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return 0, 0, err
	}
	if out, err := exec.CommandContext(ctx, "tar", "-xf", file, "-C", target).CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("tar -xf: %v: %s", err, out)
	}
	return write, time.Since(start), nil
}

func copyToObject(ctx context.Context, obj *storage.ObjectHandle, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	w := obj.NewWriter(ctx)
	if _, err := io.Copy(w, f); err != nil {
		w.Close()
		return fmt.Errorf("write the tar object: %w", err)
	}
	return w.Close()
}

// makeBigFiles writes n files of size random bytes.
func makeBigFiles(dir string, n int, size int64) (int64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	for i := range n {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("data%d.bin", i)))
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(f, io.LimitReader(rand.NewChaCha8([32]byte{byte(i), 7}), size))
		f.Close()
		if err != nil {
			return 0, err
		}
	}
	return int64(n) * size, nil
}

// makeSmallFiles writes n distinct files of 100 bytes to 2 KB, 500 to a
// directory.
func makeSmallFiles(dir string, n int) (int64, error) {
	rng := rand.New(rand.NewPCG(3, 4))
	var total int64
	buf := make([]byte, 2048)
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("d%03d/f%06d.txt", i/500, i))
		if i%500 == 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return 0, err
			}
		}
		size := 100 + rng.IntN(1948)
		for j := range size {
			buf[j] = 'a' + byte(rng.IntN(26))
		}
		if err := os.WriteFile(p, buf[:size], 0o644); err != nil {
			return 0, err
		}
		total += int64(size)
	}
	return total, nil
}

// makeWorkspace fills dir with about size bytes, as a project tree has
// them: many small text files (a fifth of the bytes) and a few large
// binary ones. It returns the bytes written.
func makeWorkspace(dir string, size int64) (int64, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("func return if else for range var const type struct import package error nil true false string int byte")
	var total int64
	small := size / 5
	for i := 0; total < small; i++ {
		var b strings.Builder
		for b.Len() < 8<<10 {
			b.WriteString(words[rng.IntN(len(words))])
			b.WriteByte(" \n"[rng.IntN(2)])
		}
		p := filepath.Join(dir, fmt.Sprintf("src/pkg%02d/file%04d.go", i%50, i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return 0, err
		}
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			return 0, err
		}
		total += int64(b.Len())
	}
	for i := 0; total < size; i++ {
		n := min(size-total, 20<<20)
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("data%d.bin", i)))
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(f, io.LimitReader(rand.NewChaCha8([32]byte{byte(i)}), n))
		f.Close()
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// changePercent rewrites some small files (one in 100/pct) and 512 KB of
// one large file, and returns the bytes it wrote.
func changePercent(dir string, pct int) (int64, error) {
	var files []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() && strings.HasSuffix(p, ".go") {
			files = append(files, p)
		}
		return nil
	})
	const changed = "// changed\n"
	var written int64
	for i, p := range files {
		if i%(100/pct) == 0 {
			if err := os.WriteFile(p, []byte(changed), 0o644); err != nil {
				return 0, err
			}
			written += int64(len(changed))
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, "data0.bin"), os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := io.Copy(f, io.LimitReader(rand.NewChaCha8([32]byte{9}), 512<<10))
	return written + n, err
}
