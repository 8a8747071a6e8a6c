// Package emulator is sandrun's local cloud: Pub/Sub, Cloud Storage,
// Firestore and the Cloud Run Admin API v2, served on loopback so that the
// official Google client libraries talk to them exactly as they talk to
// Google. Production and local runs share one code path; only the endpoints
// differ, and the environment that Suite.Env prints selects them.
//
// Pub/Sub and Firestore are sandrun's own (packages emulator/pubsub and
// emulator/firestore), written to redeliver and to lock as Google's
// services do where sandrun's correctness depends on it; Cloud Storage is
// fake-gcs-server; Cloud Run is sandrun's own (emulator/cloudrun). Every
// service sits behind the fault injector of package emulator/faults, and an
// admin endpoint lets a running suite be given faults and have executions
// killed. Every call served is counted, and on demand recorded with its
// timing (Suite.Calls, package emulator/calls), so that the bench can count
// what a request costs; recording changes nothing a service answers.
//
// Cloud Storage keeps its objects on disk, always (in a temporary
// directory that Close removes, unless Config.StorageDir names one), so
// that objects of gigabytes pass without growing the local cloud's memory;
// Pub/Sub and Firestore keep their state in memory (Firestore can persist
// it to a file). The suite is a development and test tool and never talks
// to Google.
package emulator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandrun/sandrun/emulator/calls"
	"github.com/sandrun/sandrun/emulator/cloudrun"
	"github.com/sandrun/sandrun/emulator/faults"
	"github.com/sandrun/sandrun/emulator/firestore"
	"github.com/sandrun/sandrun/emulator/iam"
	"github.com/sandrun/sandrun/emulator/pubsub"
)

// The environment variables a client needs to reach the suite. The first
// three are honoured by the official Google clients themselves.
const (
	EnvPubSub    = "PUBSUB_EMULATOR_HOST"
	EnvStorage   = "STORAGE_EMULATOR_HOST"
	EnvFirestore = "FIRESTORE_EMULATOR_HOST"
	// EnvCloudRun is sandrun's own: host:port of the Cloud Run Admin API v2.
	EnvCloudRun = "CLOUDRUN_EMULATOR_HOST"
	// EnvIAMCredentials is sandrun's own too: host:port of the IAM Service
	// Account Credentials API, which the suite serves beside Cloud Run's.
	EnvIAMCredentials = "IAMCREDENTIALS_EMULATOR_HOST"
	// EnvAdmin is host:port of the suite's admin endpoint (faults, kills).
	EnvAdmin = "SANDRUN_EMULATOR_ADMIN"
	// EnvProject names the project the suite's clients should use.
	EnvProject = "GOOGLE_CLOUD_PROJECT"
)

// DefaultProject is the project the local cloud pretends to be.
const DefaultProject = "sandrun-local"

// Config says how to start the suite. The zero value starts every service on
// a free loopback port, Cloud Storage in a temporary directory.
type Config struct {
	// Project defaults to DefaultProject.
	Project string
	// Host is the address to listen on (default 127.0.0.1). The suite is
	// unauthenticated: keep it on loopback.
	Host string
	// Ports of each service; 0 picks a free port.
	PubSubPort, StoragePort, FirestorePort, CloudRunPort, AdminPort int
	// StorageDir is where Cloud Storage keeps its objects, which outlive
	// the suite there; empty: a temporary directory that Close removes.
	StorageDir string
	// FirestoreFile keeps Firestore's documents in that file across
	// restarts (firestore.Server.Persist); empty keeps them in memory.
	FirestoreFile string
	// Buckets are created when the suite starts.
	Buckets []string
	// CloudRun configures the Cloud Run fake. The suite adds its own
	// environment (the emulator hosts and project) to CloudRun.Env so that a
	// task finds the local cloud as a Cloud Run job finds Google's.
	CloudRun cloudrun.Config
	// ExternalFirestore and ExternalPubSub (host:port), when set, name an
	// emulator that the suite uses in place of its own Firestore or
	// Pub/Sub: Google's (`gcloud emulators firestore start`, `gcloud beta
	// emulators pubsub start`), so that sandrun can run on Google's
	// emulators. The suite then serves no such service of its own. Env
	// points clients at an external Firestore itself, which faults do not
	// reach; an external Pub/Sub is served through a proxy on the suite's
	// Pub/Sub address, so that faults reach it too (proxy.go).
	ExternalFirestore, ExternalPubSub string
	// Logger receives the suite's own events (default: discard).
	Logger *slog.Logger
}

