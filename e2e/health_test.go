package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/emulator/faults"
	"github.com/sandrun/sandrun/internal/health"
)

// TestHealthEndpoints runs the dispatcher and the reaper as processes of
// their own with --http-addr: /live and /health answer; /ready is ok
// against the local cloud, and degraded, naming the check, while the
// local cloud fails the reads the checks make; /metrics serves sandrun's
// metrics in Prometheus's text format.
func TestHealthEndpoints(t *testing.T) {
	w := start(t, options{ownDispatcher: true, ownReaper: true})
	dispatcher, reaper := freeAddr(t), freeAddr(t)
	w.program("dispatcher", "--http-addr", dispatcher)
	w.program("reaper", "--http-addr", reaper)
	waitServing(t, dispatcher)
	waitServing(t, reaper)

	for _, addr := range []string{dispatcher, reaper} {
		for _, path := range []string{"/live", "/health"} {
			if code, body := httpGet(t, "http://"+addr+path); code != http.StatusOK || body != "ok\n" {
				t.Errorf("%s%s: %d %q, want 200 ok", addr, path, code, body)
			}
		}
	}
	all := []string{"firestore", "pubsub.topic", "pubsub.subscription", "cloudrun.job"}
	checkReady(t, dispatcher, health.StatusOK, all, nil)
	checkReady(t, reaper, health.StatusOK, []string{"firestore", "pubsub.topic", "cloudrun.job"}, nil)

	// Firestore's document reads and Cloud Run's GetJob fail: degraded,
	// still 200, the other checks ok.
	for _, r := range []faults.Rule{
		{Service: faults.Firestore, Method: "BatchGetDocuments", Rate: 1, Code: "INTERNAL"},
		{Service: faults.CloudRun, Method: "GetJob", Rate: 1, Code: "INTERNAL"},
	} {
		if err := w.suite.Faults.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	checkReady(t, dispatcher, health.StatusDegraded, all, []string{"firestore", "cloudrun.job"})
	w.suite.Faults.Clear("")
	checkReady(t, dispatcher, health.StatusOK, all, nil)

	// The dispatcher answers a session.get itself; the reaper passes.
	if c := w.do(&api.Request{SessionID: "no-such-session", Op: api.OpSessionGet}); c.Error == nil || c.Error.Code != api.CodeNotFound {
		t.Fatalf("session.get: %+v", c)
	}
	for addr, want := range map[string]*regexp.Regexp{
		dispatcher: regexp.MustCompile(`(?m)^sandrun_requests_total\{answered_by="dispatcher",op="session.get",otel_scope_name="[^"]*dispatcher",[^}]*outcome="NOT_FOUND"[^}]*\} 1$`),
		reaper:     regexp.MustCompile(`(?m)^sandrun_reaper_passes_total\{[^}]*outcome="ok"[^}]*\} [1-9]`),
	} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, body := httpGet(t, "http://"+addr+"/metrics")
			if code == http.StatusOK && want.MatchString(body) && strings.Contains(body, "# TYPE ") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s/metrics: %d, no line matching %s in:\n%s", addr, code, want, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// TestDevServesHealth starts `sandrun dev` on free ports: it prints where
// its health and metrics are, and serves them there for its dispatcher and
// reaper.
func TestDevServesHealth(t *testing.T) {
	dev := exec.Command(sandrunBin, "dev", "--base-port", "0", "--log-level", "warn")
	dev.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "SANDRUN_HOME=" + t.TempDir()}
	stdout, err := dev.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	dev.Stderr = logs
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- dev.Wait() }()
	t.Cleanup(func() {
		dev.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			dev.Process.Kill()
			<-exited
			t.Errorf("sandrun dev did not stop within a minute of SIGINT")
		}
	})
	addrs := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`^Health and metrics: http://([^/]+)/ready`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addrs <- m[1]
			}
		}
		close(addrs)
		io.Copy(io.Discard, stdout)
	}()
	var addr string
	select {
	case a, ok := <-addrs:
		if !ok {
			t.Fatalf("sandrun dev printed no health address: %s", logs.String())
		}
		addr = a
	case <-time.After(time.Minute):
		t.Fatalf("sandrun dev not ready after a minute: %s", logs.String())
	}
	checkReady(t, addr, health.StatusOK, []string{"firestore", "pubsub.topic", "pubsub.subscription", "cloudrun.job"}, nil)
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := httpGet(t, "http://"+addr+"/metrics")
		if code == http.StatusOK && strings.Contains(body, "\nsandrun_reaper_passes_total{") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev /metrics: %d, no sandrun_reaper_passes_total in:\n%s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkReady asks addr's /ready and checks its status, that it ran the
// checks named, and that exactly those in failed failed.
func checkReady(t *testing.T, addr, status string, checks, failed []string) {
	t.Helper()
	code, body := httpGet(t, "http://"+addr+"/ready")
	var r health.Ready
	if err := json.Unmarshal([]byte(body), &r); err != nil || code != http.StatusOK {
		t.Fatalf("%s/ready: %d %q (%v)", addr, code, body, err)
	}
	if r.Status != status || len(r.Checks) != len(checks) {
		t.Errorf("%s/ready: %s, want status %s with checks %v", addr, body, status, checks)
	}
	for _, name := range checks {
		want := health.StatusOK
		for _, f := range failed {
			if f == name {
				want = health.StatusFailed
			}
		}
		got, ok := r.Checks[name]
		switch {
		case !ok:
			t.Errorf("%s/ready: no check %s: %s", addr, name, body)
		case got.Status != want:
			t.Errorf("%s/ready: check %s %+v, want %s", addr, name, got, want)
		case want == health.StatusFailed && !strings.Contains(got.Error, "injected fault"):
			t.Errorf("%s/ready: check %s failed with %q, want the injected fault", addr, name, got.Error)
		}
	}
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitServing waits until something answers HTTP on addr.
func waitServing(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get("http://" + addr + "/live")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing serves on %s after a minute: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}
