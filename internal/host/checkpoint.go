package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/shell"
	"github.com/sandrun/sandrun/internal/telemetry"
	"github.com/sandrun/sandrun/internal/workspace"
)

// restore rebuilds the session's workspace from its last checkpoint and
// takes up its shell state.
func (h *Host) restore(ctx context.Context) error {
	start := time.Now()
	dir, err := h.workspaceDir()
	if err != nil {
		return err
	}
	// A workspace left by an earlier host of this session on the same disk
	// is stale: the checkpoint is the truth. Only what is in it goes: the
	// directory itself may sit where the host cannot remove it (the
	// image's /workspace, which uid 1000 owns in a root-owned /).
	if err := clearDir(dir); err != nil {
		return fmt.Errorf("clear workspace %s: %w", dir, err)
	}
	h.state = shell.State{Cwd: dir, Env: map[string]string{}}
	for k, v := range h.cfg.BaseEnv {
		h.state.Env[k] = v
	}
	if h.state.Env["HOME"] == "" {
		h.state.Env["HOME"] = dir
	}
	if !h.lease.Shell.Empty() {
		cwd, env := h.lease.Shell.Values()
		h.state = shell.State{Cwd: cwd, Env: env}
	}
	h.lastCheckpoint = time.Now()
	cp := h.lease.Checkpoint
	if cp == nil {
		return nil
	}
	var stats workspace.Stats
	if cp.Format == session.FormatManifest {
		data, err := h.store.ReadCheckpoint(ctx, cp)
		if err != nil {
			return err
		}
		m, err := workspace.DecodeManifest(data)
		if err != nil {
			return fmt.Errorf("restore checkpoint %s: %w", cp.Object, err)
		}
		if stats, err = workspace.RestoreSnapshot(ctx, dir, m, h.blobs()); err != nil {
			return fmt.Errorf("restore checkpoint %s: %w", cp.Object, err)
		}
		h.manifest = m
	} else {
		// A checkpoint of the single-archive format hosts wrote before: the
		// first snapshot after it stores the whole workspace once.
		r, err := h.store.OpenCheckpoint(ctx, cp)
		if err != nil {
			return err
		}
		defer r.Close()
		if stats, err = workspace.Restore(ctx, dir, r); err != nil {
			return fmt.Errorf("restore checkpoint %s: %w", cp.Object, err)
		}
	}
	h.restoreSeconds = time.Since(start).Seconds()
	h.logger.Info("checkpoint restored", "event", "checkpoint.restored", "object", cp.Object,
		"files", stats.Files, "bytes", stats.Bytes, "duration_seconds", h.restoreSeconds)
	return nil
}

// blobs is where the session's checkpoint blobs live.
func (h *Host) blobs() workspace.Blobs { return h.store.Blobs(h.cfg.SessionID) }

// pendingCheckpoint is a snapshot stored but not yet the session's
// checkpoint.
type pendingCheckpoint struct {
	cp       session.Checkpoint
	manifest *workspace.Manifest
	stats    workspace.SnapshotStats
	start    time.Time
}

// snapshotAttempts bounds how often a snapshot is taken again when a file
// changed between being hashed and being uploaded.
const snapshotAttempts = 3

