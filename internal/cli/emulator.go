package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/cloudrun"
	"github.com/sandrun/sandrun/emulator/faults"
	"github.com/sandrun/sandrun/internal/config"
)

// emulatorConfig is what `sandrun emulator` and `sandrun dev` share to start
// the local cloud.
type emulatorConfig struct {
	project    string
	host       string
	basePort   int
	storageDir string
	startDelay time.Duration
	images     config.List
	// Google's emulators to use in place of the local cloud's own.
	externalFirestore, externalPubSub string
	// hostUser and workspace are how tasks run: as uid:gid, each in a
	// workspace of its own, as the executor's image makes them.
	hostUser, workspace string
}

// Production's executor image runs as uid 1000 in /workspace; `sandrun
// dev` runs its hosts the same way by default where it can: as root, with
// util-linux's tools for the workspace.
func defaultHostUser() string {
	if os.Geteuid() == 0 {
		return "1000:1000"
	}
	return ""
}

func defaultWorkspace() string {
	if cloudrun.CheckWorkspace() == nil {
		return "/workspace"
	}
	return ""
}

// define registers the local cloud's flags on fs.
func (c *emulatorConfig) define(fs *config.FlagSet) {
	fs.StringVar(&c.project, "project", emulator.DefaultProject, "project the local cloud pretends to be")
	fs.Env("project", "SANDRUN_PROJECT")
	fs.StringVar(&c.host, "host", "127.0.0.1", "address to serve on; the local cloud is unauthenticated, keep it on loopback")
	fs.Env("host", "SANDRUN_EMULATOR_HOST")
	fs.IntVar(&c.basePort, "base-port", 8681, "first of five consecutive ports: Pub/Sub, Cloud Storage, Firestore, Cloud Run, admin; 0 picks free ports")
	fs.Env("base-port", "SANDRUN_EMULATOR_BASE_PORT")
	fs.StringVar(&c.storageDir, "storage-dir", "", "keep Cloud Storage objects in this directory, where they outlive the local cloud (default: a temporary directory removed on exit; sandrun dev: --home/storage)")
	fs.Env("storage-dir", "SANDRUN_EMULATOR_STORAGE_DIR")
	fs.DurationVar(&c.startDelay, "start-delay", 0, "delay before each Cloud Run execution starts, modelling a cold start")
	fs.Env("start-delay", "SANDRUN_EMULATOR_START_DELAY")
	fs.Var(&c.images, "image", "IMAGE=PATH: run the local program PATH for the container image IMAGE (repeatable)")
	fs.StringVar(&c.externalFirestore, "external-firestore", "", "HOST:PORT of a Firestore emulator to use in place of the local cloud's own, such as Google's (gcloud emulators firestore start --host-port=HOST:PORT)")
	fs.Env("external-firestore", "SANDRUN_EXTERNAL_FIRESTORE")
	fs.StringVar(&c.externalPubSub, "external-pubsub", "", "HOST:PORT of a Pub/Sub emulator to use in place of the local cloud's own, such as Google's (gcloud beta emulators pubsub start --host-port=HOST:PORT)")
	fs.Env("external-pubsub", "SANDRUN_EXTERNAL_PUBSUB")
}

// defineTasks registers the flags that say how tasks run, with their
// defaults: `sandrun dev` runs its hosts as production's image does where
// it can, `sandrun emulator` runs any program as its own user.
func (c *emulatorConfig) defineTasks(fs *config.FlagSet, user, workspace string) {
	fs.StringVar(&c.hostUser, "host-user", user, "UID:GID every Cloud Run task runs as, as an image's USER makes it; needs root (empty: this program's user)")
	fs.Env("host-user", "SANDRUN_HOST_USER")
	fs.StringVar(&c.workspace, "host-workspace", workspace, "with --host-user, a directory each task sees as its own, empty, its working directory, as a container sees its image's (the executor's: /workspace); needs root and util-linux's unshare, mount and setpriv (empty: none)")
	fs.Env("host-workspace", "SANDRUN_HOST_WORKSPACE")
}

// taskUser parses --host-user: nil when empty.
func (c *emulatorConfig) taskUser() (*syscall.Credential, error) {
	return parseHostUser(c.hostUser)
}

// parseHostUser parses a --host-user value, UID:GID: nil when empty.
func parseHostUser(s string) (*syscall.Credential, error) {
	if s == "" {
		return nil, nil
	}
	uid, gid, ok := strings.Cut(s, ":")
	u, err1 := strconv.ParseUint(uid, 10, 32)
	g, err2 := strconv.ParseUint(gid, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return nil, fmt.Errorf("--host-user %q: want UID:GID, such as 1000:1000", s)
	}
	return &syscall.Credential{Uid: uint32(u), Gid: uint32(g)}, nil
}

// hostWorkspace is the workspace the hosts keep their session's in, or ""
// when each session's is a directory of the state directory.
func (c *emulatorConfig) hostWorkspace() string {
	if c.hostUser == "" {
		return ""
	}
	return c.workspace
}

