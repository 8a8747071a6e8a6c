package cli

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sandrun/sandrun/client"
	"github.com/sandrun/sandrun/internal/config"
	"github.com/sandrun/sandrun/internal/system"
)

// stateDir is where `sandrun dev` keeps its workspaces and the environment
// file other commands read.
func stateDir(env *Env) string {
	if d := env.Getenv("SANDRUN_HOME"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "sandrun")
	}
	return filepath.Join(home, ".sandrun")
}

// devEnvFile is written by `sandrun dev` while it runs.
func devEnvFile(env *Env) string { return filepath.Join(stateDir(env), "dev.env") }

// useDevEnv points this process at a running `sandrun dev` when nothing
// else says where sandrun is: no emulator host and no project in the
// environment. The Google clients read the process environment, so the file's
// values are set there, and env reads them too.
func useDevEnv(env *Env) error {
	for _, k := range []string{"PUBSUB_EMULATOR_HOST", "SANDRUN_PROJECT", "GOOGLE_CLOUD_PROJECT"} {
		if env.Getenv(k) != "" {
			return nil
		}
	}
	f, err := os.Open(devEnvFile(env))
	if os.IsNotExist(err) {
		return fmt.Errorf("no sandrun to talk to: start one with `sandrun dev`, or set --project (SANDRUN_PROJECT) for a deployment")
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", f.Name(), err)
	}
	defer f.Close()
	vals := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		kv, ok := strings.CutPrefix(sc.Text(), "export ")
		if k, v, found := strings.Cut(kv, "="); ok && found {
			vals[k] = v
			if err := os.Setenv(k, v); err != nil {
				return fmt.Errorf("set %s: %w", k, err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", f.Name(), err)
	}
	outer := env.Getenv
	env.Getenv = func(k string) string {
		if v, ok := vals[k]; ok {
			return v
		}
		return outer(k)
	}
	return nil
}

// clientFlags are the settings of the commands that talk to sandrun as a
// backend does (system.Client) or read its state (system.Inspect).
type clientFlags struct{ s *system.Settings }

// define registers on fs the settings of program p.
func (c *clientFlags) define(fs *config.FlagSet, p system.Program) {
	c.s = system.DefaultSettings(system.Table(), p)
	c.s.Define(fs, system.Table(), p)
}

// parse parses the flags after pointing the process at `sandrun dev` if
// nothing else says where sandrun is.
func (c *clientFlags) parse(fs *config.FlagSet, env *Env, args []string) error {
	// Asking for help needs no sandrun to talk to.
	if !hasFlag(args, "project") && !hasFlag(args, "h") && !hasFlag(args, "help") {
		if err := useDevEnv(env); err != nil {
			return err
		}
	}
	return fs.Parse(env.Getenv, args)
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		a = strings.TrimLeft(a, "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// connect opens a sandrun client; filter narrows the completions it reads.
func (c *clientFlags) connect(ctx context.Context, filter string) (*client.Client, error) {
	return client.New(ctx, client.Config{Project: c.s.Project, RequestsTopic: c.s.Names.Requests, CompletionsTopic: c.s.Names.Completions, Filter: filter})
}