// Suite is a running local cloud.
type Suite struct {
	Project string
	// Addresses (host:port) of each service.
	PubSubAddr, StorageAddr, FirestoreAddr, CloudRunAddr, AdminAddr string

	// Faults is the injector every service consults.
	Faults *faults.Injector
	// PubSub is sandrun's own (nil with Config.ExternalPubSub).
	PubSub  *pubsub.Server
	Storage *fakestorage.Server
	// StorageDir is where Storage keeps its objects: Config.StorageDir, or
	// a directory of a temporary one that Close removes.
	StorageDir string
	// objects writes Storage's objects to disk (storage_uploads.go).
	objects *diskObjects
	// storageTemp is the temporary directory of Storage's objects, which
	// Close removes; empty when Config.StorageDir named one.
	storageTemp string
	// Firestore is sandrun's own (nil with Config.ExternalFirestore).
	Firestore *firestore.Server
	// FirestoreUsage counts the document reads, writes and deletes the
	// Firestore calls served would be billed (docs/cost.md); nil with
	// Config.ExternalFirestore.
	FirestoreUsage *firestore.Usage
	// Calls records the calls every service serves (calls after the fault
	// injector: a call failed by an injected fault is not recorded), for
	// `sandrun bench` to count; with Config.ExternalFirestore or
	// ExternalPubSub, that service's calls are not recorded.
	Calls    *calls.Log
	CloudRun *cloudrun.Server
	// IAM mints the access tokens of IAM Credentials' GenerateAccessToken,
	// on CloudRunAddr.
	IAM *iam.Server

	logger      *slog.Logger
	pubsubProxy *proxy // with Config.ExternalPubSub
	grpcs       []*grpc.Server
	https       []*http.Server
	serving     chan error
}

