package firestore

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	fs "cloud.google.com/go/firestore"
	vkit "cloud.google.com/go/firestore/apiv1"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/sandrun/sandrun/emulator/official"
)

// TestMain fails the run if a Listen handler or stream goroutine of this
// package outlives the tests, and stops the official emulator if a test
// started one.
func TestMain(m *testing.M) {
	code := m.Run()
	official.Stop()
	if code == 0 {
		if leaked := waitForLeaks(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines left behind:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

func waitForLeaks(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "emulator/firestore.(*Server)") || strings.Contains(g, "grpc.(*Server).Serve") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const testProject = "test-project"

// targetEnv, when set to host:port, runs this package's tests against that
// Firestore (Google's emulator) instead of against a Server of their own.
// TestOfficialEmulator sets it for a second run of the tests in a child
// process; the tests of the fake's internals skip there.
const targetEnv = "SANDRUN_FIRESTORE_TEST_TARGET"

var target = os.Getenv(targetEnv)

// TestOfficialEmulator runs this package's tests again against Google's
// Firestore emulator, so that the fake and the emulator pass the same
// tests: all of them, or those the other alternatives of -run select (`go
// test -run 'TestX|TestOfficialEmulator'` runs TestX on both).
func TestOfficialEmulator(t *testing.T) {
	if target != "" {
		t.Skip("this run already targets the official emulator")
	}
	addr := official.Firestore(t)
	args := []string{"-test.count=1", "-test.v", "-test.skip=^TestOfficialEmulator$|^Fuzz", "-test.timeout=15m"}
	var others []string
	for _, alt := range strings.Split(flag.Lookup("test.run").Value.String(), "|") {
		if alt != "" && !strings.Contains(alt, "TestOfficialEmulator") {
			others = append(others, alt)
		}
	}
	if len(others) > 0 {
		args = append(args, "-test.run="+strings.Join(others, "|"))
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), targetEnv+"="+addr)
	out, err := cmd.CombinedOutput()
	t.Logf("the tests against the official emulator at %s:\n%s", addr, out)
	if err != nil {
		t.Fatalf("the tests failed against the official emulator: %v", err)
	}
}

// testEnv is a Firestore with the official client pointed at it: a Server
// of the test's own on a loopback port, or Google's emulator (target), in
// a project of the test's own.
type testEnv struct {
	srv    *Server // nil on the official emulator
	client *fs.Client
	addr   string
	db     string // projects/{project}/databases/(default)
}

// fakeOnly skips t on the official emulator: the test looks into the
// fake's internals or depends on a difference, which why names.
func (e *testEnv) fakeOnly(t *testing.T, why string) {
	t.Helper()
	skipOnOfficial(t, why)
}

// skipOnOfficial skips t in the run against the official emulator.
func skipOnOfficial(t *testing.T, why string) {
	t.Helper()
	if target != "" {
		t.Skipf("fake only: %s", why)
	}
}

// newTestEnv starts a server and a client; t.Cleanup closes the client,
// then the server's streams, then the gRPC server.
func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	return newTestEnvWith(t, Options{})
}

func newTestEnvWith(t *testing.T, opts Options) *testEnv {
	t.Helper()
	project := testProject
	var srv *Server
	addr := target
	if target != "" {
		project = official.Project(t)
	} else {
		srv = New(opts)
		addr, _ = serve(t, srv)
	}
	t.Setenv("FIRESTORE_EMULATOR_HOST", addr)
	client, err := fs.NewClient(context.Background(), project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return &testEnv{srv: srv, client: client, addr: addr, db: "projects/" + project + "/databases/(default)"}
}

// serve serves srv on a loopback port until stop, which closes srv and
// its gRPC server (at cleanup at the latest).
func serve(t *testing.T, srv *Server) (addr string, stop func()) {
	t.Helper()
	g := grpc.NewServer()
	srv.Register(g)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = g.Serve(l)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			srv.Close()
			g.Stop()
			<-served
		})
	}
	t.Cleanup(stop)
	return l.Addr().String(), stop
}

// gapic returns the official low-level (GAPIC) client on the same server,
// for requests the high-level client never sends (masks, malformed names).
func (e *testEnv) gapic(t *testing.T) *vkit.Client {
	t.Helper()
	c, err := vkit.NewClient(context.Background(),
		option.WithEndpoint(e.addr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got error %v, want code %s", err, code)
	}
}

func mustData(t *testing.T, ctx context.Context, ref *fs.DocumentRef) map[string]any {
	t.Helper()
	snap, err := ref.Get(ctx)
	if err != nil {
		t.Fatalf("get %s: %v", ref.Path, err)
	}
	return snap.Data()
}

const dbPath = "projects/" + testProject + "/databases/(default)"
