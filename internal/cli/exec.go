package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/client"
	"github.com/sandrun/sandrun/internal/config"
)

// defaultSession is the session commands use unless told otherwise.
const defaultSession = "default"

// launchAllowance is how long beyond a command's own timeout `sandrun exec`
// waits, for a host to start.
const launchAllowance = 5 * time.Minute

func runExec(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "exec", `exec [flags] -- COMMAND...

Runs COMMAND with bash in a session, as a backend would (publish, then await
the completion), writes its stdout and stderr as they came, and exits with
its exit code. The session keeps its working directory, exported variables
and files from one command to the next.`)
	var cf clientFlags
	cf.define(fs)
	sessionID := fs.String("session", defaultSession, "session to run in")
	fs.Env("session", "SANDRUN_SESSION")
	timeout := fs.Duration("timeout", api.DefaultTimeout, "kill the command after this long")
	cwd := fs.String("cwd", "", "directory for this command only (relative to the session's)")
	var envs config.List
	fs.Var(&envs, "env", "NAME=VALUE for this command only (repeatable)")
	asJSON := fs.Bool("json", false, "print the completion as JSON instead of the output")
	requestID := fs.String("request-id", "", "idempotency key (default: a new UUID)")
	if err := cf.parse(fs, env, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(env.Stderr, "sandrun exec: no command given (usage: sandrun exec [flags] -- COMMAND...)")
		return errUsage
	}
	req := &api.Request{RequestID: *requestID, SessionID: *sessionID, Op: api.OpExec,
		Command: strings.Join(fs.Args(), " "), TimeoutSeconds: timeout.Seconds(), Cwd: *cwd}
	if req.RequestID == "" {
		req.RequestID = uuid.NewString()
	}
	for _, kv := range envs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("--env %q: want NAME=VALUE", kv)
		}
		if req.Env == nil {
			req.Env = map[string]string{}
		}
		req.Env[k] = v
	}
	// Refuse here what sandrun would refuse, with the same words.
	if err := req.Validate(); err != nil {
		return err
	}
	done, err := do(ctx, &cf, req, *timeout+launchAllowance)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env, done)
	}
	if err := writeOutput(ctx, env.Stdout, done.StdoutData, done.StdoutObject); err != nil {
		return err
	}
	if err := writeOutput(ctx, env.Stderr, done.StderrData, done.StderrObject); err != nil {
		return err
	}
	if done.Status == api.StatusError {
		fmt.Fprintf(env.Stderr, "sandrun exec: %s: %s\n", done.Error.Code, done.Error.Message)
		if done.ExitCode > 0 {
			return exitError{done.ExitCode}
		}
		return exitError{1}
	}
	if done.ExitCode != 0 {
		return exitError{done.ExitCode}
	}
	return nil
}

// do sends one request and waits up to wait for its completion.
func do(ctx context.Context, cf *clientFlags, req *api.Request, wait time.Duration) (*api.Completion, error) {
	c, err := cf.connect(ctx, fmt.Sprintf("attributes.session_id = %q", req.SessionID))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	return c.Do(ctx, req)
}

// writeOutput writes an output stream: the whole object when the completion
// names one, else what the completion carries.
func writeOutput(ctx context.Context, w io.Writer, inline func() ([]byte, error), object string) error {
	if object != "" {
		r, err := client.ReadObject(ctx, object)
		if err != nil {
			return err
		}
		defer r.Close()
		_, err = io.Copy(w, r)
		return err
	}
	b, err := inline()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func printJSON(env *Env, v any) error {
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runSession(ctx context.Context, env *Env, args []string) error {
	usage := "Usage: sandrun session create|get|destroy [flags] [SESSION]"
	if len(args) == 0 {
		fmt.Fprintln(env.Stderr, usage)
		return errUsage
	}
	ops := map[string]api.Op{"create": api.OpSessionCreate, "get": api.OpSessionGet, "destroy": api.OpSessionDestroy}
	op, ok := ops[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "sandrun session: unknown subcommand %q\n%s\n", args[0], usage)
		return errUsage
	}
	fs := newFlagSet(env, "session "+args[0], "session "+args[0]+" [flags] [SESSION]")
	var cf clientFlags
	cf.define(fs)
	if err := cf.parse(fs, env, args[1:]); err != nil {
		return err
	}
	id := defaultSession
	if v := env.Getenv("SANDRUN_SESSION"); v != "" {
		id = v
	}
	if fs.NArg() > 0 {
		id = fs.Arg(0)
	}
	req := &api.Request{RequestID: uuid.NewString(), SessionID: id, Op: op}
	if err := req.Validate(); err != nil {
		return err
	}
	done, err := do(ctx, &cf, req, launchAllowance)
	if err != nil {
		return err
	}
	if done.Status == api.StatusError {
		return fmt.Errorf("%s: %s", done.Error.Code, done.Error.Message)
	}
	return printJSON(env, done.Session)
}
