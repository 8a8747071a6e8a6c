package emulatortest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// GooglePubSub starts Google's official Pub/Sub emulator (`gcloud beta
// emulators pubsub start`, offline, no login) on a free loopback port for the
// duration of the test and returns its host:port, for PUBSUB_EMULATOR_HOST.
// The test is skipped when gcloud is not on PATH. The emulator is a Java
// process that gcloud starts in the same process group; the whole group is
// ended when the test ends.
func GooglePubSub(t testing.TB, project string) string {
	t.Helper()
	gcloud, err := exec.LookPath("gcloud")
	if err != nil {
		t.Skip("Google's Pub/Sub emulator is not on this machine (no gcloud on PATH); install google-cloud-cli-pubsub-emulator to run this test")
	}
	port, err := freePort()
	if err != nil {
		t.Fatalf("find a port for Google's Pub/Sub emulator: %v", err)
	}
	addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	cmd := exec.Command(gcloud, "beta", "emulators", "pubsub", "start", "--host-port="+addr, "--project="+project, "--quiet")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("start Google's Pub/Sub emulator: %v", err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Google's Pub/Sub emulator: %v", err)
	}
	t.Cleanup(func() {
		// gcloud leaves the Java server running when only gcloud ends.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	// The emulator says when it listens; the last lines are kept for the
	// failure message.
	started := make(chan error, 1)
	go func() {
		var tail []string
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if tail = append(tail, line); len(tail) > 20 {
				tail = tail[1:]
			}
			if strings.Contains(line, "Server started") {
				started <- nil
				io.Copy(io.Discard, out)
				return
			}
		}
		started <- fmt.Errorf("emulator ended before it listened:\n%s", strings.Join(tail, "\n"))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start Google's Pub/Sub emulator: %v", err)
		}
	case <-ctx.Done():
		t.Fatalf("start Google's Pub/Sub emulator: not listening after 90s")
	}
	return addr
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