// Start serves the four services and the admin endpoint. It returns once all
// of them accept connections; Close stops them.
func Start(ctx context.Context, cfg Config) (_ *Suite, err error) {
	if cfg.Project == "" {
		cfg.Project = DefaultProject
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Suite{
		Project: cfg.Project,
		Faults:  faults.New(),
		Calls:   &calls.Log{},
		logger:  cfg.Logger,
		serving: make(chan error, 5),
	}
	// Listen everywhere first: the Cloud Run fake hands every address to the
	// tasks it starts, so all of them must be known before it exists.
	var listeners []net.Listener
	defer func() {
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			s.Close(context.WithoutCancel(ctx))
		}
	}()
	listen := func(port int) (net.Listener, error) {
		l, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(port)))
		if err == nil {
			listeners = append(listeners, l)
		}
		return l, err
	}
	var firestoreL net.Listener
	pubsubL, err := listen(cfg.PubSubPort)
	if err != nil {
		return nil, fmt.Errorf("listen for pubsub: %w", err)
	}
	storageL, err := listen(cfg.StoragePort)
	if err != nil {
		return nil, fmt.Errorf("listen for storage: %w", err)
	}
	if cfg.ExternalFirestore == "" {
		if firestoreL, err = listen(cfg.FirestorePort); err != nil {
			return nil, fmt.Errorf("listen for firestore: %w", err)
		}
	}
	cloudrunL, err := listen(cfg.CloudRunPort)
	if err != nil {
		return nil, fmt.Errorf("listen for cloud run: %w", err)
	}
	adminL, err := listen(cfg.AdminPort)
	if err != nil {
		return nil, fmt.Errorf("listen for admin: %w", err)
	}
	s.PubSubAddr, s.FirestoreAddr = pubsubL.Addr().String(), cfg.ExternalFirestore
	if firestoreL != nil {
		s.FirestoreAddr = firestoreL.Addr().String()
	}
	s.StorageAddr = storageL.Addr().String()
	s.CloudRunAddr = cloudrunL.Addr().String()
	s.AdminAddr = adminL.Addr().String()

	// Pub/Sub: sandrun's own, or an external one behind a proxy that
	// faults reach.
	if cfg.ExternalPubSub == "" {
		s.PubSub = pubsub.New(pubsub.Options{Logger: s.logger})
		pubsubG := s.newGRPCServer(faults.PubSub, s.Calls.PubSub()...)
		s.PubSub.Register(pubsubG)
		s.serveGRPC(pubsubG, pubsubL)
	} else {
		if s.pubsubProxy, err = newProxy(cfg.ExternalPubSub); err != nil {
			return nil, fmt.Errorf("external pubsub: %w", err)
		}
		s.serveGRPC(s.newGRPCServer(faults.PubSub, s.pubsubProxy.serverOptions()...), pubsubL)
	}

	// Cloud Storage: fake-gcs-server without a listener of its own, behind
	// the fault middleware, its objects on disk and written by
	// diskObjects. ExternalURL makes the resumable-upload sessions it hands
	// out point back here.
	if cfg.StorageDir == "" {
		if s.storageTemp, err = os.MkdirTemp("", "sandrun-storage-"); err != nil {
			return nil, fmt.Errorf("start storage: %w", err)
		}
		cfg.StorageDir = filepath.Join(s.storageTemp, "objects")
	}
	s.StorageDir = cfg.StorageDir
	storageURL := "http://" + s.StorageAddr
	s.Storage, err = fakestorage.NewServerWithOptions(fakestorage.Options{
		NoListener:  true,
		Scheme:      "http",
		Host:        cfg.Host,
		ExternalURL: storageURL,
		PublicHost:  s.StorageAddr,
		StorageRoot: cfg.StorageDir,
	})
	if err != nil {
		return nil, fmt.Errorf("start storage: %w", err)
	}
	for _, b := range cfg.Buckets {
		s.Storage.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: b, VersioningEnabled: false})
	}
	if s.objects, err = newDiskObjects(cfg.StorageDir, s.Storage); err != nil {
		return nil, fmt.Errorf("start storage: %w", err)
	}
	s.objects.next = s.Storage.HTTPHandler()
	s.serveHTTP(&http.Server{Handler: s.StorageHandler(), ReadHeaderTimeout: 10 * time.Second}, storageL)

	// Firestore.
	if firestoreL != nil {
		s.Firestore = firestore.New(firestore.Options{})
		if cfg.FirestoreFile != "" {
			if err := s.Firestore.Persist(cfg.FirestoreFile, time.Second); err != nil {
				return nil, fmt.Errorf("start firestore: %w", err)
			}
		}
		s.FirestoreUsage = &firestore.Usage{Log: s.Calls}
		firestoreG := s.newGRPCServer(faults.Firestore, s.FirestoreUsage.Interceptors()...)
		s.Firestore.Register(firestoreG)
		s.serveGRPC(firestoreG, firestoreL)
	}

	// Cloud Run: tasks see the suite as a Cloud Run job sees Google.
	runCfg := cfg.CloudRun
	runCfg.Env = append(append([]string(nil), runCfg.Env...), s.Env()...)
	if runCfg.OnTaskStart == nil {
		runCfg.OnTaskStart = s.Calls.TaskStarted
	}
	if runCfg.Logger == nil {
		runCfg.Logger = cfg.Logger
	}
	s.CloudRun = cloudrun.New(runCfg)
	cloudrunG := s.newGRPCServer(faults.CloudRun, s.Calls.CloudRun()...)
	s.CloudRun.Register(cloudrunG)
	s.IAM = iam.New()
	s.IAM.Register(cloudrunG)
	s.serveGRPC(cloudrunG, cloudrunL)

	s.serveHTTP(&http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 10 * time.Second}, adminL)
	listeners = nil // the servers own them now
	s.logger.Info("local cloud started", "event", "emulator.started", "pubsub", s.PubSubAddr,
		"storage", s.StorageAddr, "firestore", s.FirestoreAddr, "cloudrun", s.CloudRunAddr, "admin", s.AdminAddr)
	return s, nil
}

