package firestore

import (
	"crypto/rand"
	"encoding/binary"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultHistory is how long old document versions are kept when
// Options.History is zero.
const DefaultHistory = time.Minute

// Options configures a Server. The zero value is ready to use.
type Options struct {
	// Now is the clock commit times come from (default time.Now). Commit
	// times are truncated to microseconds and always strictly increase,
	// whatever the clock does.
	Now func() time.Time
	// History is how long superseded document versions are kept, which
	// bounds how far back read_time reads, read-only transactions and
	// Listen resumption can reach (default DefaultHistory). Longer history
	// costs memory in proportion to the write rate.
	History time.Duration
	// LockTimeout is how long a write waits for the locks of transactions
	// that read its documents before it fails with ABORTED (default
	// DefaultLockTimeout, Google's emulator's figure).
	LockTimeout time.Duration
}

// Server is an in-memory google.firestore.v1.Firestore service. It serves
// any project and database; each database starts empty. Methods it does
// not implement answer Unimplemented.
type Server struct {
	pb.UnimplementedFirestoreServer

	store       *store
	txns        *txnTable
	lockTimeout time.Duration
	epoch       uint64 // tells this server's resume tokens from another's

	mu      sync.Mutex
	closed  bool
	done    chan struct{} // closed by Close
	streams map[*listenStream]struct{}
	wg      sync.WaitGroup // running Listen handlers
	// snapshotPath is Persist's file; persisted, with Persist, is closed
	// once the last snapshot is written after Close.
	snapshotPath string
	persisted    chan struct{}

	resets atomic.Int64 // Listen resumptions answered with RESET, for tests
}

// New returns an empty Firestore server.
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.History <= 0 {
		opts.History = DefaultHistory
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Server{
		store:       newStore(opts.Now, opts.History),
		txns:        newTxnTable(opts.Now),
		lockTimeout: opts.LockTimeout,
		epoch:       binary.BigEndian.Uint64(b[:]),
		done:        make(chan struct{}),
		streams:     map[*listenStream]struct{}{},
	}
}

// Register adds the Firestore service to a gRPC server.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	pb.RegisterFirestoreServer(r, s)
}

// closeWait bounds how long Close waits for Listen handlers. A handler
// blocked sending to a client that stopped reading cannot notice Close;
// stopping the gRPC server ends it.
const closeWait = 5 * time.Second

// Close ends open Listen streams (with Unavailable, so clients reconnect
// elsewhere or give up) and waits for their handlers to return, up to a
// few seconds for a handler stuck sending to a client that does not read.
// Other RPCs are not affected; stop the gRPC server to end those. With
// Persist, it then waits for the last snapshot to be written. Close is
// safe to call more than once. The server has no other goroutines.
func (s *Server) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	s.mu.Unlock()
	if s.persisted != nil {
		<-s.persisted
	}
	ended := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(ended)
	}()
	timer := time.NewTimer(closeWait)
	defer timer.Stop()
	select {
	case <-ended:
	case <-timer.C:
	}
}

func timestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

func itoa(i int) string { return strconv.Itoa(i) }
