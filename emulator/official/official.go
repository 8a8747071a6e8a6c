// Package official finds or starts Google's own emulators of Firestore and
// Pub/Sub (`gcloud emulators firestore start`, `gcloud beta emulators
// pubsub start`, Java programs of the google-cloud-cli packages) for the
// fidelity tests, which run the same scenarios against sandrun's local
// cloud and against Google's emulators.
//
// An emulator is taken from the environment when its variable is set
// (EnvFirestore, EnvPubSub: host:port, as .ci/run exports them), or else
// started once per test binary with gcloud on a free loopback port; Stop
// ends what this process started (call it from TestMain). Without either,
// the test is skipped with a message that says so. The emulators serve any
// project, so tests share one and keep apart by using a project of their
// own (Project).
//
// It never starts anything outside tests' use and never talks to Google.
package official

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The environment variables that name running official emulators
// (host:port). "off" skips the fidelity tests of that service.
const (
	EnvFirestore = "SANDRUN_FIDELITY_FIRESTORE"
	EnvPubSub    = "SANDRUN_FIDELITY_PUBSUB"
)

// startTimeout bounds a Java emulator's start-up (a few seconds on an idle
// machine, much more on a loaded one).
const startTimeout = 90 * time.Second

// Firestore returns host:port of Google's Firestore emulator, or skips t.
func Firestore(t testing.TB) string {
	t.Helper()
	return firestore.addr(t)
}

// PubSub returns host:port of Google's Pub/Sub emulator, or skips t.
func PubSub(t testing.TB) string {
	t.Helper()
	return pubsub.addr(t)
}

// Stop ends the emulators this process started, and waits for them. Safe
// to call when none was started.
func Stop() {
	firestore.stop()
	pubsub.stop()
}

var (
	firestore = &emulator{name: "Firestore", env: EnvFirestore, args: []string{"emulators", "firestore", "start"}}
	pubsub    = &emulator{name: "Pub/Sub", env: EnvPubSub, args: []string{"beta", "emulators", "pubsub", "start"}}
)

// emulator is one official emulator, found or started on first use.
type emulator struct {
	name string
	env  string
	args []string // gcloud's, without --host-port

	once   sync.Once
	host   string     // host:port, or empty with skip set
	skip   string     // why the tests of this emulator are skipped
	cmd    *exec.Cmd  // what this process started, or nil
	exited chan error // cmd.Wait's result
	log    *os.File
}

func (e *emulator) addr(t testing.TB) string {
	t.Helper()
	e.once.Do(e.find)
	if e.host == "" {
		t.Skipf("official %s emulator not available: %s", e.name, e.skip)
	}
	return e.host
}

// find takes the emulator from the environment or starts one.
func (e *emulator) find() {
	switch v := os.Getenv(e.env); v {
	case "off":
		e.skip = e.env + "=off"
		return
	case "":
	default:
		e.host = v
		return
	}
	gcloud, err := exec.LookPath("gcloud")
	if err != nil {
		e.skip = "gcloud is not on PATH and " + e.env + " is not set"
		return
	}
	if err := e.start(gcloud); err != nil {
		e.skip = err.Error()
	}
}

func (e *emulator) start(gcloud string) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("find a free port: %w", err)
	}
	host := l.Addr().String()
	l.Close()
	// The emulator's output goes to a file, for a test that fails to read.
	log, err := os.CreateTemp("", "sandrun-official-*.log")
	if err != nil {
		return err
	}
	cmd := exec.Command(gcloud, append(e.args, "--host-port="+host)...)
	cmd.Stdout, cmd.Stderr = log, log
	// gcloud starts Java as a child: a process group of its own lets Stop
	// end both.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s emulator: %w", e.name, err)
	}
	e.cmd, e.log = cmd, log
	e.exited = make(chan error, 1)
	go func() { e.exited <- cmd.Wait() }()
	deadline := time.Now().Add(startTimeout)
	for {
		// A connection accepted is the only sign of readiness common to
		// both emulators.
		if c, err := net.DialTimeout("tcp", host, time.Second); err == nil {
			c.Close()
			e.host = host
			return nil
		}
		select {
		case err := <-e.exited:
			e.exited <- err
			e.stop()
			return fmt.Errorf("%s emulator exited before it served (%v); its output is in %s", e.name, err, log.Name())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			e.stop()
			return fmt.Errorf("%s emulator did not serve on %s within %s; its output is in %s", e.name, host, startTimeout, log.Name())
		}
	}
}

// stop ends the emulator's process group: SIGTERM, then SIGKILL if it has
// not exited within a few seconds.
func (e *emulator) stop() {
	if e.cmd == nil {
		return
	}
	pgid := e.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-e.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-e.exited
	}
	// Java may outlive gcloud for a moment; the group kill reaches it.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	e.cmd = nil
	e.log.Close()
}

var projectChars = regexp.MustCompile(`[^a-z0-9]+`)

// Project returns a project ID of t's own (from its name and a random
// suffix, at most 30 characters), which keeps tests that share an emulator
// apart.
func Project(t testing.TB) string {
	name := strings.Trim(projectChars.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	name = strings.TrimPrefix(name, "test-")
	var b [3]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	if max := 30 - len("t--") - len(suffix); len(name) > max {
		name = strings.TrimRight(name[:max], "-")
	}
	return "t-" + name + "-" + suffix
}
