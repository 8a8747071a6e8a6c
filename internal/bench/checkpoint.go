package bench

import (
	"cloud.google.com/go/storage"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/sandrun/sandrun/internal/workspace"
)

// checkpoint measures a workspace checkpoint into Cloud Storage and its
// restore, as hosts do them, for a fresh workspace and for the same one
// after 1 % of it changed, against writing and reading its bytes as one
// plain object.
func (r *runner) checkpoint(ctx context.Context) error {
	mb := 100
	if r.cfg.Quick {
		mb = 20
	}
	dir := filepath.Join(r.state, "bench-workspace")
	total, err := makeWorkspace(dir, int64(mb)<<20)
	if err != nil {
		return err
	}
	floorWrite, floorRead, err := r.rawObject(ctx, total)
	if err != nil {
		return err
	}
	mbs := func(d time.Duration) float64 { return float64(total) / (1 << 20) / d.Seconds() }
	for _, round := range []string{"fresh", "after 1% changed"} {
		if round != "fresh" {
			if err := changePercent(dir, 1); err != nil {
				return err
			}
		}
		obj := r.clients.Storage.Bucket(r.sys.Bucket).Object("bench/checkpoint-" + uuid.NewString())
		start := time.Now()
		w := obj.NewWriter(ctx)
		stats, err := workspace.Checkpoint(ctx, w, dir)
		if err != nil {
			w.Close()
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		cp := time.Since(start)
		archive := w.Attrs().Size
		target := filepath.Join(r.state, "bench-restore-"+uuid.NewString()[:8])
		start = time.Now()
		rd, err := obj.NewReader(ctx)
		if err != nil {
			return err
		}
		_, err = workspace.Restore(ctx, target, rd)
		rd.Close()
		if err != nil {
			return err
		}
		rs := time.Since(start)
		os.RemoveAll(target)
		// A restore writes every file of the workspace: its floor is
		// reading the same archive and unpacking it with tar, one after
		// the other.
		untar, err := r.untar(ctx, obj, target)
		os.RemoveAll(target)
		obj.Delete(ctx)
		if err != nil {
			return err
		}
		note := fmt.Sprintf("%d files, %d MB, archive %d MB; %.2f s to checkpoint, %.2f s to restore", stats.Files, stats.Bytes>>20, archive>>20, cp.Seconds(), rs.Seconds())
		r.add(Result{Name: fmt.Sprintf("checkpoint %d MB workspace, %s", mb, round), Unit: "MB/s", Value: mbs(cp),
			Floor: mbs(floorWrite), FloorName: "one plain object write", Note: note})
		r.add(Result{Name: fmt.Sprintf("restore %d MB workspace, %s", mb, round), Unit: "MB/s", Value: mbs(rs),
			Floor: mbs(floorRead + untar), FloorName: "one plain object read + tar -xzf of the archive",
			Note: fmt.Sprintf("tar -xzf alone: %.2f s", untar.Seconds())})
	}
	return nil
}

// untar downloads the archive in obj to a file and times `tar -xzf` of it
// into target.
func (r *runner) untar(ctx context.Context, obj *storage.ObjectHandle, target string) (time.Duration, error) {
	file := target + ".tgz"
	defer os.Remove(file)
	rd, err := obj.NewReader(ctx)
	if err != nil {
		return 0, err
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
		return 0, fmt.Errorf("download the archive for tar: %w", err)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return 0, err
	}
	start := time.Now()
	if out, err := exec.CommandContext(ctx, "tar", "-xzf", file, "-C", target).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("tar -xzf: %v: %s", err, out)
	}
	return time.Since(start), nil
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

// changePercent rewrites about pct percent of the workspace's bytes: some
// small files and a slice of one large one.
func changePercent(dir string, pct int) error {
	var files []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() && strings.HasSuffix(p, ".go") {
			files = append(files, p)
		}
		return nil
	})
	for i, p := range files {
		if i%(100/pct) == 0 {
			if err := os.WriteFile(p, []byte("// changed\n"), 0o644); err != nil {
				return err
			}
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, "data0.bin"), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, io.LimitReader(rand.NewChaCha8([32]byte{9}), 512<<10))
	return err
}
