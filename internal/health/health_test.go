package health

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, url string) (int, string) {
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

// TestEndpoints serves a server whose one check fails and one hangs past
// its timeout: /live and /health answer, /ready is 200 and degraded naming
// both, /metrics is the handler given.
func TestEndpoints(t *testing.T) {
	checks := []Check{
		{Name: "up", Run: func(ctx context.Context) error { return nil }},
		{Name: "down", Run: func(ctx context.Context) error { return errors.New("connection refused") }},
		{Name: "hangs", Run: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
	}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "sandrun_x 1\n") })
	s, err := Listen(Config{Addr: "127.0.0.1:0", Checks: checks, Metrics: metrics, CheckTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	base := "http://" + s.Addr()
	for _, path := range []string{"/live", "/health"} {
		if code, body := get(t, base+path); code != http.StatusOK || body != "ok\n" {
			t.Errorf("%s: %d %q, want 200 ok", path, code, body)
		}
	}
	start := time.Now()
	code, body := get(t, base+"/ready")
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("/ready took %v; the hanging check should have been cut at 200ms", took)
	}
	var ready Ready
	if err := json.Unmarshal([]byte(body), &ready); err != nil || code != http.StatusOK {
		t.Fatalf("/ready: %d %q (%v)", code, body, err)
	}
	if ready.Status != StatusDegraded {
		t.Errorf("/ready status %q, want degraded: %s", ready.Status, body)
	}
	want := map[string]string{"up": StatusOK, "down": StatusFailed, "hangs": StatusFailed}
	for name, st := range want {
		if got := ready.Checks[name]; got.Status != st {
			t.Errorf("check %s: %+v, want %s", name, got, st)
		}
	}
	if e := ready.Checks["down"].Error; e != "connection refused" {
		t.Errorf("down's error %q, want the check's", e)
	}
	if e := ready.Checks["hangs"].Error; !strings.Contains(e, "deadline") {
		t.Errorf("hangs' error %q, want a deadline", e)
	}
	if code, body := get(t, base+"/metrics"); code != http.StatusOK || body != "sandrun_x 1\n" {
		t.Errorf("/metrics: %d %q", code, body)
	}
	if code, _ := get(t, base+"/nothing"); code != http.StatusNotFound {
		t.Errorf("/nothing: %d, want 404", code)
	}
}

// TestReadyOK: with every check passing, and none at all, /ready says ok.
func TestReadyOK(t *testing.T) {
	for _, checks := range [][]Check{nil, {{Name: "a", Run: func(context.Context) error { return nil }}}} {
		r := RunChecks(context.Background(), checks, time.Second)
		if r.Status != StatusOK || len(r.Checks) != len(checks) {
			t.Errorf("%d checks: %+v, want ok", len(checks), r)
		}
	}
}

// TestShutdownBounded: a request that never ends does not hold Shutdown
// past its context.
func TestShutdownBounded(t *testing.T) {
	release, entered := make(chan struct{}), make(chan struct{})
	defer close(release)
	checks := []Check{{Name: "stuck", Run: func(ctx context.Context) error { close(entered); <-release; return nil }}}
	s, err := Listen(Config{Addr: "127.0.0.1:0", Checks: checks, CheckTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	go http.Get("http://" + s.Addr() + "/ready")
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the /ready request never reached its check")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = s.Shutdown(ctx)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Shutdown took %v with a 300ms context", took)
	}
	if err == nil {
		t.Error("Shutdown abandoned a request in flight and said nothing")
	}
}
