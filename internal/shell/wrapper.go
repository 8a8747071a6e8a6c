package shell

import "strings"

// saveFunction defines __sandrun_save, which writes the state file. The
// EXIT trap calls it, so it sees the shell as the command left it
// whichever way the shell ends (end of script, exit N, set -e, a fatal
// signal such as the SIGTERM of a timeout); the wrapper also calls it right
// after the command, in case the command replaced the trap with its own. A
// flag makes the second call a no-op.
//
// It uses bash builtins only, so saving costs no process: compgen -e lists
// the names of the exported variables, one a line (names are identifiers:
// Start refuses any other, and bash neither imports nor exports a variable
// by another name), into the state file, which serves as the scratch space
// that mapfile reads them back from; then one printf writes the whole file
// over them. Each name is written with the value the environment of a
// program started then would hold, as `env -0` would have printed it:
//   - a nameref is exported as the name it refers to, which ${!name} of a
//     nameref gives (an eval: the name is an identifier);
//   - arrays are never exported, nor variables declared with export but
//     never given a value (bash's OLDPWD before the first cd);
//   - exported functions are not variables: compgen -e leaves them out.
//
// It is a function, parsed with the wrapper before the command runs, so
// aliases the command defines cannot change it, and readonly, so the
// command cannot redefine it. It must neither fail nor print:
//   - options the command may have set are reset first: -u would abort on
//     an unset PWD, -e on any failure, -C (noclobber) would refuse to
//     truncate the file, -x and -v would trace into the command's stderr,
//     -E and -T would run the command's ERR and DEBUG traps in it;
//   - both calls run inside { } 2>/dev/null, so even the trace of the
//     `set` that turns tracing off goes nowhere;
//   - every command is a builtin called as such, so a command that emptied
//     PATH or defined a function named like one still gets its state saved;
//   - if the command unset or mangled PWD, the physical cwd is used.
//
// The file ends with the trailer only if the printf that writes it
// succeeded; Wait treats a file without it as "not saved".
const saveFunction = `__sandrun_save() { if [[ -z ${__sandrun_saved-} ]]; then __sandrun_saved=1; ` +
	`builtin set +euxvET +o noclobber; ` +
	`[[ ${PWD-} == /* ]] || PWD=$(builtin pwd -P) || PWD=/; ` +
	`if builtin compgen -e >"$__sandrun_state" && builtin mapfile -t __sandrun_names <"$__sandrun_state"; then ` +
	`__sandrun_records=(); ` +
	`for __sandrun_n in "${__sandrun_names[@]}"; do ` +
	`if [[ -R $__sandrun_n ]]; then builtin eval "__sandrun_records+=(\"\$__sandrun_n=\${!$__sandrun_n}\")"; ` +
	`elif [[ ${!__sandrun_n@a} != *[aA]* && -v $__sandrun_n ]]; then __sandrun_records+=("$__sandrun_n=${!__sandrun_n}"); fi; ` +
	`done; ` +
	`builtin printf '%s\0' sandrun-state-v1 "$PWD" "${__sandrun_records[@]}" end >"$__sandrun_state"; fi; fi; }`

// wrapperStatements make up the script given to `bash -c`. Its positional
// parameters are:
//
//	$1 state file, $2 start directory, $3 fallback directory,
//	$4 the command's script.
//
// The statements are joined into one line so that the command's first line
// is LINENO 1, as it would be under `bash -c "$script"`, and error messages
// name the right line. bash parses the whole line before running any of
// it, so nothing the command does changes how the wrapper's own statements
// are read.
var wrapperStatements = []string{
	// readonly: the command cannot redirect the state file or change what
	// the trap runs.
	`__sandrun_state=$1`,
	`builtin readonly __sandrun_state`,
	saveFunction,
	`builtin readonly -f __sandrun_save`,
	`builtin trap -- '{ __sandrun_save; } 2>/dev/null' EXIT`,
	// The process starts in /, which every user can enter, and cd's here
	// quietly; Start already checked that the directory exists, so the
	// fallbacks only catch one the command's user may not enter. cd would
	// set OLDPWD to /, so the session's OLDPWD (or its absence) is put back,
	// exported as bash has it, so that the command's own cd saves it.
	`if [[ -n ${OLDPWD+x} ]]; then __sandrun_old=$OLDPWD; ` +
		`builtin cd -- "$2" 2>/dev/null || builtin cd -- "$3" 2>/dev/null || builtin cd /; ` +
		`OLDPWD=$__sandrun_old; builtin unset __sandrun_old; ` +
		`else builtin cd -- "$2" 2>/dev/null || builtin cd -- "$3" 2>/dev/null || builtin cd /; ` +
		`builtin unset OLDPWD; builtin export OLDPWD; fi`,
	// The script arrives as a positional parameter, never through the
	// environment, so it cannot leak into the saved env; the positional
	// parameters are then cleared so that the command sees $# = 0. The
	// script stays in a shell variable that is never exported: prefixing
	// the eval'd text with an unset would show in bash's syntax errors,
	// which quote the offending line.
	`__sandrun_cmd=$4`,
	`builtin shift $#`,
	`builtin eval -- "$__sandrun_cmd"`,
	// $? is still the command's status here. Tracing is turned off without
	// a trace of its own, so that set -x in the command does not show the
	// wrapper's last statements.
	`{ __sandrun_rc=$?; builtin set +xv; __sandrun_save; } 2>/dev/null`,
	`builtin exit "$__sandrun_rc"`,
}

var wrapperScript = strings.Join(wrapperStatements, "; ")

// wrapperArgs is the argv of a command's bash.
func wrapperArgs(stateFile, startDir, fallback, script string) []string {
	return []string{"bash", "-c", wrapperScript, "bash", stateFile, startDir, fallback, script}
}

// CommandScript returns the script of a command that this package runs,
// given the command line (argv) of its bash, or of a subshell that bash
// forked (`( … ) &`), which keeps it: what a process list should show
// instead of the wrapper. ok is false for any other command line.
func CommandScript(argv []string) (script string, ok bool) {
	// bash -c WRAPPER bash STATE DIR FALLBACK SCRIPT: see Start.
	if len(argv) != 8 || argv[1] != "-c" || argv[2] != wrapperScript {
		return "", false
	}
	return argv[7], true
}
