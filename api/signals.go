package api

import "strings"

// linuxSignals names the signals of Linux on amd64 and arm64 by number.
// sandrun's hosts run Linux, so the numbers of this contract are Linux's,
// whatever system a client or this package runs on (macOS, for one, numbers
// USR1 and USR2 otherwise).
var linuxSignals = [...]string{
	1: "HUP", 2: "INT", 3: "QUIT", 4: "ILL", 5: "TRAP", 6: "ABRT", 7: "BUS", 8: "FPE",
	9: "KILL", 10: "USR1", 11: "SEGV", 12: "USR2", 13: "PIPE", 14: "ALRM", 15: "TERM", 16: "STKFLT",
	17: "CHLD", 18: "CONT", 19: "STOP", 20: "TSTP", 21: "TTIN", 22: "TTOU", 23: "URG", 24: "XCPU",
	25: "XFSZ", 26: "VTALRM", 27: "PROF", 28: "WINCH", 29: "IO", 30: "PWR", 31: "SYS",
}

// killSignals are the names of the signals process.kill sends, without the
// prefix SIG, which a request may add. TERM is the default.
var killSignals = []string{"TERM", "INT", "HUP", "KILL", "QUIT", "USR1", "USR2"}

// killSignalNumber is the Linux number of a signal process.kill sends, by
// name with or without the prefix SIG; 0 for any other name.
func killSignalNumber(name string) int {
	name = strings.TrimPrefix(name, "SIG")
	for _, n := range killSignals {
		if n == name {
			for num, s := range linuxSignals {
				if s == name {
					return num
				}
			}
		}
	}
	return 0
}