// snapshot stores what changed in the workspace since the host's last
// checkpoint and the manifest of the new one, in one round of uploads. It
// returns nil when nothing changed. The caller makes it the session's
// checkpoint (Finish or CommitCheckpoint) and then calls committed.
func (h *Host) snapshot(ctx context.Context) (*pendingCheckpoint, error) {
	dir, err := h.workspaceDir()
	if err != nil {
		return nil, err
	}
	if h.lease.Checkpoint == nil {
		// A session with no checkpoint starts from an empty workspace
		// (restore): while it is still empty there is nothing to store,
		// which spares a new session's first requests their uploads.
		if empty, err := workspace.Empty(dir); err == nil && empty {
			return nil, nil
		}
	}
	p := &pendingCheckpoint{start: time.Now()}
	var stored *session.Checkpoint
	storeManifest := func(ctx context.Context, m *workspace.Manifest) error {
		if cur := h.lease.Checkpoint; cur != nil && cur.Format == session.FormatManifest && m.SameAs(h.manifest) {
			return nil
		}
		data, err := m.Encode()
		if err != nil {
			return err
		}
		h.checkpoints++
		name := session.ManifestObject(h.lease, h.checkpoints)
		gen, err := h.store.PutNewObject(ctx, name, "application/gzip", data)
		if err != nil {
			return fmt.Errorf("write checkpoint manifest: %w", err)
		}
		stored = &session.Checkpoint{Object: name, Format: session.FormatManifest, Generation: gen, Bytes: int64(len(data))}
		return nil
	}
	for attempt := 1; ; attempt++ {
		stored = nil
		p.manifest, p.stats, err = workspace.Snapshot(ctx, dir, h.manifest, h.blobs(), storeManifest)
		if err != nil && stored != nil {
			// The manifest went up beside blobs that did not: nothing
			// will ever point at it.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
			derr := h.store.DeleteObject(dctx, stored.Object)
			cancel()
			if derr != nil {
				h.logger.Warn("deleting an unused checkpoint manifest failed", "event", "checkpoint.gc_failed", "error", derr.Error())
			}
		}
		if err == nil || !errors.Is(err, workspace.ErrChanged) || attempt == snapshotAttempts {
			break
		}
	}
	if p.stats.UploadedBlobs > 0 {
		// Until this snapshot is committed, its blobs are nobody's.
		h.uncommitted = true
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot workspace: %w", err)
	}
	if stored == nil {
		return nil, nil
	}
	p.stats.Uploaded += stored.Bytes
	p.cp = *stored
	return p, nil
}

// changesWorkspace reports whether a request of op can change the
// workspace, and so must be answered only once the change is checkpointed.
// Control operations never do (process.write feeds a process, whose own
// writes are checkpointed with the next request or before the host
// leaves).
func changesWorkspace(op api.Op) bool {
	switch op {
	case api.OpExec, api.OpFileWrite, api.OpFileDelete, api.OpFileReplace, api.OpFileUpload:
		return true
	}
	return false
}

// requestSnapshot snapshots the workspace after a request that may have
// changed it, so that its answer is recorded with the checkpoint that
// holds the change (Finish). When that fails, an answer that would have
// been ok says that the change is not durable.
func (h *Host) requestSnapshot(ctx context.Context, c *api.Completion) *pendingCheckpoint {
	ctx, span := telemetry.Start(ctx, "sandrun.request.checkpoint", trace.SpanKindInternal)
	p, err := h.snapshot(ctx)
	telemetry.End(span, err)
	if err != nil {
		h.metrics.checkpointed(ctx, time.Now(), 0, err)
		h.logger.WarnContext(ctx, "checkpoint failed", "event", "checkpoint.failed", "request_id", c.RequestID, "error", err.Error())
		if c.Status == api.StatusOK {
			c.Fail(api.CodeInternal, "the request ran, but the workspace it left could not be checkpointed, so a crash of this host could undo its changes: "+err.Error())
		}
	}
	return p
}

// checkpoint is the snapshot's checkpoint, nil for none.
func (p *pendingCheckpoint) checkpoint() *session.Checkpoint {
	if p == nil {
		return nil
	}
	return &p.cp
}

