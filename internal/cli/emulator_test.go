package cli

import (
	"bufio"
	"context"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/sandrun/sandrun/emulator/official"
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

// TestMain stops Google's emulators if a test started them.
func TestMain(m *testing.M) {
	code := m.Run()
	official.Stop()
	os.Exit(code)
}

// startEmulatorCLI runs `sandrun emulator` with args until the test ends
// and returns the environment it printed, its stderr, and a stop function
// that interrupts it and returns its exit code.
func startEmulatorCLI(t *testing.T, args ...string) (map[string]string, *syncBuffer, func() int) {
	t.Helper()
	stdoutR, stdoutW := io.Pipe()
	stderr := &syncBuffer{}
	env := &Env{Stdout: stdoutW, Stderr: stderr, Getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	var exitCode int
	go func() {
		exitCode = Main(ctx, env, append([]string{"emulator"}, args...))
		stdoutW.Close()
		close(exited)
	}()
	stop := func() int {
		cancel()
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Fatal("sandrun emulator did not stop within 30 s of its context ending")
		}
		return exitCode
	}
	t.Cleanup(func() { stop() })

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
	return exports, stderr, stop
}

func TestEmulatorCommand(t *testing.T) {
	exports, stderr, stop := startEmulatorCLI(t, "--base-port", "0")
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
	if code, _, errOut := runCLI(t, exports, "emulator", "migrate", "--pause", "1s"); code != 1 || !strings.Contains(errOut, "no execution is running") {
		t.Fatalf("migrate with nothing running exited %d: %s", code, errOut)
	}

	if code := stop(); code != 0 {
		t.Fatalf("sandrun emulator exited %d after interrupt: %s", code, stderr.String())
	}
}

// TestEmulatorOnGoogleEmulators: with --external-firestore and
// --external-pubsub the local cloud points its clients at those emulators
// (Google's here), Pub/Sub through its proxy so that faults reach it, and
// serves the rest itself.
func TestEmulatorOnGoogleEmulators(t *testing.T) {
	fsAddr, psAddr := official.Firestore(t), official.PubSub(t)
	exports, stderr, stop := startEmulatorCLI(t, "--base-port", "0", "--external-firestore", fsAddr, "--external-pubsub", psAddr)
	if exports["FIRESTORE_EMULATOR_HOST"] != fsAddr {
		t.Fatalf("printed FIRESTORE_EMULATOR_HOST=%s, want %s", exports["FIRESTORE_EMULATOR_HOST"], fsAddr)
	}
	// A topic created through the printed Pub/Sub address is in Google's
	// emulator.
	ctx := context.Background()
	topic := "projects/" + official.Project(t) + "/topics/through-the-proxy"
	for _, addr := range []string{exports["PUBSUB_EMULATOR_HOST"], psAddr} {
		t.Setenv("PUBSUB_EMULATOR_HOST", addr)
		c, err := pubsub.NewClient(ctx, "unused")
		if err != nil {
			t.Fatal(err)
		}
		if addr == psAddr {
			_, err = c.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: topic})
		} else {
			_, err = c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic})
		}
		c.Close()
		if err != nil {
			t.Fatalf("through PUBSUB_EMULATOR_HOST=%s (Google's emulator: %s): %v", addr, psAddr, err)
		}
	}
	if code := stop(); code != 0 {
		t.Fatalf("sandrun emulator exited %d after interrupt: %s", code, stderr.String())
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
