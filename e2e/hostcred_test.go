package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/hostcred"
	"github.com/sandrun/sandrun/internal/imageuser"
)

// A host works with the token minted for its launch, never shows it to
// its commands, and takes the renewed token before the first one expires:
// a host outlives the lifetime of any one token.
func TestHostTokensAreMintedHiddenAndRenewed(t *testing.T) {
	const lifetime = 8 * time.Second
	w := start(t, options{hostTokens: hostcred.Config{Lifetime: lifetime, RenewBefore: 5 * time.Second, CheckInterval: 300 * time.Millisecond}})
	ctx := context.Background()
	c := w.do(&api.Request{SessionID: "tokens", Op: api.OpExec,
		Command: `env | grep -c -e SANDRUN_HOST -e ya29; env | grep "^SANDRUN_"`})
	if c.Status != api.StatusOK {
		t.Fatalf("exec: %+v", c)
	}
	if got := strings.TrimSpace(c.Stdout); got != "0\nSANDRUN_SESSION_ID=tokens" {
		t.Fatalf("the command's environment shows %q; want no token and only SANDRUN_SESSION_ID", got)
	}
	first, err := hostcred.NewFirestoreStore(w.fs).HostToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := w.suite.IAM.Minted(first.Value); !ok || m.Account != "sandrun-executor@"+w.sys.Project+".iam.gserviceaccount.com" {
		t.Fatalf("stored token %s: minted %v for %q", first, ok, m.Account)
	}
	if !strings.Contains(w.logs.String(), `"event":"host.token","held":"`+first.String()) {
		t.Fatalf("the host did not report working with the launch's token %s", first)
	}
	if strings.Contains(w.logs.String(), first.Value) {
		t.Fatal("a log line holds the token's value")
	}

	// Past the first token's expiry, the same host still serves, with a
	// token the keepers renewed.
	time.Sleep(time.Until(first.Expires) + time.Second)
	c = w.do(&api.Request{SessionID: "tokens", Op: api.OpExec, Command: `echo still here`})
	if c.Status != api.StatusOK || c.Stdout != "still here\n" {
		t.Fatalf("exec after the launch token expired: %+v", c)
	}
	if n := strings.Count(w.logs.String(), `"event":"host.lease_acquired"`); n != 1 {
		t.Fatalf("%d hosts acquired the session; want the one host throughout", n)
	}
	var renewedLine string
	for _, l := range strings.Split(w.logs.String(), "\n") {
		if strings.Contains(l, `"event":"host.token_renewed"`) {
			renewedLine = l
		}
	}
	if renewedLine == "" || strings.Contains(renewedLine, first.String()) {
		t.Fatalf("the host never took a renewed token: %q", renewedLine)
	}
	renewed, err := hostcred.NewFirestoreStore(w.fs).HostToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := w.suite.IAM.Minted(renewed.Value); !ok || !renewed.Expires.After(first.Expires) {
		t.Fatalf("stored token after renewal %s (minted %v), first %s", renewed, ok, first)
	}
}

// Hosts run as uid 1000, as in the executor's image, and so do their
// commands: a command can inspect its own processes but not its host,
// which holds the token.
func TestCommandsCannotInspectTheirHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs the hosts as uid 1000, which needs root")
	}
	w := start(t, options{hostUser: imageuser.Credential()})
	c := w.do(&api.Request{SessionID: "inspect", Op: api.OpExec, Command: `
		id -u
		tr '\0' ' ' < /proc/$PPID/cmdline; echo
		sleep 60 & own=$!
		for p in $own $PPID; do
			r=
			cat /proc/$p/environ >/dev/null 2>&1 && r="$r environ"
			ls /proc/$p/fd >/dev/null 2>&1 && r="$r fd"
			python3 -c 'import ctypes, sys; sys.exit(ctypes.CDLL(None).ptrace(16, int(sys.argv[1]), 0, 0) != 0)' $p && r="$r ptrace"
			[ $p = $own ] && echo "own:$r" || echo "host:$r"
		done
		kill $own`})
	if c.Status != api.StatusOK {
		t.Fatalf("exec: %+v", c)
	}
	lines := strings.Split(strings.TrimSpace(c.Stdout), "\n")
	if len(lines) != 4 || lines[0] != "1000" || !strings.Contains(lines[1], "executor") {
		t.Fatalf("the command ran as %q under %q; want uid 1000 under the executor\n%s", lines[0], lines[1], c.Stdout)
	}
	// The same inspection works on the command's own process, so its
	// failure on the host means something.
	if lines[2] != "own: environ fd ptrace" || lines[3] != "host:" {
		t.Fatalf("inspection: %q, %q; want everything of its own process and nothing of its host", lines[2], lines[3])
	}
	if c := w.do(&api.Request{SessionID: "inspect", Op: api.OpFileRead, Path: "/proc/self/environ"}); c.Error == nil || c.Error.Code != api.CodeFailedPrecondition {
		t.Fatalf("file.read of the host's own environ: %+v", c)
	}
	// The rest of /proc still reads, from a host that is not dumpable.
	if c := w.do(&api.Request{SessionID: "inspect", Op: api.OpFileRead, Path: "/proc/meminfo"}); c.Status != api.StatusOK || !strings.Contains(c.Content, "MemTotal:") {
		t.Fatalf("file.read of /proc/meminfo: %+v", c)
	}
}
