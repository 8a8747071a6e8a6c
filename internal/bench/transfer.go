package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/client"
	"github.com/sandrun/sandrun/internal/procfs"
	"github.com/sandrun/sandrun/internal/session"
)

// transfer measures file.upload and file.download through a session, and
// the host's peak memory, against writing and reading the same bytes
// straight to and from Cloud Storage.
func (r *runner) transfer(ctx context.Context) error {
	large := 500
	if r.cfg.Quick {
		large = 50
	}
	for _, mb := range []int{10, large} {
		s := fmt.Sprintf("bench-transfer-%d", mb)
		if _, _, err := r.exec(ctx, s, "true"); err != nil {
			return err
		}
		size := int64(mb) << 20
		floorUp, floorDown, err := r.rawObject(ctx, size)
		if err != nil {
			return err
		}
		t, err := r.roundTrip(ctx, s, size)
		if err != nil {
			return err
		}
		up, down := t.up, t.down
		mbs := func(d time.Duration) float64 { return float64(mb) / d.Seconds() }
		// Either way the bytes are written to Cloud Storage once and read
		// from it once: that is the floor of both.
		floor := floorUp + floorDown
		peak := ""
		if pid, err := r.hostPID(ctx, s); err == nil {
			if b, err := procfs.PeakRSS(pid); err == nil {
				peak = fmt.Sprintf("host peak memory %d MB", b>>20)
				r.add(Result{Name: fmt.Sprintf("host peak memory, %d MB transfer", mb), Unit: "MB", Value: float64(b >> 20)})
			}
		}
		r.add(Result{Name: fmt.Sprintf("upload %d MB (file.upload)", mb), Unit: "MB/s", Value: mbs(up),
			Floor: mbs(floor), FloorName: "object write + read",
			Note: fmt.Sprintf("%.2f s: staging %.2f s, then the request %.2f s of which the host's run %.2f s (floor: write %.2f s, read %.2f s); %s",
				up.Seconds(), t.stage.Seconds(), (up - t.stage).Seconds(), t.upRun.Seconds(), floorUp.Seconds(), floorDown.Seconds(), peak)})
		r.add(Result{Name: fmt.Sprintf("download %d MB (file.download)", mb), Unit: "MB/s", Value: mbs(down),
			Floor: mbs(floor), FloorName: "object write + read",
			Note: fmt.Sprintf("%.2f s: the request %.2f s of which the host's run %.2f s, then reading the object %.2f s", down.Seconds(), (down - t.read).Seconds(), t.downRun.Seconds(), t.read.Seconds())})
	}
	return nil
}

// transferTimes is where a round trip's time went.
type transferTimes struct {
	up, down time.Duration
	// stage is the upload's staging write, read the download's object
	// read; upRun and downRun the host's run of each request.
	stage, read, upRun, downRun time.Duration
}

// roundTrip uploads size pseudo-random bytes into the session and
// downloads them, checking they come back.
func (r *runner) roundTrip(ctx context.Context, sessionID string, size int64) (t transferTimes, err error) {
	reqID := uuid.NewString()
	start := time.Now()
	sent := sha256.New()
	object, err := r.client.Stage(ctx, sessionID, reqID, "big.bin", io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{1}), size), sent))
	if err != nil {
		return t, err
	}
	t.stage = time.Since(start)
	done, err := r.client.Do(ctx, &api.Request{RequestID: reqID, SessionID: sessionID, Op: api.OpFileUpload, Path: "big.bin", Object: object})
	if err != nil {
		return t, err
	}
	if done.Status != api.StatusOK {
		return t, fmt.Errorf("upload: %+v", done.Error)
	}
	t.up, t.upRun = time.Since(start), seconds(done.Timing.RunSeconds)
	start = time.Now()
	done, err = r.client.Do(ctx, &api.Request{RequestID: uuid.NewString(), SessionID: sessionID, Op: api.OpFileDownload, Path: "big.bin"})
	if err != nil {
		return t, err
	}
	if done.Status != api.StatusOK {
		return t, fmt.Errorf("download: %+v", done.Error)
	}
	t.downRun = seconds(done.Timing.RunSeconds)
	readStart := time.Now()
	rd, err := client.ReadObject(ctx, done.Object)
	if err != nil {
		return t, err
	}
	defer rd.Close()
	got := sha256.New()
	n, err := io.Copy(got, rd)
	if err != nil || n != size {
		return t, fmt.Errorf("download: %d of %d bytes: %v", n, size, err)
	}
	if !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
		return t, fmt.Errorf("download: the %d bytes differ from those uploaded", size)
	}
	t.read = time.Since(readStart)
	t.down = time.Since(start)
	return t, nil
}

// rawObject writes and reads size bytes straight to and from an object.
func (r *runner) rawObject(ctx context.Context, size int64) (write, read time.Duration, err error) {
	obj := r.clients.Storage.Bucket(r.sys.Bucket).Object("floor/" + uuid.NewString())
	defer obj.Delete(context.WithoutCancel(ctx))
	start := time.Now()
	w := obj.NewWriter(ctx)
	if _, err := io.Copy(w, io.LimitReader(rand.NewChaCha8([32]byte{2}), size)); err != nil {
		w.Close()
		return 0, 0, err
	}
	if err := w.Close(); err != nil {
		return 0, 0, err
	}
	write = time.Since(start)
	start = time.Now()
	rd, err := obj.NewReader(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer rd.Close()
	if _, err := io.Copy(io.Discard, rd); err != nil {
		return 0, 0, err
	}
	return write, time.Since(start), nil
}

// hostPID is the pid of the session's host: the entrypoint of the
// execution that holds its lease.
func (r *runner) hostPID(ctx context.Context, sessionID string) (int, error) {
	store := session.NewStore(r.clients.Firestore, nil, session.Config{Bucket: r.sys.Bucket})
	execution, err := store.HostOf(ctx, sessionID)
	if err != nil {
		return 0, err
	}
	pids := r.suite.CloudRun.TaskPIDs(r.sys.JobName() + "/executions/" + execution)
	if execution == "" || len(pids) != 1 {
		return 0, fmt.Errorf("session %s: host %q runs as %v", sessionID, execution, pids)
	}
	return pids[0], nil
}
