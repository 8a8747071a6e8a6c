package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sandrun/sandrun/internal/bench"
	"github.com/sandrun/sandrun/internal/programs"
)

func runBench(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "bench", `bench [flags]

Starts the local cloud and sandrun, and measures it: warm and new-session
requests, throughput across sessions, file transfers with the host's peak
memory, workspace checkpoints, new sessions under a simulated cold
start with and without a warm pool of hosts and the pool against a burst,
and (counts) the calls, Firestore operations, critical path and CPU of one
request, read from the local cloud's record of every call. Each figure comes with a floor measured in
the same run (the same work without sandrun) and their ratio, because on a
shared machine only ratios compare from one run to another. Prints a table
and writes the results as JSON.`)
	quick := fs.Bool("quick", false, "shorter runs (a smoke test of a minute or two)")
	large := fs.Bool("large-checkpoints", false, "also measure checkpoint and restore of 1 GB in four files and of 200,000 small files (minutes, and a few GB of disk)")
	only := fs.String("only", "", "comma-separated measurements to run: "+strings.Join(bench.Names, ", "))
	out := fs.String("json", "bench-results.json", "write the results as JSON to this file (empty: do not)")
	startDelay := fs.Duration("start-delay", 0, "simulated cold start of every execution")
	poolDelay := fs.Duration("pool-start-delay", bench.DefaultPoolStartDelay, "simulated cold start of the warm pool measurement (new sessions with and without a pool)")
	python := fs.String("python", defaultBenchPython(), "the Python interpreter that runs the Python SDK for the python measurement")
	fs.Env("python", "SANDRUN_BENCH_PYTHON")
	pythonPath := fs.String("python-sdk", "python", "the Python SDK's directory, put on PYTHONPATH for the python measurement (empty: none, the SDK is installed)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process (the local cloud, the dispatcher, the reaper and the client; not the hosts) to this file")
	tputSessions := fs.String("throughput-sessions", "", "comma-separated session counts the throughput measurement runs (default 1,10,100; 1,10 with -quick)")
	hostUser := fs.String("host-user", "", "UID:GID every host runs as, as production's executor image runs it (1000:1000), so that the figures are those of its code paths; needs root, and this program where that user can run it (empty: this program's user, as the recorded figures were measured)")
	fs.Env("host-user", "SANDRUN_BENCH_HOST_USER")
	hostProfile := fs.String("host-cpuprofile", "", "write a CPU profile of each host (the executor process, not its commands) to this directory, as executor-<session>-<pid>.pprof, when it ends; merge them with go tool pprof")
	if err := fs.Parse(env.Getenv, args); err != nil {
		return err
	}
	tuneLocalCloudGC(env)
	if *cpuProfile != "" {
		stop, err := programs.StartCPUProfile(context.Background(), *cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	if *hostProfile != "" {
		dir, err := filepath.Abs(*hostProfile)
		if err == nil {
			err = os.MkdirAll(dir, 0o755)
		}
		*hostProfile = dir
		if err != nil {
			return fmt.Errorf("host CPU profile directory: %w", err)
		}
	}
	executor, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the sandrun program to run as executor: %w", err)
	}
	user, err := parseHostUser(*hostUser)
	if err != nil {
		return err
	}
	cfg := bench.Config{Executor: executor, ExecutorArgs: []string{"executor"}, Quick: *quick, LargeCheckpoints: *large, StartDelay: *startDelay, PoolStartDelay: *poolDelay,
		Python: *python, HostCPUProfileDir: *hostProfile, HostUser: user, Out: env.Stderr}
	if *pythonPath != "" {
		if cfg.PythonPath, err = filepath.Abs(*pythonPath); err != nil {
			return err
		}
	}
	for _, n := range strings.Split(*tputSessions, ",") {
		if n == "" {
			continue
		}
		k, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil || k < 1 {
			return fmt.Errorf("-throughput-sessions: %q is not a session count", n)
		}
		cfg.ThroughputSessions = append(cfg.ThroughputSessions, k)
	}
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	start := time.Now()
	report, err := bench.Run(ctx, cfg)
	if report != nil && len(report.Results) > 0 {
		fmt.Fprintln(env.Stdout)
		report.WriteTable(env.Stdout)
		fmt.Fprintf(env.Stdout, "took %v\n", time.Since(start).Round(time.Second))
		if *out != "" {
			if werr := report.WriteJSON(*out); werr != nil {
				return werr
			}
			fmt.Fprintf(env.Stdout, "results written to %s\n", *out)
		}
	}
	return err
}

// defaultBenchPython is the interpreter of `make test-python`'s virtual
// environment when there is one (it has the SDK's dependencies), else
// python3.
func defaultBenchPython() string {
	const venv = ".venv-python/bin/python"
	if _, err := os.Stat(venv); err == nil {
		return venv
	}
	return "python3"
}
