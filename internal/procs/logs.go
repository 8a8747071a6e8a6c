package procs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// logFiles are the stdout and stderr of a command, which its adopted
// leftovers share. The Manager reads them with ReadAt only, so the write
// offset the processes share with these descriptors does not matter.
type logFiles struct {
	mu    sync.RWMutex // held shared while reading, exclusively to close
	out   *os.File
	err   *os.File
	paths []string // files in the Manager's directory, removed on release
	gone  bool     // released
}

// createLogs creates a pair of log files named prefix.stdout and
// prefix.stderr in the Manager's directory.
func (m *Manager) createLogs(prefix string) (*logFiles, error) {
	l := &logFiles{}
	for _, stream := range []string{Stdout, Stderr} {
		path := filepath.Join(m.cfg.Dir, prefix+"."+stream)
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			l.release()
			return nil, fmt.Errorf("create log file: %w", err)
		}
		l.paths = append(l.paths, path)
		if stream == Stdout {
			l.out = f
		} else {
			l.err = f
		}
	}
	return l, nil
}

// adoptLogs returns the Manager's own descriptors of a foreground command's
// output files, so that the host may close (and delete) its own.
func adoptLogs(stdout, stderr *os.File) (*logFiles, error) {
	l := &logFiles{}
	var err error
	if stdout != nil {
		if l.out, err = dupFile(stdout); err != nil {
			return nil, err
		}
	}
	if stderr != nil {
		if l.err, err = dupFile(stderr); err != nil {
			l.release()
			return nil, err
		}
	}
	return l, nil
}

// moveInto moves the files into dir under prefix, so that they are the
// Manager's to remove (and the host's later os.Remove of its names finds
// nothing). Where a file cannot be moved (another file system, already
// deleted) it stays where it is, read through the open descriptor.
func (l *logFiles) moveInto(dir, prefix string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	moved := map[string]string{}
	for _, s := range []struct {
		f      *os.File
		stream string
	}{{l.out, Stdout}, {l.err, Stderr}} {
		if s.f == nil {
			continue
		}
		src := s.f.Name()
		if _, done := moved[src]; done || !filepath.IsAbs(src) {
			continue // stdout and stderr are the same file
		}
		dst := filepath.Join(dir, prefix+"."+s.stream)
		if err := os.Rename(src, dst); err == nil {
			moved[src] = dst
			l.paths = append(l.paths, dst)
		}
	}
}

// sizes returns the current size of each stream.
func (l *logFiles) sizes() (stdout, stderr int64) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return fileSize(l.out), fileSize(l.err)
}

func fileSize(f *os.File) int64 {
	if f == nil {
		return 0
	}
	fi, err := f.Stat()
	if err != nil {
		return 0
	}
	return fi.Size()
}

var errReleased = errors.New("log files released")

// read returns the range r of each stream.
func (l *logFiles) read(r LogRange) (Output, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.gone {
		return Output{}, errReleased
	}
	limit := r.Max
	if limit <= 0 {
		limit = DefaultReadBytes
	}
	var out Output
	var err error
	if out.Stdout, out.StdoutBytes, err = readRange(l.out, r.Offset, r.Tail, limit); err != nil {
		return Output{}, fmt.Errorf("read stdout: %w", err)
	}
	if out.Stderr, out.StderrBytes, err = readRange(l.err, r.Offset, r.Tail, limit); err != nil {
		return Output{}, fmt.Errorf("read stderr: %w", err)
	}
	return out, nil
}

// readRange reads at most limit bytes of f from offset, or from size-tail
// when tail is positive, and returns them with f's size.
func readRange(f *os.File, offset, tail int64, limit int) ([]byte, int64, error) {
	if f == nil {
		return nil, 0, nil
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	size := fi.Size()
	start := offset
	if tail > 0 {
		start = max(size-tail, 0)
	}
	if start >= size {
		return nil, size, nil
	}
	buf := make([]byte, min(size-start, int64(limit)))
	n, err := f.ReadAt(buf, start)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, size, err
	}
	return buf[:n], size, nil
}

// released reports whether release was called.
func (l *logFiles) released() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.gone
}

// release closes the files and removes those in the Manager's directory.
func (l *logFiles) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range []*os.File{l.out, l.err} {
		if f != nil {
			f.Close()
		}
	}
	for _, p := range l.paths {
		os.Remove(p)
	}
	l.out, l.err, l.paths, l.gone = nil, nil, nil, true
}

// shipMark is what was last shipped of a stream.
type shipMark struct {
	ok   bool
	size int64
	mod  time.Time
}

// minSweepInterval bounds how often housekeep sweeps the process tree (a
// walk of /proc) when Config.ShipInterval is shorter.
const minSweepInterval = time.Second

