// Package cli is the sandrun command line: it parses arguments and wires the
// packages that do the work. Every command is a function of its arguments and
// output streams, so tests run it as a user would.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"

	"github.com/sandrun/sandrun/internal/config"
	"github.com/sandrun/sandrun/internal/programs"
	"github.com/sandrun/sandrun/internal/programs/control"
)

// command is one subcommand of sandrun.
type command struct {
	summary string
	run     func(ctx context.Context, env *Env, args []string) error
}

// Env is what a command may touch of the outside world.
type Env = programs.Env

// exitError carries an exit code other than 1 out of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return "exit status " + strconv.Itoa(e.code) }

func commands() map[string]command {
	return map[string]command{
		"emulator":   {"serve the local cloud (Pub/Sub, Cloud Storage, Firestore, Cloud Run) on loopback", runEmulator},
		"dispatcher": {"run the dispatcher (the Pub/Sub queue worker)", control.Dispatcher},
		"reaper":     {"run the reaper (recovery of lost hosts, publishes, stale sessions)", control.Reaper},
		"executor":   {"run the session host (the Cloud Run job's entrypoint)", programs.Executor},
		"exec":       {"run a shell command in a session and print its output", runExec},
		"session":    {"create, get, destroy or list sessions", runSession},
		"cp":         {"copy a file between this machine and a session (SESSION:PATH)", runCp},
		"ls":         {"list a directory of a session", runLs},
		"cat":        {"print a file of a session", runCat},
		"ps":         {"list a session's processes", runPs},
		"logs":       {"print a background process's output", runLogs},
		"kill":       {"signal a session's processes", runKill},
		"dev":        {"run sandrun on the local cloud: emulators, dispatcher, reaper, hosts", runDev},
		"status":     {"show the running system: sessions, hosts, queue, recent outcomes and latency, the warm pool", runStatus},
		"bench":      {"measure sandrun on the local cloud against floors measured in the same run", runBench},
	}
}

// Main runs sandrun with args (without the program name) and returns the
// process exit code.
func Main(ctx context.Context, env *Env, args []string) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(env.Stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "sandrun: unknown command %q\n\n", args[0])
		usage(env.Stderr, cmds)
		return 2
	}
	err := cmd.run(ctx, env, args[1:])
	if exit := (exitError{}); errors.As(err, &exit) {
		return exit.code
	}
	return programs.ExitCode(env.Stderr, "sandrun "+args[0], err)
}

// errUsage reports bad arguments after the flag set has printed why.
var errUsage = config.ErrUsage

// newFlagSet returns a command's flag set.
func newFlagSet(env *Env, name, synopsis string) *config.FlagSet {
	return programs.FlagSet(env, name, synopsis)
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "sandrun runs shell commands, files and processes for AI agents in sandboxes on Cloud Run Jobs.")
	fmt.Fprintln(w, "\nUsage: sandrun COMMAND [flags]\n\nCommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'sandrun COMMAND --help' for a command's flags and environment variables.")
}

// OSEnv is the Env of a real process.
func OSEnv() *Env { return programs.OSEnv() }