// config turns the flags into the suite's configuration.
func (c *emulatorConfig) config(logger *slog.Logger, buckets ...string) (emulator.Config, error) {
	images := map[string]string{}
	for _, kv := range c.images {
		image, path, ok := strings.Cut(kv, "=")
		if !ok || image == "" || path == "" {
			return emulator.Config{}, fmt.Errorf("--image %q: want IMAGE=PATH", kv)
		}
		images[image] = path
	}
	user, err := c.taskUser()
	if err != nil {
		return emulator.Config{}, err
	}
	if ws := c.hostWorkspace(); ws != "" {
		if err := cloudrun.CheckWorkspace(); err != nil {
			return emulator.Config{}, fmt.Errorf("--host-workspace %s: %w", ws, err)
		}
	}
	cfg := emulator.Config{
		Project:           c.project,
		Host:              c.host,
		StorageDir:        c.storageDir,
		Buckets:           buckets,
		ExternalFirestore: c.externalFirestore,
		ExternalPubSub:    c.externalPubSub,
		Logger:            logger,
		CloudRun: cloudrun.Config{
			Images:     images,
			Env:        hostEnv(),
			StartDelay: c.startDelay,
			Output:     os.Stderr,
			Logger:     logger,
			User:       user,
			Workspace:  c.hostWorkspace(),
		},
	}
	if c.basePort != 0 {
		cfg.PubSubPort, cfg.StoragePort, cfg.FirestorePort, cfg.CloudRunPort, cfg.AdminPort =
			c.basePort, c.basePort+1, c.basePort+2, c.basePort+3, c.basePort+4
	}
	return cfg, nil
}

func runEmulator(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "fault":
			return runEmulatorFault(ctx, env, args[1:])
		case "kill":
			return runEmulatorKill(ctx, env, args[1:])
		case "migrate":
			return runEmulatorMigrate(ctx, env, args[1:])
		}
	}
	fs := newFlagSet(env, "emulator", `emulator [flags]
       sandrun emulator fault add|list|clear [flags]
       sandrun emulator kill [EXECUTION]
       sandrun emulator migrate [--notice D] [--pause D] [EXECUTION]

Serves Pub/Sub, Cloud Storage, Firestore and the Cloud Run Admin API v2 on
loopback until interrupted, and prints the environment that points the
official Google clients at them, as export lines for eval. Stopping it
(SIGINT or SIGTERM) ends every process it started.`)
	var c emulatorConfig
	c.define(fs)
	c.defineTasks(fs, "", "")
	if err := fs.Parse(env.Getenv, args); err != nil {
		return err
	}
	tuneLocalCloudGC(env)
	logger := slog.New(slog.NewTextHandler(env.Stderr, nil))
	cfg, err := c.config(logger)
	if err != nil {
		return err
	}
	suite, err := emulator.Start(ctx, cfg)
	if err != nil {
		return fmt.Errorf("start local cloud: %w", err)
	}
	fmt.Fprint(env.Stdout, suite.ExportLines())
	<-ctx.Done()
	logger.Info("stopping local cloud", "event", "emulator.stopping")
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return suite.Close(closeCtx)
}

// localCloudGCPercent is the garbage collector's target (GOGC) in the
// processes that hold the local cloud: dev, emulator and bench. The local
// cloud allocates in proportion to the calls it serves (every message,
// document version and gRPC frame), and at the default of 100 collecting
// that garbage took a quarter of the bench process's CPU under throughput
// load. A local tool on a developer's machine can trade memory for it: the
// heap may grow to five times what is live instead of twice.
const localCloudGCPercent = 400

// tuneLocalCloudGC sets localCloudGCPercent, unless GOGC says otherwise.
func tuneLocalCloudGC(env *Env) {
	if env.Getenv("GOGC") != "" {
		return
	}
	debug.SetGCPercent(localCloudGCPercent)
}

// adminClient reaches the running local cloud named by SANDRUN_EMULATOR_ADMIN.
// `sandrun emulator` prints it and runs until stopped, so it cannot be
// eval'ed in the shell that needs it; `sandrun dev` also writes it to
// dev.env.
func adminClient(env *Env) (*emulator.AdminClient, error) {
	if _, err := os.Stat(devEnvFile(env)); err == nil && env.Getenv(emulator.EnvAdmin) == "" {
		// As the other commands do: a running `sandrun dev` is found
		// through its dev.env.
		if err := useDevEnv(env); err != nil {
			return nil, err
		}
	}
	addr := env.Getenv(emulator.EnvAdmin)
	if addr == "" {
		return nil, fmt.Errorf("%s is not set: start `sandrun emulator` in another terminal and run the export lines it prints here, "+
			"or, while `sandrun dev` runs, `eval \"$(cat %s)\"`", emulator.EnvAdmin, devEnvFile(env))
	}
	return &emulator.AdminClient{Addr: addr}, nil
}