// grpcStreamWorkers is how many goroutines each of the local cloud's gRPC
// servers keeps to run calls on. Without them every call starts a
// goroutine whose stack grows, by copying, through the interceptors and
// the handler: a tenth of the local cloud's CPU under throughput load.
// A long stream (a Listen, a StreamingPull) holds its worker while it
// lasts, and a call that finds none free starts a goroutine as before,
// so there are enough for a hundred hosts' listeners and the calls in
// flight besides; an idle worker costs its stack.
const grpcStreamWorkers = 256

// newGRPCServer returns a gRPC server whose calls pass the fault injector,
// then what opts add (a service's own checks, usage counters: interceptors
// chained after the fault injector), and whose handlers cannot take the
// process down with a panic.
func (s *Suite) newGRPCServer(service string, opts ...grpc.ServerOption) *grpc.Server {
	g := grpc.NewServer(append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(recoverUnary(s.logger, service), s.Faults.UnaryInterceptor(service)),
		grpc.ChainStreamInterceptor(recoverStream(s.logger, service), s.Faults.StreamInterceptor(service)),
		grpc.MaxRecvMsgSize(64 << 20),
		grpc.NumStreamWorkers(grpcStreamWorkers),
	}, opts...)...)
	s.grpcs = append(s.grpcs, g)
	return g
}

// hasBucket reports whether the fake holds a bucket of that name.
func (s *Suite) hasBucket(name string) bool {
	_, err := s.Storage.Backend().GetBucket(name)
	return err == nil
}

// StorageHandler is the Cloud Storage endpoint as served: fake-gcs-server
// behind the fault injector, unable to take the suite down with a panic,
// reached by every official client through the one STORAGE_EMULATOR_HOST
// that Env sets (see jsonAPIPrefix).
func (s *Suite) StorageHandler() http.Handler {
	return s.jsonAPIPrefix(recoverHTTP(s.logger, s.Faults.HTTPMiddleware(faults.Storage, s.Calls.StorageMiddleware(s.objects))))
}

// jsonAPIPrefix serves the JSON API under / as well as under /storage/v1.
// Given STORAGE_EMULATOR_HOST=http://HOST:PORT, the Go and Python clients
// add /storage/v1 to their JSON API calls, but the Node.js client
// (@google-cloud/storage 7.x) takes the variable as the JSON API's base
// URL and calls HOST:PORT/b/BUCKET/o/... (its uploads go to
// /upload/storage/v1/..., which fake-gcs-server serves). With /storage/v1
// in the variable instead, its uploads break
// (HOST:PORT/storage/v1/upload/storage/v1/...), and so would the Go and
// Python clients. Bucket names have at least three characters, so no
// XML API path (/BUCKET/OBJECT) of Google's starts with /b/; the fake
// takes a bucket named b, and while one exists its XML paths win.
func (s *Suite) jsonAPIPrefix(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.URL.Path == "/b" || strings.HasPrefix(r.URL.Path, "/b/")) && !s.hasBucket("b") {
			r = r.Clone(r.Context())
			r.URL.Path = "/storage/v1" + r.URL.Path
			if r.URL.RawPath != "" {
				r.URL.RawPath = "/storage/v1" + r.URL.RawPath
			}
		}
		next.ServeHTTP(w, r)
	})
}

