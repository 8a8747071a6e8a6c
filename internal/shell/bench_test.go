//go:build linux

package shell

import (
	"context"
	"testing"
)

// BenchmarkRun measures the fixed cost of one command: fork and exec of
// bash, the wrapper, the EXIT trap (one exec of env), and the state file.
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
