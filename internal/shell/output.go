package shell

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// outputPipe carries one output stream of a command (or both, when the
// caller gave the same file for stdout and stderr) from a pipe into the
// caller's file, so that a command that reopens its output (`> /dev/stdout`,
// `tee /dev/stderr`), which truncates a regular file, reopens the pipe
// instead and loses nothing, as in a terminal.
//
// The drain goroutine writes what it reads to the end of the file until
// every writer is gone. cut marks the command's end: the bytes written
// until then (those still queued in the pipe included) are the command's
// output; what its leftovers write later follows them in the file and
// never changes them. Past limit bytes (when above 0) the drain reads and
// counts but writes nothing more: the file stays bounded and the writers
// never block.
type outputPipe struct {
	w   *os.File // the write end, handed to bash and closed once it started
	r   *os.File // the read end, the drain's
	dst *os.File // the drain's own descriptor of the caller's file
	// limit bounds what goes to dst; 0: no bound.
	limit int64

	mu     sync.Mutex
	closed bool // r is closed: no deadline may be set on it

	cutOnce sync.Once
	cutDone chan struct{} // closed once cutSize is final
	cutSize int64
	werr    error // why the drain stopped early, if it did; final with cutDone
}

// newOutputPipe makes the pipe of a stream going to dst.
func newOutputPipe(dst *os.File, limit int64) (*outputPipe, error) {
	// The drain's own descriptor: the caller may close its file as soon
	// as the command ended, while leftovers still write.
	fd, err := unix.FcntlInt(dst.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate output file %s: %w", dst.Name(), err)
	}
	own := os.NewFile(uintptr(fd), dst.Name())
	r, w, err := os.Pipe()
	if err != nil {
		own.Close()
		return nil, fmt.Errorf("create output pipe: %w", err)
	}
	return &outputPipe{w: w, r: r, dst: own, limit: limit, cutDone: make(chan struct{})}, nil
}

// drain copies the pipe into the file until no writer is left, or the
// file cannot be written (the writers then get EPIPE).
func (p *outputPipe) drain() {
	defer func() {
		p.mu.Lock()
		p.closed = true
		p.r.Close()
		p.mu.Unlock()
		p.dst.Close()
	}()
	buf := make([]byte, 64<<10)
	// seen counts what the writers wrote, written what reached the file.
	var seen, written int64
	write := func(b []byte) bool {
		seen += int64(len(b))
		if p.limit > 0 {
			b = b[:min(int64(len(b)), max(p.limit-written, 0))]
		}
		n, err := p.dst.Write(b)
		written += int64(n)
		if err != nil {
			p.finishCut(seen, fmt.Errorf("write command output to %s: %w", p.dst.Name(), err))
			return false
		}
		return true
	}
	for {
		n, err := p.r.Read(buf)
		if n > 0 && !write(buf[:n]) {
			return
		}
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			// cut asked: take what is queued now, then mark the end.
			queued, qerr := queuedBytes(p.r)
			p.r.SetReadDeadline(time.Time{})
			for queued > 0 && qerr == nil {
				n, rerr := p.r.Read(buf[:min(queued, len(buf))])
				if n > 0 && !write(buf[:n]) {
					return
				}
				queued -= n
				qerr = rerr
			}
			p.finishCut(seen, nil)
		case err != nil:
			// io.EOF: every writer is gone, everything is written.
			p.finishCut(seen, nil)
			return
		}
	}
}

func (p *outputPipe) finishCut(size int64, err error) {
	p.cutOnce.Do(func() {
		p.cutSize, p.werr = size, err
		close(p.cutDone)
	})
}

// cut returns how many bytes the stream holds now, every byte written
// before the call included, once they are in the file (or, past the
// limit, counted).
func (p *outputPipe) cut() (int64, error) {
	p.mu.Lock()
	if !p.closed {
		// A deadline in the past wakes the drain's Read at once.
		p.r.SetReadDeadline(time.Unix(1, 0))
	}
	p.mu.Unlock()
	<-p.cutDone
	return p.cutSize, p.werr
}

// abandon releases a pipe whose command never started.
func (p *outputPipe) abandon() {
	p.w.Close()
	p.r.Close()
	p.dst.Close()
}

// outputPipes makes the pipes of a command's stdout and stderr files: one
// for both when they are the same file, so that their interleaving is
// kept; none for a nil file.
func outputPipes(stdout, stderr *os.File, limit int64) (out, errp *outputPipe, err error) {
	if stdout != nil {
		if out, err = newOutputPipe(stdout, limit); err != nil {
			return nil, nil, err
		}
	}
	switch {
	case stderr == nil:
	case stderr == stdout:
		errp = out
	default:
		if errp, err = newOutputPipe(stderr, limit); err != nil {
			if out != nil {
				out.abandon()
			}
			return nil, nil, err
		}
	}
	return out, errp, nil
}

// uniquePipes lists the distinct pipes of a command.
func uniquePipes(stdout, stderr *outputPipe) []*outputPipe {
	var ps []*outputPipe
	for _, p := range []*outputPipe{stdout, stderr} {
		if p != nil && (len(ps) == 0 || ps[0] != p) {
			ps = append(ps, p)
		}
	}
	return ps
}

// pipeWriter is what the command gets for a stream: the pipe's write end,
// or nil (/dev/null).
func pipeWriter(p *outputPipe) io.Writer {
	if p == nil {
		return nil
	}
	return p.w
}

// cutOutput records in the result how much of each stream is the
// command's output, once bash has exited.
func (r *Running) cutOutput() error {
	var errs []error
	for _, s := range []struct {
		p    *outputPipe
		size *int64
	}{{r.stdout, &r.res.StdoutBytes}, {r.stderr, &r.res.StderrBytes}} {
		if s.p == nil {
			continue
		}
		n, err := s.p.cut()
		*s.size = n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
