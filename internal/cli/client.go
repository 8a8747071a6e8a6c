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
	"github.com/sandrun/sandrun/internal/outbox"
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

// clientFlags are the flags of the commands that talk to sandrun as a
// backend does.
type clientFlags struct {
	project, requests, completions string
}

func (c *clientFlags) define(fs *config.FlagSet) {
	fs.StringVar(&c.project, "project", "", "Google Cloud project of the deployment (default: the running `sandrun dev`)")
	fs.Env("project", "SANDRUN_PROJECT")
	fs.StringVar(&c.requests, "requests-topic", outbox.DefaultRequestsTopic, "Pub/Sub topic of requests")
	fs.Env("requests-topic", "SANDRUN_REQUESTS_TOPIC")
	fs.StringVar(&c.completions, "completions-topic", outbox.DefaultCompletionsTopic, "Pub/Sub topic of completions")
	fs.Env("completions-topic", "SANDRUN_COMPLETIONS_TOPIC")
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
	if err := fs.Parse(env.Getenv, args); err != nil {
		return err
	}
	if c.project == "" {
		c.project = env.Getenv("GOOGLE_CLOUD_PROJECT")
	}
	if c.project == "" {
		c.project = system.DefaultProject
	}
	return nil
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
	return client.New(ctx, client.Config{Project: c.project, RequestsTopic: c.requests, CompletionsTopic: c.completions, Filter: filter})
}
