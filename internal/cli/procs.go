package cli

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/system"
)

func runPs(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "ps", "ps [flags]\n\nLists a session's processes: the foreground command and the background ones.")
	var cf clientFlags
	cf.define(fs, system.Client)
	sessionID := fs.String("session", defaultSession, "session to list")
	fs.Env("session", "SANDRUN_SESSION")
	if err := cf.parse(fs, env, args); err != nil {
		return err
	}
	done, err := cf.request(ctx, &api.Request{SessionID: *sessionID, Op: api.OpProcessList})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%7s  %-8s %5s  %-19s  %s\n", "PID", "STATUS", "EXIT", "STARTED", "COMMAND")
	for _, p := range done.Processes {
		exit := ""
		if p.ExitCode != nil {
			exit = strconv.Itoa(*p.ExitCode)
		}
		cmd := p.Command
		if p.Foreground {
			cmd += "  (foreground)"
		}
		fmt.Fprintf(env.Stdout, "%7d  %-8s %5s  %-19s  %s\n", p.PID, p.Status, exit, p.StartedAt.Local().Format(time.DateTime), cmd)
	}
	return nil
}

func runLogs(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "logs", "logs [flags] PID\n\nWrites a background process's stdout and stderr so far.")
	var cf clientFlags
	cf.define(fs, system.Client)
	sessionID := fs.String("session", defaultSession, "session of the process")
	fs.Env("session", "SANDRUN_SESSION")
	tail := fs.Int64("tail", 0, "only the last N bytes of each stream")
	if err := cf.parse(fs, env, args); err != nil {
		return err
	}
	pid, err := strconv.Atoi(fs.Arg(0))
	if fs.NArg() != 1 || err != nil {
		fmt.Fprintln(env.Stderr, "sandrun logs: want one PID")
		return errUsage
	}
	done, err := cf.request(ctx, &api.Request{SessionID: *sessionID, Op: api.OpProcessLogs, PID: pid, TailBytes: *tail})
	if err != nil {
		return err
	}
	if err := writeOutput(ctx, env.Stdout, done.StdoutData, ""); err != nil {
		return err
	}
	return writeOutput(ctx, env.Stderr, done.StderrData, "")
}

func runKill(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "kill", "kill [flags] PID | --pattern RE | --all\n\nSignals a session's processes: the process group of each, then SIGKILL after the grace period.")
	var cf clientFlags
	cf.define(fs, system.Client)
	sessionID := fs.String("session", defaultSession, "session of the processes")
	fs.Env("session", "SANDRUN_SESSION")
	pattern := fs.String("pattern", "", "kill the processes whose command line matches this regular expression")
	all := fs.Bool("all", false, "kill every process of the session")
	signal := fs.String("signal", "TERM", "signal to send")
	grace := fs.Duration("grace", api.DefaultKillGrace, "time before SIGKILL")
	if err := cf.parse(fs, env, args); err != nil {
		return err
	}
	req := &api.Request{SessionID: *sessionID, Op: api.OpProcessKill, Pattern: *pattern, All: *all, Signal: *signal, GraceSeconds: grace.Seconds()}
	if fs.NArg() == 1 {
		pid, err := strconv.Atoi(fs.Arg(0))
		if err != nil {
			fmt.Fprintf(env.Stderr, "sandrun kill: %q is not a pid\n", fs.Arg(0))
			return errUsage
		}
		req.PID = pid
	}
	done, err := cf.request(ctx, req)
	if err != nil {
		return err
	}
	for _, pid := range done.Killed {
		fmt.Fprintln(env.Stdout, pid)
	}
	return nil
}
