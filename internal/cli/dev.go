package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/internal/programs"
	"github.com/sandrun/sandrun/internal/programs/control"
	"github.com/sandrun/sandrun/internal/system"
)

func runDev(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "dev", `dev [flags]

Runs sandrun on one machine: the local cloud, the dispatcher, the reaper,
and session hosts as local processes started by the Cloud Run fake. The
local cloud keeps Cloud Storage objects in --home/storage (unless
--storage-dir says otherwise) and Firestore's documents in
--home/firestore.snapshot, so that a restart with the same --home keeps
every session: cwd, environment and files (Pub/Sub messages in flight are
not kept). Other
sandrun commands (exec, session) find it through $SANDRUN_HOME/dev.env while
it runs. The dispatcher's and the reaper's /live, /health, /ready and
/metrics are served on the port after the local cloud's five (--base-port
+ 5; a free port when --base-port is 0). Stop it with Ctrl-C: every process
it started ends.`)
	var ec emulatorConfig
	ec.define(fs)
	ec.defineTasks(fs, defaultHostUser(), defaultWorkspace())
	home := fs.String("home", stateDir(env), "directory for session workspaces, the local cloud's storage and Firestore, and dev.env")
	fs.Env("home", "SANDRUN_HOME")
	s := system.DefaultSettings(system.Table(), system.Dev)
	s.Define(fs, system.Table(), system.Dev)
	if err := fs.Parse(env.Getenv, args); err != nil {
		return err
	}
	tuneLocalCloudGC(env)
	logger, err := programs.NewLogger(env, s.LogLevel, ec.project)
	if err != nil {
		return err
	}
	executor, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the sandrun program to run as executor: %w", err)
	}
	if err := os.MkdirAll(*home, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", *home, err)
	}

	cfg, err := ec.config(logger)
	if err != nil {
		return err
	}
	// The local cloud keeps its Cloud Storage and Firestore under --home,
	// so that sessions outlive a restart with the same home.
	if cfg.StorageDir == "" {
		cfg.StorageDir = filepath.Join(*home, "storage")
	}
	cfg.FirestoreFile = filepath.Join(*home, "firestore.snapshot")
	if u := cfg.CloudRun.User; u != nil && cfg.CloudRun.Workspace == "" {
		// The hosts keep the sessions' workspaces under --home: they must
		// own the directory (and reach it: a --home under /root is not).
		dir := filepath.Join(*home, "workspaces")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		if err := os.Chown(dir, int(u.Uid), int(u.Gid)); err != nil {
			return fmt.Errorf("hand %s to uid %d: %w", dir, u.Uid, err)
		}
	}
	suite, err := emulator.Start(ctx, cfg)
	if err != nil {
		return fmt.Errorf("start local cloud: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		suite.Close(closeCtx)
	}()
	if err := suite.SetEnv(); err != nil {
		return err
	}
	s.Project, s.TTL, s.HTTP.Addr = ec.project, 7*24*time.Hour, ec.httpAddr()
	stopTelemetry, err := control.StartTelemetry(ctx, "sandrun-dev", s, logger)
	if err != nil {
		return err
	}
	defer stopTelemetry()
	local, err := system.StartLocal(ctx, s.Config, system.LocalConfig{
		Executor: executor, ExecutorArgs: []string{"executor"}, StateDir: *home, Workspace: ec.hostWorkspace(),
		IdleTimeout: s.Executor.IdleTimeout, LeaseTTL: s.Executor.LeaseTTL, ReaperInterval: s.Reaper.Interval,
		StartDelay: ec.startDelay, LogLevel: s.LogLevel, Logger: logger,
	})
	if err != nil {
		return err
	}
	defer local.Close()

	envFile := devEnvFile(&Env{Getenv: func(k string) string {
		if k == "SANDRUN_HOME" {
			return *home
		}
		return ""
	}})
	var lines strings.Builder
	lines.WriteString(suite.ExportLines())
	for _, kv := range local.Env() {
		lines.WriteString("export " + kv + "\n")
	}
	if err := os.WriteFile(envFile, []byte(lines.String()), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", envFile, err)
	}
	defer os.Remove(envFile)

	fmt.Fprintf(env.Stdout, `sandrun is running on the local cloud.

Try it from another terminal:
  go run ./cmd/sandrun exec -- echo hello
  go run ./cmd/sandrun exec -- 'cd /tmp && export A=1'
  go run ./cmd/sandrun exec -- 'pwd; echo $A'

Other clients (Python, Go) reach it with the environment in
  %s
(eval "$(cat %s)").

Health and metrics: http://%s/ready, http://%s/metrics (also /live, /health).
Press Ctrl-C to stop.
`, envFile, filepath.Clean(envFile), local.HTTPAddr(), local.HTTPAddr())
	<-ctx.Done()
	fmt.Fprintln(env.Stderr, "stopping sandrun ...")
	return nil
}

// httpAddr is where `sandrun dev` serves health and metrics: the port after
// the local cloud's five, or a free one when the local cloud's are free
// ones.
func (c *emulatorConfig) httpAddr() string {
	port := 0
	if c.basePort != 0 {
		port = c.basePort + 5
	}
	return net.JoinHostPort(c.host, strconv.Itoa(port))
}
