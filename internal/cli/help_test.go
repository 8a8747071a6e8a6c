package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestHelpNeedsNoSandrun: every command's --help prints its usage and
// exits 0, even with no `sandrun dev` running and no deployment named.
func TestHelpNeedsNoSandrun(t *testing.T) {
	home := t.TempDir()
	for name := range commands() {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			env := &Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string {
				if k == "SANDRUN_HOME" {
					return home
				}
				return ""
			}}
			if code := Main(context.Background(), env, []string{name, "--help"}); code != 0 {
				t.Fatalf("sandrun %s --help: exit %d: %s", name, code, stderr.String())
			}
			if !strings.Contains(stderr.String()+stdout.String(), "Usage:") {
				t.Errorf("sandrun %s --help printed no usage: %q", name, stderr.String()+stdout.String())
			}
		})
	}
}
