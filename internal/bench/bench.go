// Package bench measures sandrun on the local cloud, each figure against a
// floor measured in the same run on the same machine: this machine is shared
// and noisy, so only ratios mean something from one run to the next.
//
// It starts the local cloud and the whole system (dispatcher, reaper, hosts
// as local processes of the executor program) and talks to it as a backend
// does. It never runs in tests: speed is measured here, not asserted there.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sandrun/sandrun/client"
	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/cloudrun"
	"github.com/sandrun/sandrun/internal/gcp"
	"github.com/sandrun/sandrun/internal/outbox"
	"github.com/sandrun/sandrun/internal/pool"
	progs "github.com/sandrun/sandrun/internal/programs"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/system"
)

// Config says what to measure and how long.
type Config struct {
	// Executor and ExecutorArgs are the host program (sandrun executor).
	Executor     string
	ExecutorArgs []string
	// Quick shortens every measurement (a smoke run, a minute or two).
	Quick bool
	// LargeCheckpoints adds to the checkpoint measurement a workspace of
	// 1 GB in four files and one of 200,000 small files: minutes of work
	// and a few GB of disk for the local Cloud Storage.
	LargeCheckpoints bool
	// Only, when not empty, names the measurements to run (see Names).
	Only []string
	// StartDelay models Cloud Run's cold start on every execution.
	StartDelay time.Duration
	// PoolStartDelay is the cold start of the warm pool measurement, which
	// runs new sessions with and without a pool on systems of its own
	// (default 5 s).
	PoolStartDelay time.Duration
	// Python is the interpreter that runs the Python SDK for the "python"
	// measurement, and PythonPath, when set, its PYTHONPATH (the SDK's
	// directory, python/, when it is not installed).
	Python     string
	PythonPath string
	// ThroughputSessions, when set, are the session counts the throughput
	// measurement runs (default 1, 10 and 100; 1 and 10 when Quick).
	ThroughputSessions []int
	// HostCPUProfileDir, when set, makes every host write a CPU profile
	// of itself to this directory when it ends (see
	// programs.EnvCPUProfileDir).
	HostCPUProfileDir string
	// HostUser, when set, is the user every host runs as, as the
	// executor's image makes it run (uid 1000): it then takes production's
	// code paths, which a host run as root does not (see package shell's
	// stateFile and startNiced). The bench must run as root. Nil runs the
	// hosts as this process's user.
	HostUser *syscall.Credential
	// Out receives progress lines; Logger the system's own logs.
	Out    io.Writer
	Logger *slog.Logger
}

// Names are the measurements, in the order they run.
var Names = []string{"warm", "counts", "python", "cold", "throughput", "transfer", "checkpoint", "pool", "burst", "tracing", "refused"}

// Result is one figure with its floor.
type Result struct {
	Name string `json:"name"`
	// Unit of P50, P99, Value and Floor: "ms", "MB/s", "req/s", "MB".
	Unit  string  `json:"unit"`
	P50   float64 `json:"p50,omitempty"`
	P99   float64 `json:"p99,omitempty"`
	Value float64 `json:"value,omitempty"`
	// Floor is what the same work costs without sandrun, and Ratio the
	// figure over it (the p50's for latencies): how many floors sandrun
	// takes. For throughputs, Ratio is figure over floor (below 1).
	Floor     float64 `json:"floor,omitempty"`
	FloorName string  `json:"floor_name,omitempty"`
	Ratio     float64 `json:"ratio,omitempty"`
	Samples   int     `json:"samples,omitempty"`
	Note      string  `json:"note,omitempty"`
	// Counted holds, for the "counts" measurement, the calls counted.
	Counted *Counted `json:"counted,omitempty"`
}

// Report is one run.
type Report struct {
	StartedAt time.Time `json:"started_at"`
	Quick     bool      `json:"quick"`
	Machine   Machine   `json:"machine"`
	Results   []Result  `json:"results"`
}

// runner holds what every measurement uses.
type runner struct {
	cfg Config
	*environment
	report *Report
	out    io.Writer
}

// environment is a local cloud with sandrun running on it.
type environment struct {
	suite   *emulator.Suite
	sys     system.Config
	clients *gcp.Clients
	client  *client.Client
	state   string
	closers []func()
}

// envSpec says how the system of an environment runs.
type envSpec struct {
	// StartDelay is every execution's simulated cold start.
	StartDelay time.Duration
	// Pool is the warm pool's policy (none by default).
	Pool pool.Policy
	// ReaperInterval is the time between reaper passes (default 2 s).
	ReaperInterval time.Duration
}

