package host

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

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
	r, err := h.store.OpenCheckpoint(ctx, cp)
	if err != nil {
		return err
	}
	defer r.Close()
	stats, err := workspace.Restore(ctx, dir, r)
	if err != nil {
		return fmt.Errorf("restore checkpoint %s: %w", cp.Object, err)
	}
	h.restoreSeconds = time.Since(start).Seconds()
	h.logger.Info("checkpoint restored", "event", "checkpoint.restored", "object", cp.Object,
		"files", stats.Files, "bytes", stats.Bytes, "duration_seconds", h.restoreSeconds)
	return nil
}

// checkpoint writes the workspace to a new object and makes it the
// session's checkpoint.
func (h *Host) checkpoint(ctx context.Context) (err error) {
	start := time.Now()
	ctx, span := telemetry.Start(trace.ContextWithSpanContext(ctx, h.launchTrace), "sandrun.checkpoint", trace.SpanKindInternal,
		attribute.String("sandrun.session_id", h.cfg.SessionID))
	defer func() { telemetry.End(span, err) }()
	var written int64
	defer func() { h.metrics.checkpointed(ctx, start, written, err) }()
	dir, err := h.workspaceDir()
	if err != nil {
		return err
	}
	h.checkpoints++
	name := session.CheckpointObject(h.lease, h.checkpoints)
	w := h.store.CreateObject(ctx, name, "application/gzip")
	stats, err := workspace.Checkpoint(ctx, w, dir)
	if err != nil {
		w.Close()
		return fmt.Errorf("write checkpoint %s: %w", name, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("write checkpoint %s: %w", name, err)
	}
	attrs := w.Attrs()
	if err := h.store.CommitCheckpoint(ctx, h.lease, session.Checkpoint{Object: name, Generation: attrs.Generation, Bytes: attrs.Size}); err != nil {
		return err
	}
	h.dirty, h.lastCheckpoint = false, time.Now()
	written = attrs.Size
	span.SetAttributes(attribute.Int64("sandrun.checkpoint.bytes", attrs.Size), attribute.Int64("sandrun.checkpoint.files", stats.Files))
	h.logger.InfoContext(ctx, "checkpoint written", "event", "checkpoint.written", "object", name, "files", stats.Files,
		"bytes", stats.Bytes, "archive_bytes", attrs.Size, "skipped", stats.SkippedCount, "duration_seconds", time.Since(start).Seconds())
	return nil
}

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