func runEmulatorFault(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(env.Stderr, "Usage: sandrun emulator fault add|list|clear [flags]")
		return errUsage
	}
	admin, err := adminClient(env)
	if err != nil {
		return err
	}
	switch args[0] {
	case "add":
		fs := newFlagSet(env, "emulator fault add", "emulator fault add --service S [--method M] [--rate R --code C | --http-status N] [--latency D] [--times N] [--mid-stream]")
		var r faults.Rule
		var latency time.Duration
		fs.StringVar(&r.Service, "service", "", "pubsub, storage, firestore or cloudrun")
		fs.StringVar(&r.Method, "method", "", "gRPC method (Commit) or, for storage, HTTP method or path part; empty matches all")
		fs.Float64Var(&r.Rate, "rate", 0, "probability from 0 to 1 that a matching call fails")
		fs.StringVar(&r.Code, "code", "", "gRPC code of the failure, such as ABORTED (default UNAVAILABLE)")
		fs.IntVar(&r.HTTPStatus, "http-status", 0, "HTTP status of a failing storage call (default 503)")
		fs.DurationVar(&latency, "latency", 0, "latency added to every matching call")
		fs.IntVar(&r.Times, "times", 0, "stop after injecting this many errors (0: no limit)")
		fs.BoolVar(&r.MidStream, "mid-stream", false, "also end open streams (StreamingPull, Listen): each message sent fails the stream at --rate")
		if err := fs.Parse(env.Getenv, args[1:]); err != nil {
			return err
		}
		r.Latency = faults.Duration(latency)
		return admin.AddFault(ctx, r)
	case "list":
		rules, err := admin.Faults(ctx)
		if err != nil {
			return err
		}
		for _, r := range rules {
			fmt.Fprintf(env.Stdout, "%-9s method=%q rate=%v code=%q http_status=%d latency=%v times=%d mid_stream=%v matched=%d injected=%d\n",
				r.Rule.Service, r.Rule.Method, r.Rule.Rate, r.Rule.Code, r.Rule.HTTPStatus, time.Duration(r.Rule.Latency), r.Rule.Times, r.Rule.MidStream, r.Matched, r.Injected)
		}
		return nil
	case "clear":
		fs := newFlagSet(env, "emulator fault clear", "emulator fault clear [--service S]")
		service := fs.String("service", "", "clear only this service's rules")
		if err := fs.Parse(env.Getenv, args[1:]); err != nil {
			return err
		}
		return admin.ClearFaults(ctx, *service)
	default:
		fmt.Fprintf(env.Stderr, "sandrun emulator fault: unknown subcommand %q (want add, list or clear)\n", args[0])
		return errUsage
	}
}

func runEmulatorKill(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "emulator kill", `emulator kill [EXECUTION]

SIGKILLs the processes of a running execution of the local cloud, as a
crash would. EXECUTION is its name as `+"`sandrun session get`"+` prints it
(sandrun-executor-abcde) or its full resource name; without it, a running
execution picked at random. The local cloud is found through
SANDRUN_EMULATOR_ADMIN or, while `+"`sandrun dev`"+` runs, its dev.env.`)
	if err := fs.Parse(env.Getenv, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		fmt.Fprintln(env.Stderr, "Usage: sandrun emulator kill [EXECUTION]  (no name: a random running execution)")
		return errUsage
	}
	admin, err := adminClient(env)
	if err != nil {
		return err
	}
	name := fs.Arg(0)
	killed, err := admin.KillExecution(ctx, name)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, killed)
	return nil
}

func runEmulatorMigrate(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "emulator migrate", `emulator migrate [--notice D] [--pause D] [EXECUTION]

Puts a running execution of the local cloud through a maintenance event,
as Cloud Run does when it moves a task to another machine: SIGTSTP to its
main process, --notice later every process of the task paused for
--pause, then continued, and SIGCONT to its main process. Returns once the
task runs again. EXECUTION is named as for `+"`sandrun emulator kill`"+`;
without it, a running execution picked at random.`)
	notice := fs.Duration("notice", emulator.DefaultMigrationNotice, "time from the warning (SIGTSTP) to the pause (Cloud Run: 10 s)")
	pause := fs.Duration("pause", emulator.DefaultMigrationPause, "how long every process of the task stays paused")
	if err := fs.Parse(env.Getenv, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		fmt.Fprintln(env.Stderr, "Usage: sandrun emulator migrate [--notice D] [--pause D] [EXECUTION]  (no name: a random running execution)")
		return errUsage
	}
	admin, err := adminClient(env)
	if err != nil {
		return err
	}
	migrated, err := admin.MigrateExecution(ctx, fs.Arg(0), *notice, *pause)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, migrated)
	return nil
}

// hostEnv is what the local cloud's executions get of this process's
// environment: the PATH and HOME they run with, and the OpenTelemetry
// settings, so that hosts export traces and metrics where the rest of the
// system does.
func hostEnv() []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	return env
}
