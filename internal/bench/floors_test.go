package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/internal/gcp"
	"github.com/sandrun/sandrun/internal/system"
)

// localCloudRunner starts a local cloud (no sandrun on it) and returns a
// runner whose clients use it, as the floors need.
func localCloudRunner(t *testing.T, ctx context.Context) *runner {
	t.Helper()
	suite, err := emulator.Start(ctx, emulator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { suite.Close(context.WithoutCancel(ctx)) })
	for _, kv := range suite.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	clients, err := gcp.Connect(ctx, suite.Project, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { clients.Close() })
	return &runner{environment: &environment{suite: suite, sys: system.Config{Project: suite.Project}, clients: clients}}
}

// floorEcho is the throughput floor's echo running script, as the bench
// makes it.
func floorEcho(t *testing.T, ctx context.Context, r *runner, script, dir string) (*commandRecord, *echo) {
	t.Helper()
	work, err := r.newCommandRecord(script, dir)
	if err != nil {
		t.Fatal(err)
	}
	e, err := r.newEcho(ctx, true, work.do)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.stop)
	return work, e
}

// The throughput floor's requests do the work it claims: each round trip
// runs the command once, through bash, and leaves one record in Firestore
// under its request's key; a command that fails fails its round trip, so
// that it is not counted.
func TestThroughputFloorRunsTheCommandAndRecordsEachRequest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := localCloudRunner(t, ctx)
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran")
	// $BASH_VERSION is set by bash only: the floor runs what a host runs.
	work, e := floorEcho(t, ctx, r, `echo "$BASH_VERSION" >> `+ran, dir)
	const n = 3
	for range n {
		if _, err := e.roundTrip(ctx, "sender"); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(ran)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != n || lines[0] == "" {
		t.Fatalf("the command ran %d times (want %d, each by bash): %q", len(lines), n, b)
	}
	docs, err := work.records.Documents(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != n {
		t.Fatalf("%d records for %d requests", len(docs), n)
	}
	for _, d := range docs {
		if code, ok := d.Data()["exit_code"].(int64); !ok || code != 0 {
			t.Errorf("record %s: %v", d.Ref.ID, d.Data())
		}
	}
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 {
		t.Errorf("output files left behind: %v", left)
	}

	_, fe := floorEcho(t, ctx, r, "exit 3", dir)
	if _, err := fe.roundTrip(ctx, "sender"); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("a failing command's round trip: %v", err)
	}
}
