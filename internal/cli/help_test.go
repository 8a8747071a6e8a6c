package cli

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sandrun/sandrun/internal/system"
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

// TestHelpListsEverySetting: the --help of each program that takes
// settings lists each one with its environment variables and its default
// in that program, as the settings table declares them.
func TestHelpListsEverySetting(t *testing.T) {
	programs := map[string]system.Program{
		"dispatcher": system.Dispatcher, "reaper": system.Reaper, "executor": system.Executor,
		"dev": system.Dev, "status": system.Inspect | system.Status, "exec": system.Client, "cp": system.Client,
	}
	table := system.Table()
	for name, p := range programs {
		t.Run(name, func(t *testing.T) {
			var stderr bytes.Buffer
			env := &Env{Stdout: &stderr, Stderr: &stderr, Getenv: func(string) string { return "" }}
			if code := Main(context.Background(), env, []string{name, "--help"}); code != 0 {
				t.Fatalf("sandrun %s --help: exit %d: %s", name, code, stderr.String())
			}
			flags := helpByFlag(stderr.String())
			n := 0
			for _, s := range table {
				if s.Programs&p == 0 {
					continue
				}
				n++
				help, ok := flags[s.Flag]
				if !ok {
					t.Errorf("sandrun %s --help lists no -%s", name, s.Flag)
					continue
				}
				if want := "[" + strings.Join(append([]string{s.Env}, s.Fallback...), ", else ") + "]"; !strings.Contains(help, want) {
					t.Errorf("sandrun %s --help: -%s does not name %s: %q", name, s.Flag, want, help)
				}
				if want := defaultText(s, p); want != "" && !strings.Contains(help, want) {
					t.Errorf("sandrun %s --help: -%s does not say %s: %q", name, s.Flag, want, help)
				}
			}
			if n == 0 {
				t.Errorf("the table gives sandrun %s no settings", name)
			}
		})
	}
}

// helpByFlag splits a flag set's usage into each flag's lines.
func helpByFlag(usage string) map[string]string {
	out := map[string]string{}
	var flag string
	for _, line := range strings.Split(usage, "\n") {
		if f, ok := strings.CutPrefix(line, "  -"); ok {
			flag, _, _ = strings.Cut(f, " ")
			out[flag] = ""
			continue
		}
		if flag != "" {
			out[flag] += line
		}
	}
	return out
}

// defaultText is how the flag package prints s's default in program p,
// or "" for a zero value, which it does not print.
func defaultText(s system.Setting, p system.Program) string {
	switch v := s.DefaultIn(p).(type) {
	case string:
		if v != "" {
			return fmt.Sprintf("(default %q)", v)
		}
	case int, float64, time.Duration:
		if fmt.Sprint(v) != "0" && fmt.Sprint(v) != "0s" {
			return fmt.Sprintf("(default %v)", v)
		}
	case bool:
		if v {
			return "(default true)"
		}
	}
	return ""
}
