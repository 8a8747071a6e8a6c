// Package health serves the operational HTTP endpoints of sandrun's
// long-running programs (the dispatcher and the reaper, and `sandrun dev`):
//
//   - /live: the process is up (200, no dependency is asked).
//   - /health: the same as /live, for load balancers that ask there.
//   - /ready: each dependency check, run at once under a short timeout, and
//     a JSON answer {"status":"ok"|"degraded","checks":{NAME:{...}}}. It is
//     200 either way: a program whose dependency fails keeps running and
//     retrying, so it reports degraded rather than asking to be restarted.
//   - /metrics: the program's metrics in Prometheus's text format, when
//     it was given a handler for them (package telemetry/prometheus).
//
// It is a package of its own rather than part of internal/telemetry
// because readiness is about dependencies, not instruments: the checks are
// plain functions that the wiring (internal/system) builds from the
// program's clients, so this package knows no Google service and
// telemetry knows no client. It never changes state: every check only
// reads, and nothing here stops the program it reports on.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Check is one dependency check: Run returns nil when the dependency
// answered.
type Check struct {
	// Name keys the check in /ready's answer ("firestore").
	Name string
	Run  func(ctx context.Context) error
}

// Config says what a Server serves.
type Config struct {
	// Addr is the address to listen on (host:port; port 0 picks one).
	Addr string
	// Checks are what /ready runs.
	Checks []Check
	// Metrics serves /metrics; nil leaves /metrics unserved (404).
	Metrics http.Handler
	// CheckTimeout bounds each check (DefaultCheckTimeout when zero).
	CheckTimeout time.Duration
	// Logger receives the server's events (none when nil).
	Logger *slog.Logger
}

// Defaults of Config, and the server's fixed bounds.
const (
	DefaultCheckTimeout = 2 * time.Second
	// ShutdownTimeout bounds how long Shutdown waits for requests in
	// flight (a /ready waits for its checks at most CheckTimeout).
	ShutdownTimeout = 5 * time.Second
	readTimeout     = 10 * time.Second
)

// Ready is /ready's answer.
type Ready struct {
	// Status is StatusOK when every check passed, else StatusDegraded.
	Status string                 `json:"status"`
	Checks map[string]CheckResult `json:"checks"`
}

// CheckResult is the outcome of one check.
type CheckResult struct {
	// Status is StatusOK or StatusFailed.
	Status string `json:"status"`
	// Error says why the check failed.
	Error string `json:"error,omitempty"`
	// Seconds is how long the check took.
	Seconds float64 `json:"seconds"`
}

// Statuses in a Ready answer.
const (
	StatusOK       = "ok"
	StatusDegraded = "degraded"
	StatusFailed   = "failed"
)

// Handler returns the endpoints of cfg as a handler (cfg.Addr is unused).
func Handler(cfg Config) http.Handler {
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = DefaultCheckTimeout
	}
	mux := http.NewServeMux()
	alive := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	}
	mux.HandleFunc("GET /live", alive)
	mux.HandleFunc("GET /health", alive)
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		ready := RunChecks(r.Context(), cfg.Checks, cfg.CheckTimeout)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(ready)
	})
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	return mux
}

// RunChecks runs every check at once, each under timeout, and reports
// them.
func RunChecks(ctx context.Context, checks []Check, timeout time.Duration) Ready {
	ready := Ready{Status: StatusOK, Checks: make(map[string]CheckResult, len(checks))}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			start := time.Now()
			err := c.Run(cctx)
			res := CheckResult{Status: StatusOK, Seconds: time.Since(start).Seconds()}
			if err != nil {
				res.Status, res.Error = StatusFailed, err.Error()
			}
			mu.Lock()
			defer mu.Unlock()
			ready.Checks[c.Name] = res
			if err != nil {
				ready.Status = StatusDegraded
			}
		}()
	}
	wg.Wait()
	return ready
}

// Server serves the endpoints on an address until Shutdown.
type Server struct {
	srv    *http.Server
	addr   string
	logger *slog.Logger
	done   chan struct{}
	err    error // set before done is closed
}

// Listen binds cfg.Addr and serves the endpoints on it in the background.
func Listen(cfg Config) (*Server, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen for health and metrics on %s: %w", cfg.Addr, err)
	}
	s := &Server{
		srv:    &http.Server{Handler: Handler(cfg), ReadHeaderTimeout: readTimeout, ReadTimeout: readTimeout},
		addr:   l.Addr().String(),
		logger: logger,
		done:   make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	}()
	logger.Info("serving health and metrics", "event", "http.serving", "addr", s.addr)
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.addr }

// Shutdown stops accepting connections and waits for the requests in
// flight until ctx ends, at most ShutdownTimeout, then closes the
// connections left and logs that it abandoned them. A program that stops
// because its context ended passes context.WithoutCancel of it.
func (s *Server) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, ShutdownTimeout)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.logger.Warn("health server: requests in flight abandoned", "event", "http.shutdown_abandoned", "error", err.Error())
		err = errors.Join(err, s.srv.Close())
	}
	<-s.done
	if s.err != nil {
		err = errors.Join(err, fmt.Errorf("serve health and metrics on %s: %w", s.addr, s.err))
	}
	return err
}