// committed takes up a snapshot that became the session's checkpoint. It
// returns collect, which deletes what only the checkpoint it replaced
// needed: its manifest object and the blobs the new manifest no longer
// references. A request's answer is published before collect runs, so
// that the deletes are not on its path. Failures cost storage, not
// correctness, and are logged.
func (h *Host) committed(ctx context.Context, p *pendingCheckpoint, replaced *session.Checkpoint) (collect func()) {
	old := h.manifest
	h.manifest = p.manifest
	h.lastCheckpoint = time.Now()
	h.metrics.checkpointed(ctx, p.start, p.stats.Uploaded, nil)
	return func() {
		if replaced != nil && replaced.Object != p.cp.Object {
			if err := h.store.DeleteObject(ctx, replaced.Object); err != nil {
				h.logger.Warn("deleting a replaced checkpoint failed", "event", "checkpoint.gc_failed", "error", err.Error())
			}
		}
		var gone []string
		if old != nil {
			live := p.manifest.Blobs()
			for name := range old.Blobs() {
				if !live[name] {
					gone = append(gone, name)
				}
			}
		}
		if err := h.store.DeleteBlobs(ctx, h.cfg.SessionID, gone); err != nil {
			h.logger.Warn("deleting unreferenced blobs failed", "event", "checkpoint.gc_failed", "error", err.Error())
		}
		h.logger.InfoContext(ctx, "checkpoint written", "event", "checkpoint.written", "object", p.cp.Object,
			"files", p.stats.Files, "bytes", p.stats.Bytes, "hashed_bytes", p.stats.Hashed, "uploaded_bytes", p.stats.Uploaded,
			"uploaded_blobs", p.stats.UploadedBlobs, "deleted_blobs", len(gone), "skipped", p.stats.SkippedCount,
			"duration_seconds", time.Since(p.start).Seconds())
	}
}

// checkpoint makes the workspace as it is now the session's checkpoint,
// outside any request: before the host leaves, and now and then while
// background processes change files between requests.
func (h *Host) checkpoint(ctx context.Context) (err error) {
	start := time.Now()
	ctx, span := telemetry.Start(trace.ContextWithSpanContext(ctx, h.launchTrace), "sandrun.checkpoint", trace.SpanKindInternal,
		attribute.String("sandrun.session_id", h.cfg.SessionID))
	defer func() { telemetry.End(span, err) }()
	defer func() {
		if err != nil {
			h.metrics.checkpointed(ctx, start, 0, err)
		}
	}()
	p, err := h.snapshot(ctx)
	if err != nil || p == nil {
		h.dirty, h.lastCheckpoint = err != nil, time.Now()
		return err
	}
	replaced := h.lease.Checkpoint
	if err := h.store.CommitCheckpoint(ctx, h.lease, p.cp); err != nil {
		return err
	}
	h.dirty = false
	h.committed(ctx, p, replaced)()
	span.SetAttributes(attribute.Int64("sandrun.checkpoint.bytes", p.stats.Uploaded), attribute.Int64("sandrun.checkpoint.files", p.stats.Files))
	return nil
}

// sweepBlobs deletes blobs that no checkpoint references and that hosts
// before this one stored: the uploads of a host that died between storing
// a snapshot and committing it. It runs when the host leaves idle, only if
// such uploads may exist. Only blobs older than this host's lease (less a
// margin for clocks) go: a host after this one cannot have written them.
func (h *Host) sweepBlobs(ctx context.Context) {
	if h.manifest == nil || (!h.lease.Unreleased && !h.uncommitted) {
		return
	}
	before := h.lease.Acquired.Add(-sweepClockMargin)
	if h.uncommitted {
		// This host's own abandoned uploads are older than now; it holds
		// the lease, so no later host has written yet.
		before = time.Now().Add(-sweepClockMargin)
	}
	n, err := h.store.SweepBlobs(ctx, h.cfg.SessionID, h.manifest.Blobs(), before)
	if err != nil {
		h.logger.Warn("sweeping unreferenced blobs failed", "event", "checkpoint.gc_failed", "error", err.Error())
		return
	}
	h.logger.Info("unreferenced blobs swept", "event", "checkpoint.swept", "deleted_blobs", n)
}

// sweepClockMargin allows for the clocks of this host and Cloud Storage
// disagreeing.
const sweepClockMargin = time.Minute

// clearDir makes dir an empty directory, creating it if missing.
func clearDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
