// Package imageuser names the user the executor's image runs as (USER
// 1000:1000 in deploy/executor.Dockerfile), for the programs and tests
// that run hosts or commands as production does, and gives tests run as
// root a copy of their binary that this user can run.
package imageuser

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// UID and GID are the image's user and group.
const UID, GID = 1000, 1000

// Credential returns the image's user and group, to run a process as.
func Credential() *syscall.Credential { return &syscall.Credential{Uid: UID, Gid: GID} }

// TestBinary returns a copy of the running test binary that the image's
// user can run, removed when the test ends: go test builds the binary in
// a directory only its own user may enter.
func TestBinary(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sandrun-as-image-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, filepath.Base(os.Args[0]))
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}