// housekeep ships logs, every ShipInterval for the running processes and
// once more for each process that ends, then reports its end to the
// registry; it also reaps orphaned zombies of the session's groups and,
// while anything runs (always, with OwnsOrphans: an orphan missed at its
// command's end is found here), sweeps for processes that left their
// groups. It
// returns once Close closed finals and every final ship was made.
func (m *Manager) housekeep() {
	defer close(m.hkDone)
	t := time.NewTicker(m.cfg.ShipInterval)
	defer t.Stop()
	retry := map[*proc]bool{} // ended processes whose last ship failed
	var swept time.Time       // the last periodic sweep
	for {
		for {
			p, ok, done := m.finals.pop()
			if done {
				return
			}
			if !ok {
				break
			}
			if !m.shipProc(p) {
				retry[p] = true
			}
			m.mu.Lock()
			info := m.infoLocked(p)
			m.mu.Unlock()
			m.events.push(regEvent{ended: true, info: info})
		}
		select {
		case <-t.C:
			for _, p := range m.running() {
				m.shipProc(p)
			}
			for p := range retry {
				if m.shipProc(p) {
					delete(retry, p)
				}
			}
			m.reapOrphans()
			if time.Since(swept) >= minSweepInterval && (m.cfg.OwnsOrphans || m.Live() > 0 || m.foregroundRuns()) {
				m.sweep(false)
				swept = time.Now()
			}
		case <-m.finals.ready:
		}
	}
}

// foregroundRuns reports whether a foreground command runs.
func (m *Manager) foregroundRuns() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fg != nil
}

// running returns the running background processes.
func (m *Manager) running() []*proc {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ps []*proc
	for _, p := range m.procs {
		if p.status == StatusRunning {
			ps = append(ps, p)
		}
	}
	return ps
}

// shipProc ships the streams of p that changed since they were last
// shipped. It reports whether every ship succeeded.
func (m *Manager) shipProc(p *proc) bool {
	if m.cfg.Sink == nil {
		return true
	}
	p.logs.mu.RLock()
	defer p.logs.mu.RUnlock()
	ok := true
	for i, s := range []struct {
		f      *os.File
		stream string
	}{{p.logs.out, Stdout}, {p.logs.err, Stderr}} {
		if s.f == nil {
			continue
		}
		if err := m.shipStream(p, s.stream, s.f, &p.shipped[i]); err != nil {
			ok = false
			m.log.Warn("process log not shipped", "event", "procs.ship_failed", "pid", p.pid, "stream", s.stream, "error", err.Error())
		}
	}
	return ok
}

// shipStream ships the last ShipLimit bytes of f, unless f did not change
// since mark.
func (m *Manager) shipStream(p *proc, stream string, f *os.File, mark *shipMark) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size, mod := fi.Size(), fi.ModTime()
	if mark.ok && size == mark.size && mod.Equal(mark.mod) {
		return nil
	}
	n := min(size, m.cfg.ShipLimit)
	key := ProcessKey{Epoch: m.cfg.Epoch, Pid: p.pid}
	if err := m.cfg.Sink.Ship(m.bg, key, stream, io.NewSectionReader(f, size-n, n), n); err != nil {
		mark.ok = false
		return err
	}
	*mark = shipMark{ok: true, size: size, mod: mod}
	return nil
}

// reapOrphans reaps the zombies of the session's process groups that no
// one tracks, when orphans come to this process (see BecomeSubreaper).
func (m *Manager) reapOrphans() {
	if !reapsOrphans() {
		return
	}
	m.mu.Lock()
	groups := make(map[int]bool, len(m.groups))
	for g := range m.groups {
		groups[g] = true
	}
	m.mu.Unlock()
	reaped := 0
	for _, pid := range orphanZombies(groups, m.cfg.OwnsOrphans) {
		pidfd, err := openPidfd(pid)
		if err != nil {
			continue
		}
		// Decided under the lock that adoption holds: a process adopted
		// meanwhile is its watcher's to reap, so that its status is known.
		m.mu.Lock()
		if p := m.procs[pid]; p == nil || p.kind != kindAdopted || p.status != StatusRunning {
			if _, ok := reapPidfd(pidfd); ok {
				reaped++
			}
		}
		m.mu.Unlock()
		pidfd.Close()
	}
	if reaped > 0 {
		m.log.Debug("reaped orphaned zombies", "event", "procs.reaped", "count", reaped)
	}
}

// regEvent is a Registry call to make.
type regEvent struct {
	ended bool
	info  ProcessInfo
}

// record makes the Registry calls in order. It returns once Close closed
// events and all were made.
func (m *Manager) record() {
	defer close(m.regDone)
	for {
		ev, ok, done := m.events.pop()
		if done {
			return
		}
		if !ok {
			<-m.events.ready
			continue
		}
		if m.cfg.Registry == nil {
			continue
		}
		call, name := m.cfg.Registry.Started, "started"
		if ev.ended {
			call, name = m.cfg.Registry.Ended, "ended"
		}
		if err := call(m.bg, ev.info); err != nil {
			m.log.Warn("process registry not updated", "event", "procs.registry_failed", "pid", ev.info.Pid, "call", name, "error", err.Error())
		}
	}
}

// fifo is an unbounded queue with one consumer, so that producers never
// block (they hold the Manager's lock).
type fifo[T any] struct {
	mu     sync.Mutex
	items  []T
	closed bool
	ready  chan struct{} // has a value when items may be waiting
}

func (q *fifo[T]) init() { q.ready = make(chan struct{}, 1) }

func (q *fifo[T]) push(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.mu.Unlock()
	q.wake()
}

func (q *fifo[T]) wake() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// close makes pop report done once the queue is empty.
func (q *fifo[T]) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.wake()
}

// pop returns the first item (ok), or done when the queue is closed and
// empty; neither when it is empty for now.
func (q *fifo[T]) pop() (v T, ok, done bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return v, false, q.closed
	}
	v = q.items[0]
	var zero T
	q.items[0] = zero
	q.items = q.items[1:]
	return v, true, false
}

func (q *fifo[T]) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
