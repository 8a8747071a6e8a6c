//go:build linux

package procs

import (
	"context"
	"os"
	"testing"

	"github.com/sandrun/sandrun/internal/shell"
)

// BenchmarkSweep measures the sweep every command's end, list and kill
// pays: the walk of this process's tree in /proc.
func BenchmarkSweep(b *testing.B) {
	m, err := New(Config{Dir: b.TempDir() + "/procs", OwnsOrphans: true})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(context.Background())
	if _, err := m.Start(shell.State{Env: map[string]string{"PATH": "/usr/bin:/bin"}}, shell.Command{Script: "sleep 600"}, false); err != nil {
		b.Fatal(err)
	}
	procs, _ := os.ReadDir("/proc")
	b.Logf("%d entries in /proc", len(procs))
	for b.Loop() {
		m.sweep(false)
	}
}

// BenchmarkSweepAfterCommand measures what a command's end pays when
// nothing escaped it.
func BenchmarkSweepAfterCommand(b *testing.B) {
	m := subreaperManager(b)
	for b.Loop() {
		m.sweepAfterCommand(false)
	}
}

// BenchmarkIdleTick measures what an idle host's housekeeping pays every
// ShipInterval with OwnsOrphans, as the executor runs it: the reaping of
// orphaned zombies and the sweep, with nothing running.
func BenchmarkIdleTick(b *testing.B) {
	m := subreaperManager(b)
	for b.Loop() {
		m.reapOrphans()
		m.sweep(false)
	}
}

// subreaperManager is a manager owning orphans, as the executor runs it,
// in a process that became a subreaper; closed when the benchmark ends.
func subreaperManager(b *testing.B) *Manager {
	if err := BecomeSubreaper(); err != nil {
		b.Skip(err)
	}
	m, err := New(Config{Dir: b.TempDir() + "/procs", OwnsOrphans: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close(context.Background()) })
	return m
}
