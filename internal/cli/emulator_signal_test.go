package cli

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"github.com/sandrun/sandrun/internal/procfs"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// buildSandrun builds the sandrun program into a directory of the test.
func buildSandrun(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sandrun")
	build := exec.Command("go", "build", "-o", bin, "github.com/sandrun/sandrun/cmd/sandrun")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build sandrun: %v\n%s", err, out)
	}
	return bin
}

// TestEmulatorStopsOnSignal runs the real `sandrun emulator`, starts an
// execution that sleeps through its Cloud Run Admin API, signals the
// program, and checks that it exits and that the sleep ended with it.
func TestEmulatorStopsOnSignal(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("looks for processes in /proc")
	}
	bin := buildSandrun(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(bin, "emulator", "--base-port", "0")
			cmd.Env = append(os.Environ(), "SANDRUN_HOME="+dir)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			stderr := &syncBuffer{}
			cmd.Stderr = stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			var waitErr error
			go func() {
				waitErr = cmd.Wait()
				close(exited)
			}()
			t.Cleanup(func() {
				select {
				case <-exited:
				default:
					cmd.Process.Kill()
					<-exited
				}
			})

			exports := readExports(t, stdout, stderr)
			go io.Copy(io.Discard, stdout)

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			jobs, err := run.NewJobsClient(ctx,
				option.WithEndpoint(exports["CLOUDRUN_EMULATOR_HOST"]), option.WithoutAuthentication(),
				option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { jobs.Close() })
			parent := "projects/" + exports["GOOGLE_CLOUD_PROJECT"] + "/locations/us-central1"
			pidFile := filepath.Join(dir, "pid")
			cop, err := jobs.CreateJob(ctx, &runpb.CreateJobRequest{Parent: parent, JobId: "sleeper", Job: &runpb.Job{
				Template: &runpb.ExecutionTemplate{Template: &runpb.TaskTemplate{
					Containers: []*runpb.Container{{
						Image:   "busybox",
						Command: []string{"sh", "-c"},
						Args:    []string{fmt.Sprintf(`echo $$ > %[1]s.tmp && mv %[1]s.tmp %[1]s && exec sleep 600`, pidFile)},
					}},
					Retries: &runpb.TaskTemplate_MaxRetries{MaxRetries: 0},
				}},
			}})
			if err != nil {
				t.Fatalf("create job: %v", err)
			}
			if _, err := cop.Wait(ctx); err != nil {
				t.Fatalf("create job: %v", err)
			}
			if _, err := jobs.RunJob(ctx, &runpb.RunJobRequest{Name: parent + "/jobs/sleeper"}); err != nil {
				t.Fatalf("run job: %v", err)
			}
			pid := waitForSleep(t, pidFile)

			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-exited:
				if waitErr != nil {
					t.Errorf("sandrun emulator exited with %v after %v; stderr:\n%s", waitErr, sig, stderr.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("sandrun emulator still runs 30 s after %v; stderr:\n%s", sig, stderr.String())
			}
			// The emulator waits for its task processes before it exits.
			if !procfs.Gone(pid) {
				t.Errorf("the execution's sleep (pid %d) outlived sandrun emulator", pid)
			}
			if !strings.Contains(stderr.String(), "stopping local cloud") {
				t.Errorf("stderr does not say the local cloud stopped:\n%s", stderr.String())
			}
		})
	}
}

// readExports reads the export lines `sandrun emulator` prints when it is
// ready.
func readExports(t *testing.T, stdout io.Reader, stderr *syncBuffer) map[string]string {
	t.Helper()
	want := []string{"PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "CLOUDRUN_EMULATOR_HOST", "IAMCREDENTIALS_EMULATOR_HOST", "SANDRUN_EMULATOR_ADMIN", "GOOGLE_CLOUD_PROJECT"}
	exports := map[string]string{}
	sc := bufio.NewScanner(stdout)
	for len(exports) < len(want) && sc.Scan() {
		kv, ok := strings.CutPrefix(sc.Text(), "export ")
		if !ok {
			t.Fatalf("unexpected line on stdout: %q", sc.Text())
		}
		k, v, _ := strings.Cut(kv, "=")
		exports[k] = v
	}
	for _, k := range want {
		if exports[k] == "" {
			t.Fatalf("%s not printed; stdout had %v, stderr:\n%s", k, exports, stderr.String())
		}
	}
	return exports
}

// waitForSleep waits for the task to write its pid and to become sleep 600.
// Nothing announces either, so it looks every few milliseconds.
func waitForSleep(t *testing.T, pidFile string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(pidFile); err == nil {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatalf("pid file holds %q", b)
			}
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if bytes.Equal(cmdline, []byte("sleep\x00600\x00")) {
				return pid
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no sleep 600 behind %s after 30 s", pidFile)
	return 0
}

func TestAdminClientHint(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := runCLI(t, map[string]string{"SANDRUN_HOME": dir}, "emulator", "fault", "list")
	if code != 1 {
		t.Fatalf("fault list without an admin address exited %d", code)
	}
	// `sandrun emulator` never exits, so eval "$(sandrun emulator)" would hang.
	if strings.Contains(stderr, "$(sandrun emulator)") {
		t.Errorf("the hint tells the user to eval a command that never exits: %s", stderr)
	}
	for _, want := range []string{"in another terminal", filepath.Join(dir, "dev.env")} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the hint %q lacks %q", stderr, want)
		}
	}
}
