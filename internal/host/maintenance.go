package host

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// Maintenance is what Cloud Run tells a task of a maintenance event: the
// task is paused, moved to another machine with everything it holds, and
// resumed there. Its processes, files and memory survive; its time does
// not stop, so a lease that lapses during the pause would make the host
// fence itself off when it runs again, killing the session's processes,
// and the reaper cancel it meanwhile.
type Maintenance int

const (
	// MaintenanceNotice: the task will be paused in about 10 s (SIGTSTP).
	MaintenanceNotice Maintenance = iota + 1
	// MaintenanceResumed: the task runs again (SIGCONT).
	MaintenanceResumed
)

func (m Maintenance) String() string {
	switch m {
	case MaintenanceNotice:
		return "notice"
	case MaintenanceResumed:
		return "resumed"
	}
	return "unknown"
}

// MaintenanceSignals turns the signals Cloud Run sends a task around a
// maintenance event into Maintenance events, until ctx ends: SIGTSTP, 10 s
// before the task is paused, and SIGCONT once it runs again. Catching
// SIGTSTP also keeps it from stopping the host, as it would any process but
// its container's first. Events the host does not take in time are
// dropped but the last: only the latest one matters.
func MaintenanceSignals(ctx context.Context) <-chan Maintenance {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTSTP, syscall.SIGCONT)
	out := make(chan Maintenance, 1)
	go func() {
		defer signal.Stop(sigs)
		for {
			var m Maintenance
			select {
			case <-ctx.Done():
				return
			case sig := <-sigs:
				m = MaintenanceResumed
				if sig == syscall.SIGTSTP {
					m = MaintenanceNotice
				}
			}
			for {
				select {
				case out <- m:
				default:
					select {
					case <-out: // an older event nobody took: the new one replaces it
					default:
					}
					continue
				}
				break
			}
		}
	}()
	return out
}