func recoverHTTP(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				logger.Error("handler panicked", "event", "emulator.panic", "service", faults.Storage, "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(p))
				http.Error(w, fmt.Sprintf("storage emulator panicked: %v", p), http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (s *Suite) serveGRPC(g *grpc.Server, l net.Listener) {
	go func() { s.serving <- g.Serve(l) }()
}

func (s *Suite) serveHTTP(h *http.Server, l net.Listener) {
	s.https = append(s.https, h)
	go func() {
		err := h.Serve(l)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.serving <- err
	}()
}

func recoverUnary(logger *slog.Logger, service string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				logger.Error("handler panicked", "event", "emulator.panic", "service", service, "method", info.FullMethod, "panic", fmt.Sprint(p))
				err = status.Errorf(codes.Internal, "%s panicked: %v", info.FullMethod, p)
			}
		}()
		return handler(ctx, req)
	}
}

func recoverStream(logger *slog.Logger, service string) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if p := recover(); p != nil {
				logger.Error("handler panicked", "event", "emulator.panic", "service", service, "method", info.FullMethod, "panic", fmt.Sprint(p))
				err = status.Errorf(codes.Internal, "%s panicked: %v", info.FullMethod, p)
			}
		}()
		return handler(srv, ss)
	}
}

// Env returns the environment a client needs to use the suite, as
// KEY=VALUE lines in a stable order.
func (s *Suite) Env() []string {
	return []string{
		EnvProject + "=" + s.Project,
		EnvPubSub + "=" + s.PubSubAddr,
		EnvStorage + "=http://" + s.StorageAddr,
		EnvFirestore + "=" + s.FirestoreAddr,
		EnvCloudRun + "=" + s.CloudRunAddr,
		EnvIAMCredentials + "=" + s.CloudRunAddr,
		EnvAdmin + "=" + s.AdminAddr,
	}
}

// ExportLines returns Env as shell export lines, ready for eval.
func (s *Suite) ExportLines() string {
	var b strings.Builder
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "export %s=%s\n", k, v)
	}
	return b.String()
}

// SetEnv sets the suite's environment in this process, so that clients
// created afterwards in it use the suite.
func (s *Suite) SetEnv() error {
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		if err := os.Setenv(k, v); err != nil {
			return fmt.Errorf("set %s: %w", k, err)
		}
	}
	return nil
}

// Close stops every service and ends every process the Cloud Run fake
// started. It waits for them until ctx ends.
func (s *Suite) Close(ctx context.Context) error {
	var errs []error
	// Processes first: they are clients of the other services.
	if s.CloudRun != nil {
		if err := s.CloudRun.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close cloud run: %w", err))
		}
	}
	for _, h := range s.https {
		if err := h.Shutdown(ctx); err != nil {
			h.Close()
		}
	}
	// Open Listen and StreamingPull streams end here, which lets
	// GracefulStop finish.
	if s.Firestore != nil {
		s.Firestore.Close()
	}
	if s.PubSub != nil {
		s.PubSub.Close()
	}
	for _, g := range s.grpcs {
		stopGRPC(ctx, g)
	}
	if s.pubsubProxy != nil {
		s.pubsubProxy.Close()
	}
	if s.Firestore != nil {
		// What was committed until the server stopped.
		if err := s.Firestore.SaveSnapshot(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.Storage != nil {
		s.Storage.Stop()
	}
	if s.storageTemp != "" {
		if err := os.RemoveAll(s.storageTemp); err != nil {
			errs = append(errs, fmt.Errorf("remove the local Cloud Storage's objects: %w", err))
		}
	}
	for range len(s.grpcs) + len(s.https) {
		if err := <-s.serving; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errs = append(errs, err)
		}
	}
	s.grpcs, s.https = nil, nil
	return errors.Join(errs...)
}

// stopGRPC drains a server gracefully, and forcefully once ctx ends or a
// stream (a subscriber's pull) would keep it open.
func stopGRPC(ctx context.Context, g *grpc.Server) {
	done := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(done)
	}()
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-ctx.Done():
	case <-t.C:
	}
	g.Stop()
	<-done
}
