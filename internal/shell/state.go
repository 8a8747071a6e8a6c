package shell

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strconv"
	"strings"
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

// ErrStateTooLarge is wrapped by Result.StateError when the command's
// exported environment could not be passed to a program (a variable over
// 128 KiB, or more than the system takes in all), so its shell could not
// save its state.
var ErrStateTooLarge = errors.New("exported environment too large to pass to a program")

// envFailedMarker takes the trailer's place when env failed; its exit
// status follows, then NUL.
const envFailedMarker = "\x00sandrun-env-failed\x00"

// errEnvFailed is wrapped by the error of parseState for a state file
// with the env failure marker.
var errEnvFailed = errors.New("env failed")

// envFailed is that error: env's exit status, as bash reported it.
type envFailed struct{ status string }

func (e *envFailed) Error() string { return "env exited with status " + e.status }

func (e *envFailed) Unwrap() []error {
	if e.status == "126" { // found but could not be run: E2BIG
		return []error{errEnvFailed, ErrStateTooLarge}
	}
	return []error{errEnvFailed}
}

// errIncomplete means the EXIT trap started writing the state file but did
// not finish: it was killed, or env could not run (an environment too large
// for exec). It is not an error of the command: the state is reported as not
// saved.
var errIncomplete = errors.New("state file incomplete")

// The state file is a sequence of NUL-terminated records, written by the
// wrapper's EXIT trap:
//
//	"sandrun-state-v1" NUL, cwd NUL, then `env -0` (NAME=VALUE NUL ...),
//	then "end" NUL.
//
// The trailer is written last and only if everything before it succeeded,
// so a file that lacks it was cut short. An env record always contains '=',
// so it can never be mistaken for the trailer.
const (
	stateMagic   = "sandrun-state-v1"
	stateTrailer = "end"
	// maxStateSize bounds what Wait reads. Linux refuses to exec with more
	// than a few MiB of environment, so a real state is far smaller.
	maxStateSize = 16 << 20
)

// reservedPrefix names the wrapper's own shell variables. The caller may not
// use it, and a command that exports one does not persist it.
const reservedPrefix = "__sandrun_"

// dropped are the variables bash maintains by itself. Saving them would
// pin one command's values on the next (PWD would fight the restored cwd,
// SHLVL would grow). OLDPWD is kept so that `cd -` works across commands.
var dropped = map[string]bool{"PWD": true, "SHLVL": true, "_": true}

// parseState parses a state file strictly. A file whose save failed at
// env yields an *envFailed (errEnvFailed). An empty file or one without
// the trailer yields errIncomplete; anything else that is not exactly the
// format above is an error wrapping ErrMalformedState.
func parseState(data []byte) (State, error) {
	if i := bytes.LastIndex(data, []byte(envFailedMarker)); i >= 0 && bytes.HasPrefix(data, []byte(stateMagic+"\x00")) {
		status, ok := bytes.CutSuffix(data[i+len(envFailedMarker):], []byte{0})
		if _, err := strconv.ParseUint(string(status), 10, 8); ok && err == nil {
			return State{}, &envFailed{status: string(status)}
		}
	}
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
		if isExportedFunction(name) {
			// `export -f` functions are not part of State: fresh shells
			// do not keep functions, exported or not.
			continue
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

// isExportedFunction reports whether name is how bash exports a function
// into the environment (BASH_FUNC_name%%).
func isExportedFunction(name string) bool {
	return strings.HasPrefix(name, "BASH_FUNC_") && strings.HasSuffix(name, "%%")
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
