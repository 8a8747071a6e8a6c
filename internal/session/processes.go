package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/storage"
)

// processesCollection holds a session's background processes:
// sessions/{session_id}/processes/{epoch}-{pid}.
const processesCollection = "processes"

// Process statuses in the registry.
const (
	ProcessRunning = "running"
	ProcessExited  = "exited"
	ProcessKilled  = "killed"
	// ProcessLost: its host ended without saying how the process ended.
	ProcessLost = "lost"
)

// ProcessDoc is a background process in the session's registry.
type ProcessDoc struct {
	Pid        int       `firestore:"pid"`
	Epoch      int64     `firestore:"epoch"`
	Execution  string    `firestore:"execution"`
	Command    string    `firestore:"command"`
	Status     string    `firestore:"status"`
	ExitCode   *int      `firestore:"exit_code"`
	Signal     string    `firestore:"signal"`
	Reason     string    `firestore:"reason"`
	StartedAt  time.Time `firestore:"started_at"`
	FinishedAt time.Time `firestore:"finished_at"`
	// StdoutObject and StderrObject hold the process's logs as last shipped.
	StdoutObject string    `firestore:"stdout_object"`
	StderrObject string    `firestore:"stderr_object"`
	ExpireAt     time.Time `firestore:"expire_at"`
}

// ProcessKey names a process of a session across its hosts.
func ProcessKey(epoch int64, pid int) string { return fmt.Sprintf("%d-%d", epoch, pid) }

// ProcessLogObject is the object that keeps one stream ("stdout" or
// "stderr") of a background process.
func ProcessLogObject(sessionID string, epoch int64, pid int, stream string) string {
	return objectPrefix(sessionID) + "processes/" + ProcessKey(epoch, pid) + "/" + stream
}

func (s *Store) processRef(sessionID string, epoch int64, pid int) *firestore.DocumentRef {
	return s.sessionRef(sessionID).Collection(processesCollection).Doc(ProcessKey(epoch, pid))
}

// RecordProcess writes a process's registry entry under the lease.
func (s *Store) RecordProcess(ctx context.Context, lease *Lease, p ProcessDoc) error {
	p.Epoch, p.Execution = lease.Epoch, lease.Execution
	err := s.fenced(ctx, lease, func(tx *firestore.Transaction, now time.Time) error {
		p.ExpireAt = now.Add(s.cfg.TTL)
		return tx.Set(s.processRef(lease.SessionID, p.Epoch, p.Pid), p)
	})
	if err != nil {
		return fmt.Errorf("record process %d of session %s: %w", p.Pid, lease.SessionID, err)
	}
	return nil
}

// Processes lists the session's registry, newest first.
func (s *Store) Processes(ctx context.Context, sessionID string) ([]ProcessDoc, error) {
	out, _, err := readAll[ProcessDoc](s.sessionRef(sessionID).Collection(processesCollection).OrderBy("started_at", firestore.Desc).Limit(1000).Documents(ctx),
		"processes of session "+sessionID)
	return out, err
}

// SettleProcesses marks as lost the registry entries that say running
// although the host that ran them is gone (its epoch is past). It returns
// how many it settled.
func (s *Store) SettleProcesses(ctx context.Context) (int, error) {
	docs, refs, err := readAll[ProcessDoc](s.fs.CollectionGroup(processesCollection).Where("status", "==", ProcessRunning).Documents(ctx), "running processes")
	if err != nil {
		return 0, err
	}
	now := s.now()
	settled := 0
	// Each session's lease is first read plainly, once a pass: a live
	// host's processes are left alone with no transaction, which would
	// lock the lease document and hold up the host's renewal (a session
	// with 20 processes did, once a pass).
	leases := map[string]*LeaseDoc{}
	for i, ref := range refs {
		id := sessionOf(ref)
		ld, seen := leases[id]
		if !seen {
			if ld, err = find[LeaseDoc](ctx, s.leaseRef(id)); err != nil {
				return settled, fmt.Errorf("settle process %s: %w", ref.Path, err)
			}
			leases[id] = ld
		}
		if ld != nil && ld.Epoch == docs[i].Epoch && ld.Live(now) {
			continue
		}
		ok := false
		err = s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
			ok = false
			ld, err := txGet[LeaseDoc](tx, s.leaseRef(id))
			if err != nil {
				return err
			}
			cur, err := txGet[ProcessDoc](tx, ref)
			if err != nil || cur == nil || cur.Status != ProcessRunning {
				return err
			}
			if ld != nil && ld.Epoch == cur.Epoch && ld.Live(now) {
				return nil // its host still runs it
			}
			cur.Status, cur.FinishedAt, cur.Reason = ProcessLost, now, "its host ended without reporting how the process ended"
			ok = true
			return tx.Set(ref, *cur)
		})
		if err != nil {
			return settled, fmt.Errorf("settle process %s: %w", ref.Path, err)
		}
		if ok {
			settled++
		}
	}
	return settled, nil
}

// TransferObject is where a file.download puts a file.
func TransferObject(sessionID, requestID, name string) string {
	return objectPrefix(sessionID) + "transfers/" + requestID + "/" + name
}

// Object is an object being read: its content and its whole size.
type Object struct {
	io.ReadCloser
	Size int64
}

// OpenObject reads an object of the sessions' bucket; a missing one is
// ErrNotFound.
func (s *Store) OpenObject(ctx context.Context, name string) (*Object, error) {
	r, err := s.gcs.Bucket(s.cfg.Bucket).Object(name).NewReader(ctx)
	if err != nil {
		if errors.Is(err, storage.ErrObjectNotExist) {
			return nil, fmt.Errorf("object %s: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("open object %s: %w", name, err)
	}
	return &Object{ReadCloser: r, Size: r.Attrs.Size}, nil
}

// ReplaceObject writes an object whole, replacing what was there (process
// logs are shipped again as they grow).
func (s *Store) ReplaceObject(ctx context.Context, name, contentType string, r io.Reader) error {
	w := s.gcs.Bucket(s.cfg.Bucket).Object(name).NewWriter(ctx)
	w.ContentType = contentType
	_, err := copyToObject(w, r)
	return err
}
