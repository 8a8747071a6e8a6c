package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/client"
	"github.com/sandrun/sandrun/internal/config"
	"github.com/sandrun/sandrun/internal/gcp"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/system"
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
	cf.define(fs, system.Client)
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
	usage := "Usage: sandrun session create|get|destroy [flags] [SESSION]\n       sandrun session list [--all] [--json] [--limit N]"
	if len(args) == 0 {
		fmt.Fprintln(env.Stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "list":
		return runSessionList(ctx, env, args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(env.Stderr, usage)
		return nil
	}
	ops := map[string]api.Op{"create": api.OpSessionCreate, "get": api.OpSessionGet, "destroy": api.OpSessionDestroy}
	op, ok := ops[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "sandrun session: unknown subcommand %q\n%s\n", args[0], usage)
		return errUsage
	}
	fs := newFlagSet(env, "session "+args[0], "session "+args[0]+" [flags] [SESSION]")
	var cf clientFlags
	cf.define(fs, system.Client)
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
	if done.Session == nil {
		// session.destroy answers without a session: it is gone.
		return printJSON(env, &api.SessionInfo{SessionID: id, Status: session.StatusDestroyed})
	}
	return printJSON(env, done.Session)
}

func runSessionList(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "session list", `session list [--all] [--json] [--limit N]

Lists sessions, the most recently active first: id, status, when last
active, the execution hosting it (while its host's lease is live, or
"starting" while a launch is under way) and how many requests wait. It reads
the deployment's Firestore directly, so it needs read access to it, and it
neither creates nor wakes a session.`)
	var cf clientFlags
	cf.define(fs, system.Inspect)
	all := fs.Bool("all", false, "list destroyed sessions too (until Firestore's TTL removes them)")
	asJSON := fs.Bool("json", false, "print the sessions as a JSON array")
	limit := fs.Int("limit", session.DefaultListLimit, fmt.Sprintf("the most sessions listed (at most %d)", session.MaxListLimit))
	if err := cf.parse(fs, env, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "sandrun session list: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	if *limit < 1 || *limit > session.MaxListLimit {
		return fmt.Errorf("--limit %d: want 1 to %d", *limit, session.MaxListLimit)
	}
	clients, err := gcp.Connect(ctx, cf.s.Project, nil)
	if err != nil {
		return err
	}
	defer clients.Close()
	store := session.NewStore(clients.Firestore, clients.Storage, session.Config{})
	list, err := store.List(ctx, session.ListOptions{All: *all, Limit: *limit})
	if err != nil {
		return err
	}
	if *asJSON {
		if list == nil {
			list = []session.SessionSummary{}
		}
		return printJSON(env, list)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tSTATUS\tLAST ACTIVE\tHOST\tQUEUED")
	for _, s := range list {
		host := s.Host
		switch {
		case host == "" && s.Launching:
			host = "starting"
		case host == "":
			host = "-"
		}
		queued := strconv.Itoa(s.Queued)
		if s.Status != session.StatusActive {
			queued = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.SessionID, s.Status, s.LastActiveAt.UTC().Format(time.RFC3339), host, queued)
	}
	return tw.Flush()
}
