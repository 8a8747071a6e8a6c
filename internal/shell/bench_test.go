//go:build linux

package shell

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/sandrun/sandrun/internal/procfs"
)

// BenchmarkRun measures the fixed cost of one command: fork and exec of
// bash, the wrapper, the EXIT trap, and the state file.
func BenchmarkRun(b *testing.B) {
	root := b.TempDir()
	st := State{Cwd: root, Env: map[string]string{"PATH": "/usr/bin:/bin", "HOME": root}}
	for b.Loop() {
		res, err := Run(context.Background(), root, st, Command{Script: `true`})
		if err != nil || !res.StateSaved {
			b.Fatalf("res %+v err %v", res, err)
		}
	}
}

// BenchmarkRunCPU reports the CPU one trivial command costs, in this
// process (self) and in the processes it starts (children, counted once
// reaped), next to the floor measured in the same loop: `bash -c true`
// started directly with the same environment, in a process group of its
// own, writing to the same files. The ratios are what the package adds
// over the bash it cannot do without. Output files are given, as the host
// gives them. CPU time is what was used, so other load on the machine
// changes it less than wall time, but it is not immune (caches, frequency).
func BenchmarkRunCPU(b *testing.B) {
	root := b.TempDir()
	st := State{Cwd: root, Env: map[string]string{"PATH": "/usr/bin:/bin", "HOME": root, "LANG": "C.UTF-8"}}
	stdout, err := os.CreateTemp(root, "stdout")
	if err != nil {
		b.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.CreateTemp(root, "stderr")
	if err != nil {
		b.Fatal(err)
	}
	defer stderr.Close()
	bash, err := findBash()
	if err != nil {
		b.Fatal(err)
	}
	floorEnv := commandEnv(st.Env, nil)

	var run, floor cpuCost
	n := 0
	for b.Loop() {
		run.measure(func() {
			res, err := Run(context.Background(), root, st, Command{Script: `true`, Stdout: stdout, Stderr: stderr})
			if err != nil || !res.StateSaved || res.ExitCode != 0 {
				b.Fatalf("res %+v err %v", res, err)
			}
		})
		floor.measure(func() {
			c := &exec.Cmd{
				Path: bash, Args: []string{"bash", "-c", "true"},
				Env: floorEnv, Dir: root, Stdout: stdout, Stderr: stderr,
				SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
			}
			if err := c.Run(); err != nil {
				b.Fatal(err)
			}
		})
		n++
	}
	perOp := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
	b.ReportMetric(perOp(run.self), "self-µs/op")
	b.ReportMetric(perOp(run.children), "child-µs/op")
	b.ReportMetric(perOp(floor.self), "floor-self-µs/op")
	b.ReportMetric(perOp(floor.children), "floor-child-µs/op")
	b.ReportMetric(float64(run.children)/float64(floor.children), "child/floor")
	b.ReportMetric(float64(run.self+run.children)/float64(floor.self+floor.children), "total/floor")
}

// cpuCost sums the CPU of the calls it measures, this process's and that
// of the children they reaped apart.
type cpuCost struct{ self, children time.Duration }

func (c *cpuCost) measure(f func()) {
	self0, all0 := procfs.OwnCPU(false), procfs.OwnCPU(true)
	f()
	self1, all1 := procfs.OwnCPU(false), procfs.OwnCPU(true)
	c.self += self1 - self0
	c.children += (all1 - self1) - (all0 - self0)
}