// startEnvironment starts a fresh local cloud and the whole system on it,
// as spec says. It points this process's Google clients at the new cloud.
func startEnvironment(ctx context.Context, cfg Config, spec envSpec) (_ *environment, err error) {
	if spec.ReaperInterval <= 0 {
		spec.ReaperInterval = 2 * time.Second
	}
	e := &environment{}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.state, err = os.MkdirTemp("", "sandrun-bench-"); err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { os.RemoveAll(e.state) })
	if u := cfg.HostUser; u != nil {
		// The hosts make their workspaces in the state directory, and
		// their profiles in theirs.
		for _, dir := range []string{e.state, cfg.HostCPUProfileDir} {
			if dir == "" {
				continue
			}
			if err := os.Chown(dir, int(u.Uid), int(u.Gid)); err != nil {
				return nil, fmt.Errorf("hand %s to the hosts' user: %w", dir, err)
			}
		}
	}
	hostEnv := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	if cfg.HostCPUProfileDir != "" {
		hostEnv = append(hostEnv, progs.EnvCPUProfileDir+"="+cfg.HostCPUProfileDir)
	}
	suite, err := emulator.Start(ctx, emulator.Config{
		Logger: cfg.Logger,
		CloudRun: cloudrun.Config{
			Env:       hostEnv,
			StopGrace: 2 * time.Second,
			Logger:    cfg.Logger,
			User:      cfg.HostUser,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("start local cloud: %w", err)
	}
	e.suite = suite
	e.closers = append(e.closers, func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		suite.Close(cctx)
	})
	if err := suite.SetEnv(); err != nil {
		return nil, err
	}
	e.sys = system.Config{Project: suite.Project, Region: system.DefaultRegion, Job: system.DefaultJob,
		Bucket: "sandrun-bench", Names: outbox.DefaultNames(), TTL: session.DefaultTTL, Pool: spec.Pool}
	local, err := system.StartLocal(ctx, e.sys, system.LocalConfig{
		Executor: cfg.Executor, ExecutorArgs: cfg.ExecutorArgs, StateDir: e.state,
		IdleTimeout: 10 * time.Minute, LeaseTTL: 15 * time.Second, ReaperInterval: spec.ReaperInterval,
		StartDelay: spec.StartDelay, Logger: cfg.Logger, LogLevel: "warn",
	})
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { local.Close() })
	if e.clients, err = gcp.Connect(ctx, e.sys.Project, nil); err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { e.clients.Close() })
	if e.client, err = client.New(ctx, client.Config{Project: e.sys.Project, Bucket: e.sys.Bucket}); err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { e.client.Close() })
	return e, nil
}

// close stops what startEnvironment started, last first.
func (e *environment) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

// Run starts the system on a fresh local cloud, makes the measurements and
// returns them.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	env, err := startEnvironment(ctx, cfg, envSpec{StartDelay: cfg.StartDelay})
	if err != nil {
		return nil, err
	}
	defer env.close()

	r := &runner{cfg: cfg, environment: env, out: cfg.Out,
		report: &Report{StartedAt: time.Now().UTC(), Quick: cfg.Quick, Machine: describeMachine()}}
	steps := map[string]func(context.Context) error{
		"warm": r.warm, "python": r.python, "cold": r.cold, "throughput": r.throughput, "transfer": r.transfer, "checkpoint": r.checkpoint, "pool": r.pool, "tracing": r.tracing,
		"refused": r.refused, "counts": r.counts, "burst": r.burst,
	}
	for _, name := range Names {
		if len(cfg.Only) > 0 && !slices.Contains(cfg.Only, name) {
			continue
		}
		fmt.Fprintf(r.out, "measuring %s ...\n", name)
		if err := steps[name](ctx); err != nil {
			return r.report, fmt.Errorf("measure %s: %w", name, err)
		}
	}
	return r.report, nil
}

// add records a result, computing its ratio.
func (r *runner) add(res Result) {
	switch {
	case res.Floor > 0 && res.P50 > 0:
		res.Ratio = res.P50 / res.Floor
	case res.Floor > 0 && res.Value > 0:
		res.Ratio = res.Value / res.Floor
	}
	r.report.Results = append(r.report.Results, res)
	fmt.Fprintf(r.out, "  %s\n", res.line())
}

func (res Result) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-44s", res.Name)
	if res.P50 > 0 {
		fmt.Fprintf(&b, " p50 %9.2f %-5s p99 %9.2f", res.P50, res.Unit, res.P99)
	} else {
		fmt.Fprintf(&b, " %13.2f %-5s %13s", res.Value, res.Unit, "")
	}
	if res.Floor > 0 {
		fmt.Fprintf(&b, "  floor %9.2f  ratio %7.2f", res.Floor, res.Ratio)
	}
	return b.String()
}

// WriteTable prints the report as a table.
func (rep *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "measurement\tunit\tp50\tp99\tvalue\tfloor\tratio\tfloor is\t")
	num := func(v float64) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", v)
	}
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Name, r.Unit, num(r.P50), num(r.P99), num(r.Value), num(r.Floor), num(r.Ratio), r.FloorName)
	}
	tw.Flush()
	for _, r := range rep.Results {
		if r.Note != "" {
			fmt.Fprintf(w, "- %s: %s\n", r.Name, r.Note)
		}
	}
	fmt.Fprintf(w, "machine: %s\n", rep.Machine)
}

// WriteJSON writes the report to a file.
func (rep *Report) WriteJSON(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// percentiles returns the p50 and p99 of durations, in milliseconds.
func percentiles(ds []time.Duration) (p50, p99 float64) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(q*float64(len(s)-1) + 0.5)
		return float64(s[i]) / float64(time.Millisecond)
	}
	return at(0.50), at(0.99)
}
