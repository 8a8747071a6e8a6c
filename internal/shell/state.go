package shell

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"unsafe"
)

// State is what a session keeps between its commands, as a terminal would:
// the working directory and the exported environment. Shell options,
// functions, aliases and variables that are not exported do not persist,
// because every command runs in a fresh bash.
type State struct {
	// Cwd is the absolute working directory. Empty means the fallback
	// directory (see Start).
	Cwd string
	// Env holds the exported variables, by name. Names are shell
	// identifiers; values are any bytes but NUL. It is the whole
	// environment of the command: nothing is inherited from the caller.
	Env map[string]string
}

// Clone returns a deep copy of s, so that a caller can keep a State while
// passing another to Run.
func (s State) Clone() State {
	return State{Cwd: s.Cwd, Env: maps.Clone(s.Env)}
}

// ErrInvalid is wrapped by the errors that Start returns for a State or a
// Command it refuses (not a shell identifier, NUL in a value, relative cwd).
var ErrInvalid = errors.New("invalid")

// ErrMalformedState is wrapped by the error that Wait returns when the state
// file the command's shell wrote cannot be parsed.
var ErrMalformedState = errors.New("malformed state file")

// ErrStateTooLarge is wrapped by Result.StateError when the command left
// an exported environment that the next command's bash could not be
// started with (a variable over 128 KiB, or more than exec takes in all),
// so its state is not kept.
var ErrStateTooLarge = errors.New("exported environment too large to pass to a program")

// errIncomplete means the EXIT trap started writing the state file but did
// not finish (it was killed), or never wrote it. It is not an error of the
// command: the state is reported as not saved.
var errIncomplete = errors.New("state file incomplete")

// The state file is a sequence of NUL-terminated records, written by the
// wrapper's EXIT trap:
//
//	"sandrun-state-v1" NUL, cwd NUL, NAME=VALUE NUL for each exported
//	variable, then "end" NUL.
//
// The trailer is written last and only if everything before it succeeded,
// so a file that lacks it was cut short. An env record always contains '=',
// so it can never be mistaken for the trailer.
const (
	stateMagic   = "sandrun-state-v1"
	stateTrailer = "end"
	// maxStateSize bounds what Wait reads. Linux refuses to exec with more
	// than 6 MiB of arguments and environment (see execFits), so a larger
	// file holds a state too large to keep.
	maxStateSize = 16 << 20
)

// reservedPrefix names the wrapper's own shell variables. The caller may not
// use it, and a command that exports one does not persist it.
const reservedPrefix = "__sandrun_"

// dropped are the variables bash maintains by itself. Saving them would
// pin one command's values on the next (PWD would fight the restored cwd,
// SHLVL would grow). OLDPWD is kept so that `cd -` works across commands.
var dropped = map[string]bool{"PWD": true, "SHLVL": true, "_": true}

// parseState parses a state file strictly. An empty file or one without
// the trailer yields errIncomplete; anything else that is not exactly the
// format above is an error wrapping ErrMalformedState.
func parseState(data []byte) (State, error) {
	if len(data) == 0 || !bytes.HasSuffix(data, []byte("\x00"+stateTrailer+"\x00")) {
		return State{}, errIncomplete
	}
	body := data[:len(data)-len(stateTrailer)-1] // keep the NUL that ends the last record
	records := strings.Split(string(body), "\x00")
	// The split leaves an empty string after the last NUL.
	records = records[:len(records)-1]
	if len(records) < 2 || records[0] != stateMagic {
		return State{}, fmt.Errorf("%w: missing header", ErrMalformedState)
	}
	cwd := records[1]
	if !filepath.IsAbs(cwd) {
		return State{}, fmt.Errorf("%w: cwd %q is not absolute", ErrMalformedState, cwd)
	}
	env := make(map[string]string, len(records)-2)
	for i, rec := range records[2:] {
		name, value, ok := strings.Cut(rec, "=")
		if !ok {
			return State{}, fmt.Errorf("%w: env record %d has no '='", ErrMalformedState, i)
		}
		if !isIdentifier(name) {
			return State{}, fmt.Errorf("%w: env record %d: %q is not a shell identifier", ErrMalformedState, i, name)
		}
		if _, dup := env[name]; dup {
			return State{}, fmt.Errorf("%w: env record %d: %s appears twice", ErrMalformedState, i, name)
		}
		env[name] = value
	}
	for name := range env {
		if dropped[name] || strings.HasPrefix(name, reservedPrefix) {
			delete(env, name)
		}
	}
	return State{Cwd: cwd, Env: env}, nil
}

