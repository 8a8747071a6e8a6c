//go:build linux

package shell

import (
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLateOutputOfLeftoverDoesNotTouchTheCommandsOutput: a process the
// command left running that writes once the command ended (here reopening
// /dev/stdout, which truncates a regular file) leaves the command's output
// as it was when bash exited.
func TestLateOutputOfLeftoverDoesNotTouchTheCommandsOutput(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	dir := t.TempDir()
	goFifo, doneFifo := filepath.Join(dir, "go"), filepath.Join(dir, "done")
	for _, f := range []string{goFifo, doneFifo} {
		if err := unix.Mkfifo(f, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stdout, stderr := s.outFile("stdout"), s.outFile("stderr")
	res, err := Run(t.Context(), s.spool, s.st, Command{
		Script: `echo start; (read x < ` + goFifo + `; echo late > /dev/stdout; echo bye > ` + doneFifo + `) &`,
		Stdout: stdout, Stderr: stderr,
	})
	if err != nil {
		t.Fatal(err)
	}
	killLeftovers(t, res.Leftovers)
	// Let the leftover write, and wait until it did.
	if err := os.WriteFile(goFifo, []byte("go\n"), 0); err != nil {
		t.Fatal(err)
	}
	done, err := os.Open(doneFifo)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(done)
	done.Close()

	got := readFile(t, stdout.Name())
	if len(got) < len("start\n") || got[:len("start\n")] != "start\n" {
		t.Fatalf("the command's output became %q, want it to start with %q", got, "start\n")
	}
	// The command's output is what it wrote until bash exited; the late
	// line follows it (once copied), as the leftover's log.
	if res.StdoutBytes != int64(len("start\n")) {
		t.Fatalf("StdoutBytes %d, want %d", res.StdoutBytes, len("start\n"))
	}
}

// TestOutputPastMaxOutputIsCountedNotKept: a command printing more than
// MaxOutput runs to its end; the file holds the first MaxOutput bytes of
// each stream and the result counts all it printed.
func TestOutputPastMaxOutputIsCountedNotKept(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	stdout, stderr := s.outFile("stdout"), s.outFile("stderr")
	res, err := Run(t.Context(), s.spool, s.st, Command{
		Script: `head -c 5000000 /dev/zero | tr '\0' x; echo short >&2; exit 7`,
		Stdout: stdout, Stderr: stderr, MaxOutput: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 7 || res.StdoutBytes != 5000000 || res.StderrBytes != 6 {
		t.Fatalf("exit %d, stdout %d bytes, stderr %d bytes; want 7, 5000000, 6", res.ExitCode, res.StdoutBytes, res.StderrBytes)
	}
	if got := readFile(t, stdout.Name()); len(got) != 1000 || strings.Trim(got, "x") != "" {
		t.Fatalf("the stdout file holds %d bytes, want the first 1000", len(got))
	}
	if got := readFile(t, stderr.Name()); got != "short\n" {
		t.Fatalf("stderr file %q", got)
	}
}

// TestStateTooLargeToSaveIsReported: a state that the next command's bash
// could not be started with is not kept, whether one variable is over what
// exec takes for one string (128 KiB) or all of them together are over
// what it takes in all (at most 6 MiB); Wait says so, and the session
// keeps the state it started from.
func TestStateTooLargeToSaveIsReported(t *testing.T) {
	t.Parallel()
	for _, script := range []string{
		`export ONE=$(head -c 140000 /dev/zero | tr '\0' a); cd /`,
		`x=$(head -c 100000 /dev/zero | tr '\0' a); for i in {1..70}; do export V$i=$x; done; cd /`,
	} {
		s := newSession(t)
		before := s.st.Clone()
		res, _ := s.run(script, Command{})
		if res.StateSaved || !errors.Is(res.StateError, ErrStateTooLarge) {
			t.Fatalf("%s: StateSaved %v, StateError %v; want not saved, ErrStateTooLarge", script, res.StateSaved, res.StateError)
		}
		if res.State.Cwd != before.Cwd || !maps.Equal(res.State.Env, before.Env) {
			t.Fatalf("%s: State %+v, want the one it started from", script, res.State)
		}
	}
	// A state that fits is saved as before.
	s := newSession(t)
	res, _ := s.run(`export ONE=$(head -c 100000 /dev/zero | tr '\0' a); cd /`, Command{})
	if !res.StateSaved || res.StateError != nil || len(s.st.Env["ONE"]) != 100000 || s.st.Cwd != "/" {
		t.Fatalf("StateSaved %v, StateError %v, cwd %q", res.StateSaved, res.StateError, s.st.Cwd)
	}
}
