package cli

import (
	"bufio"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is an io.Writer that tests may read while a command writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runCLI runs sandrun with args and the given environment, returning its exit
// code, stdout and stderr.
func runCLI(t *testing.T, environ map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr syncBuffer
	env := &Env{Stdout: &stdout, Stderr: &stderr, Stdin: strings.NewReader(""), Getenv: func(k string) string { return environ[k] }}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := Main(ctx, env, args)
	return code, stdout.String(), stderr.String()
}

func TestEmulatorCommand(t *testing.T) {
	stdoutR, stdoutW := io.Pipe()
	var stderr syncBuffer
	env := &Env{Stdout: stdoutW, Stderr: &stderr, Getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	var exitCode int
	go func() {
		exitCode = Main(ctx, env, []string{"emulator", "--base-port", "0"})
		stdoutW.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Error("sandrun emulator did not stop within 30 s of its context ending")
		}
	})

	exports := map[string]string{}
	sc := bufio.NewScanner(stdoutR)
	for len(exports) < 7 && sc.Scan() {
		kv, ok := strings.CutPrefix(sc.Text(), "export ")
		if !ok {
			t.Fatalf("unexpected line on stdout: %q", sc.Text())
		}
		k, v, _ := strings.Cut(kv, "=")
		exports[k] = v
	}
	go io.Copy(io.Discard, stdoutR)
	for _, k := range []string{"PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "CLOUDRUN_EMULATOR_HOST", "IAMCREDENTIALS_EMULATOR_HOST", "SANDRUN_EMULATOR_ADMIN", "GOOGLE_CLOUD_PROJECT"} {
		if exports[k] == "" {
			t.Fatalf("%s not printed; stdout had %v, stderr: %s", k, exports, stderr.String())
		}
	}
	if exports["GOOGLE_CLOUD_PROJECT"] != "sandrun-local" {
		t.Errorf("default project %q, want sandrun-local", exports["GOOGLE_CLOUD_PROJECT"])
	}

	if code, _, errOut := runCLI(t, exports, "emulator", "fault", "add", "--service", "firestore", "--method", "Commit", "--rate", "0.5", "--code", "ABORTED"); code != 0 {
		t.Fatalf("fault add exited %d: %s", code, errOut)
	}
	code, out, errOut := runCLI(t, exports, "emulator", "fault", "list")
	if code != 0 || !strings.Contains(out, `firestore method="Commit" rate=0.5 code="ABORTED"`) {
		t.Fatalf("fault list exited %d with %q (%s)", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, exports, "emulator", "fault", "add", "--service", "bigtable", "--rate", "1"); code != 1 || !strings.Contains(errOut, "unknown service") {
		t.Fatalf("fault add of an unknown service exited %d: %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, exports, "emulator", "fault", "clear"); code != 0 {
		t.Fatalf("fault clear exited %d: %s", code, errOut)
	}
	if _, out, _ := runCLI(t, exports, "emulator", "fault", "list"); out != "" {
		t.Fatalf("rules left after clear: %q", out)
	}
	if code, _, errOut := runCLI(t, exports, "emulator", "kill"); code != 1 || !strings.Contains(errOut, "no execution is running") {
		t.Fatalf("kill with nothing running exited %d: %s", code, errOut)
	}

	cancel()
	select {
	case <-exited:
		if exitCode != 0 {
			t.Fatalf("sandrun emulator exited %d after interrupt: %s", exitCode, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sandrun emulator did not stop within 30 s")
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args    []string
		environ map[string]string
		code    int
		stderr  string
	}{
		{nil, nil, 2, "Usage: sandrun COMMAND"},
		{[]string{"frobnicate"}, nil, 2, `unknown command "frobnicate"`},
		{[]string{"emulator", "--base-port", "x"}, nil, 2, "invalid value"},
		{[]string{"emulator"}, map[string]string{"SANDRUN_EMULATOR_BASE_PORT": "many"}, 2, "SANDRUN_EMULATOR_BASE_PORT"},
		{[]string{"emulator", "fault", "list"}, nil, 1, "SANDRUN_EMULATOR_ADMIN is not set"},
		{[]string{"emulator", "--help"}, nil, 0, "[SANDRUN_EMULATOR_BASE_PORT]"},
	}
	for _, tt := range tests {
		code, _, stderr := runCLI(t, tt.environ, tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("sandrun %v: exit %d, stderr %q; want exit %d and %q", tt.args, code, stderr, tt.code, tt.stderr)
		}
	}
}
