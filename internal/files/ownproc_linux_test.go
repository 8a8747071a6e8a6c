package files

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The host's own /proc entries hold what it must keep from the sandbox
// (its environment, its memory); a file operation must not read or write
// them however the path is spelled, and must still serve the rest of /proc.
func TestOwnProcEntriesAreRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.Symlink("/proc/self/environ", filepath.Join(dir, "env-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/proc", filepath.Join(dir, "proc-link")); err != nil {
		t.Fatal(err)
	}
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var otherThread string // a thread id of this process other than its pid
	for _, e := range tids {
		if e.Name() != strconv.Itoa(os.Getpid()) {
			otherThread = e.Name()
		}
	}
	if otherThread == "" {
		t.Fatal("a Go test process has one thread?")
	}
	o := Ops{Cwd: dir}
	ctx := context.Background()
	for _, path := range []string{
		"/proc/self/environ",
		"/proc/self/mem",
		"/proc/thread-self/environ",
		"/proc/" + strconv.Itoa(os.Getpid()) + "/environ",
		"/proc/" + otherThread + "/environ", // /proc/TID is not listed, but opens
		"/proc/self/task/" + otherThread + "/environ",
		"env-link",
		"proc-link/self/cmdline",
		"/proc/self/../self/status",
	} {
		_, err := o.Read(ctx, path, ReadOptions{})
		wantErr(t, err, ErrPrecondition, "session host's own /proc entries are not served")
		if _, _, err := o.OpenForRead(ctx, path); err == nil {
			t.Errorf("OpenForRead(%s) served the host's own /proc entry", path)
		}
	}
	if _, err := o.Write(ctx, "/proc/thread-self/comm", []byte("forged"), WriteOptions{Append: true}); err == nil {
		t.Error("an append wrote the host's own /proc/thread-self/comm")
	}
	res, err := o.Search(ctx, "/proc/self", SearchOptions{Pattern: "PATH="})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Matches) != 0 {
		t.Errorf("Search of /proc/self found %v", res.Matches)
	}

	// The rest of /proc, and other processes' entries, are served.
	if r, err := o.Read(ctx, "/proc/version", ReadOptions{}); err != nil || !strings.HasPrefix(string(r.Content), "Linux") {
		t.Errorf("Read(/proc/version) = %q, %v", r.Content, err)
	}
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { child.Process.Kill(); child.Wait() }()
	// Until the child has exec'd sleep, its cmdline is this test's or empty.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := o.Read(ctx, "/proc/"+strconv.Itoa(child.Process.Pid)+"/cmdline", ReadOptions{})
		if err == nil && strings.HasPrefix(string(r.Content), "sleep\x0030") {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("Read of a command's /proc/PID/cmdline = %q, %v", r.Content, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
