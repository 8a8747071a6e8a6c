//go:build !plan9

package api

import (
	"fmt"
	"strconv"
	"syscall"
)

// ParseSignal reads the name of a signal that process.kill sends: TERM,
// INT, HUP, KILL, QUIT, USR1 or USR2, with or without the prefix SIG
// ("TERM", "SIGKILL"), in capitals. The
// number is Linux's, where sandrun's hosts run. (Plan 9 has no
// syscall.Signal, so this function is not built there.)
func ParseSignal(name string) (syscall.Signal, error) {
	if n := killSignalNumber(name); n != 0 {
		return syscall.Signal(n), nil
	}
	return 0, fmt.Errorf("signal %q is not one of TERM, INT, HUP, KILL, QUIT, USR1 and USR2 (with or without SIG)", clip(name, maxQuoted))
}

// KillSignal is the signal process.kill sends: Signal's, or SIGTERM when
// Signal is empty. It is SIGTERM too for a Signal that ParseSignal does not
// take, which Validate rejects.
func (r *Request) KillSignal() syscall.Signal {
	if sig, err := ParseSignal(r.Signal); err == nil {
		return sig
	}
	return syscall.Signal(15)
}

// SignalName names a Linux signal as ProcessInfo.Signal does, without the
// prefix SIG ("KILL"); a signal without a name (a real-time one) is its
// number.
func SignalName(sig syscall.Signal) string {
	if n := int(sig); n > 0 && n < len(linuxSignals) {
		return linuxSignals[n]
	}
	return strconv.Itoa(int(sig))
}
