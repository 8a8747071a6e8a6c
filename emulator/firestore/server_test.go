package firestore

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	fs "cloud.google.com/go/firestore"
	vkit "cloud.google.com/go/firestore/apiv1"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// TestMain fails the run if a Listen handler or stream goroutine of this
// package outlives the tests.
func TestMain(m *testing.M) {
	code := m.Run()
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

// testEnv is a server on a loopback port with the official client pointed
// at it.
type testEnv struct {
	srv    *Server
	client *fs.Client
	addr   string
}

// newTestEnv starts a server and a client; t.Cleanup closes the client,
// then the server's streams, then the gRPC server.
func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	return newTestEnvWith(t, Options{})
}

func newTestEnvWith(t *testing.T, opts Options) *testEnv {
	t.Helper()
	srv := New(opts)
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
	t.Cleanup(func() {
		srv.Close()
		g.Stop()
		<-served
	})
	t.Setenv("FIRESTORE_EMULATOR_HOST", l.Addr().String())
	client, err := fs.NewClient(context.Background(), testProject)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return &testEnv{srv: srv, client: client, addr: l.Addr().String()}
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