// appendState encodes a State in the state file format. The wrapper writes
// the file, not Go; this exists so that tests can check parseState against
// the format it documents.
func appendState(b []byte, s State) []byte {
	b = append(b, stateMagic+"\x00"...)
	b = append(b, s.Cwd...)
	b = append(b, 0)
	for name, value := range s.Env {
		b = append(b, name...)
		b = append(b, '=')
		b = append(b, value...)
		b = append(b, 0)
	}
	return append(b, stateTrailer+"\x00"...)
}

// isIdentifier reports whether name is a shell variable name:
// [A-Za-z_][A-Za-z0-9_]*.
func isIdentifier(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// validateEnv checks names and values before they reach exec, which would
// otherwise fail with a bare EINVAL or hand bash a name it cannot import.
func validateEnv(what string, env map[string]string) error {
	for name, value := range env {
		if !isIdentifier(name) {
			return fmt.Errorf("%s: %q is not a shell identifier: %w", what, name, ErrInvalid)
		}
		if strings.HasPrefix(name, reservedPrefix) {
			return fmt.Errorf("%s: %s uses the reserved prefix %s: %w", what, name, reservedPrefix, ErrInvalid)
		}
		if strings.IndexByte(value, 0) >= 0 {
			return fmt.Errorf("%s: value of %s contains NUL: %w", what, name, ErrInvalid)
		}
	}
	return nil
}

// Linux's limits on the strings an exec takes, from fs/exec.c and the
// headers it uses (include/uapi/linux/binfmts.h, limits.h, resource.h):
//
//   - each string, its NUL included, is at most MAX_ARG_STRLEN, 32 pages
//     (valid_arg_len, called by copy_strings for argv and envp and by
//     copy_string_kernel for the program's path);
//   - all the strings together (the path, argv and envp, each with its NUL)
//     fit in a limit that bprm_stack_limits derives from RLIMIT_STACK: a
//     quarter of its soft value, at most 3/4 of _STK_LIM (8 MiB), at least
//     ARG_MAX (128 KiB); from which it first takes one pointer for each
//     string of argv (at least one) and envp. copy_strings fails with
//     E2BIG once the strings go past what is left (bprm->argmin).
const (
	argMax         = 128 << 10 // ARG_MAX
	defaultStkLim  = 8 << 20   // _STK_LIM
	argStrlenPages = 32        // MAX_ARG_STRLEN / PAGE_SIZE
)

// execFits returns nil if the kernel would accept the strings of
// execve(path, argv, env), and an error wrapping ErrStateTooLarge (as the
// state is what grows) with the rule that refuses them if not. The limit
// comes from this process's RLIMIT_STACK, which a child inherits.
func execFits(path string, argv, env []string) error {
	maxString := argStrlenPages * os.Getpagesize()
	total := 0
	for i, s := range slices.Concat([]string{path}, argv, env) {
		if len(s)+1 > maxString {
			what := "an argument"
			if i > len(argv) {
				name, _, _ := strings.Cut(s, "=")
				what = "variable " + name
			}
			return fmt.Errorf("%s of %d bytes: over the %d that exec takes for one string: %w", what, len(s), maxString-1, ErrStateTooLarge)
		}
		total += len(s) + 1
	}
	limit := uint64(defaultStkLim / 4 * 3)
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_STACK, &rl); err == nil {
		limit = min(limit, rl.Cur/4)
	}
	limit = max(limit, argMax)
	pointers := uint64(max(len(argv), 1)+len(env)) * uint64(unsafe.Sizeof(uintptr(0)))
	if limit <= pointers || uint64(total) > limit-pointers {
		return fmt.Errorf("%d strings of %d bytes in all: over the %d bytes that exec takes with their pointers: %w", len(argv)+len(env)+1, total, limit, ErrStateTooLarge)
	}
	return nil
}
