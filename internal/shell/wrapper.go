package shell

import "strings"

// saveFunction defines __sandrun_save, which writes the state file. The
// EXIT trap calls it, so it sees the shell as the command left it
// whichever way the shell ends (end of script, exit N, set -e, a fatal
// signal such as the SIGTERM of a timeout); the wrapper also calls it right
// after the command, in case the command replaced the trap with its own. A
// flag makes the second call a no-op.
//
// It is a function, parsed with the wrapper before the command runs, so
// aliases the command defines cannot change it, and readonly, so the
// command cannot redefine it. It must neither fail nor print:
//   - options the command may have set are reset first: -u would abort on
//     an unset PWD, -e on any failure, -C (noclobber) would refuse to
//     truncate the file, -x and -v would trace into the command's stderr;
//   - its body runs inside { } 2>/dev/null, and the calls do too, so even
//     the trace of the `set` that turns tracing off goes nowhere;
//   - env is run by absolute path, so a command that emptied PATH or
//     defined a function named env still gets its state saved;
//   - if the command unset or mangled PWD, the physical cwd is used.
//
// The trailer is written only if everything before it succeeded; Wait
// treats a file without it as "not saved". When env itself fails (an
// exported variable over Linux's 128 KiB for one string of an exec's
// environment, or more than the system takes in all: bash reports 126),
// a marker with its exit status takes the trailer's place, so that Wait
// can tell the caller the state could not be kept rather than that the
// shell never tried.
const saveFunction = `__sandrun_save() { { [[ -n ${__sandrun_saved-} ]] || { __sandrun_saved=1; ` +
	`builtin set +euxv +o noclobber; ` +
	`[[ ${PWD-} == /* ]] || PWD=$(builtin pwd -P) || PWD=/; ` +
	`builtin printf 'sandrun-state-v1\0%s\0' "$PWD" >"$__sandrun_state" && ` +
	`{ "$__sandrun_env" -0 >>"$__sandrun_state" || { builtin printf '\0sandrun-env-failed\0%d\0' $? >>"$__sandrun_state"; builtin false; }; } && ` +
	`builtin printf 'end\0' >>"$__sandrun_state"; }; } 2>/dev/null; }`

// wrapperStatements make up the script given to `bash -c`. Its positional
// parameters are:
//
//	$1 state file, $2 absolute path of env, $3 start directory,
//	$4 fallback directory, $5 the command's script.
//
// The statements are joined into one line so that the command's first line
// is LINENO 1, as it would be under `bash -c "$script"`, and error messages
// name the right line. bash parses the whole line before running any of
// it, so nothing the command does changes how the wrapper's own statements
// are read.
var wrapperStatements = []string{
	// readonly: the command cannot redirect the state file or change what
	// the trap runs.
	`__sandrun_state=$1 __sandrun_env=$2`,
	`builtin readonly __sandrun_state __sandrun_env`,
	saveFunction,
	`builtin readonly -f __sandrun_save`,
	`builtin trap -- '{ __sandrun_save; } 2>/dev/null' EXIT`,
	// The process starts in /, which every user can enter, and cd's here
	// quietly; Start already checked that the directory exists, so the
	// fallbacks only catch one the command's user may not enter. cd would
	// set OLDPWD to /, so the session's OLDPWD (or its absence) is put back,
	// exported as bash has it, so that the command's own cd saves it.
	`if [[ -n ${OLDPWD+x} ]]; then __sandrun_old=$OLDPWD; ` +
		`builtin cd -- "$3" 2>/dev/null || builtin cd -- "$4" 2>/dev/null || builtin cd /; ` +
		`OLDPWD=$__sandrun_old; builtin unset __sandrun_old; ` +
		`else builtin cd -- "$3" 2>/dev/null || builtin cd -- "$4" 2>/dev/null || builtin cd /; ` +
		`builtin unset OLDPWD; builtin export OLDPWD; fi`,
	// The script arrives as a positional parameter, never through the
	// environment, so it cannot leak into the saved env; the positional
	// parameters are then cleared so that the command sees $# = 0. The
	// script stays in a shell variable that is never exported: prefixing
	// the eval'd text with an unset would show in bash's syntax errors,
	// which quote the offending line.
	`__sandrun_cmd=$5`,
	`builtin shift $#`,
	`builtin eval -- "$__sandrun_cmd"`,
	// $? is still the command's status here. Tracing is turned off without
	// a trace of its own, so that set -x in the command does not show the
	// wrapper's last statements.
	`{ __sandrun_rc=$?; builtin set +xv; __sandrun_save; } 2>/dev/null`,
	`builtin exit "$__sandrun_rc"`,
}

var wrapperScript = strings.Join(wrapperStatements, "; ")

// CommandScript returns the script of a command that this package runs,
// given the command line (argv) of its bash, or of a subshell that bash
// forked (`( … ) &`), which keeps it: what a process list should show
// instead of the wrapper. ok is false for any other command line.
func CommandScript(argv []string) (script string, ok bool) {
	// bash -c WRAPPER bash STATE ENV DIR FALLBACK SCRIPT: see Start.
	if len(argv) != 9 || argv[1] != "-c" || argv[2] != wrapperScript {
		return "", false
	}
	return argv[8], true
}
