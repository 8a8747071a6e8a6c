package system

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandrun/sandrun/internal/config"
)

// allPrograms are the programs that take settings.
var allPrograms = []Program{Dispatcher, Reaper, Executor, Dev, Status, Client, Inspect}

// TestTableIsWellFormed: each program's flags and environment variables
// are distinct, every default has its setting's type, and every setting
// is taken by some program.
func TestTableIsWellFormed(t *testing.T) {
	table := Table()
	for _, s := range table {
		if s.Programs == 0 {
			t.Errorf("no program takes -%s", s.Flag)
		}
		if s.Flag == "" || s.Env == "" || s.Help == "" {
			t.Errorf("setting %+v lacks a flag, an environment variable or help", s)
		}
	}
	for _, p := range allPrograms {
		// Define panics on a flag defined twice or a default of the wrong
		// type.
		var s Settings
		s.Define(config.New("test", "", &bytes.Buffer{}), table, p)
		DefaultSettings(table, p)
		envs := map[string]string{}
		for _, st := range table {
			if st.Programs&p == 0 {
				continue
			}
			if other, ok := envs[st.Env]; ok {
				t.Errorf("program %d: -%s and -%s both read %s", p, other, st.Flag, st.Env)
			}
			envs[st.Env] = st.Flag
		}
	}
}

// testSetting is a setting the table does not have, added by the test to
// see where it goes: a deployment setting of the dispatcher and the
// executor, kept (for want of a field of its own) where the bucket is.
func testSetting() Setting {
	return setting("test-bucket", "SANDRUN_TEST_BUCKET", "test-default", Dispatcher|Executor, Deployment, "a setting of this test",
		func(s *Settings) *string { return &s.Bucket })
}

// TestASettingAddedToTheTableGoesEverywhere: a setting added to the table,
// and nothing else, is a flag of the programs that take it (in --help,
// with its environment variable and default), read from its environment
// variable, in the environment of the host job when the executor takes it,
// and in the environment `sandrun dev` writes when it is a deployment
// setting.
func TestASettingAddedToTheTableGoesEverywhere(t *testing.T) {
	table := append(Table(), testSetting())

	var help bytes.Buffer
	fs := config.New("dispatcher", "dispatcher", &help)
	s := DefaultSettings(table, Dispatcher)
	s.Define(fs, table, Dispatcher)
	fs.Usage()
	for _, want := range []string{"-test-bucket", "[SANDRUN_TEST_BUCKET]", `(default "test-default")`} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("--help does not show %s:\n%s", want, help.String())
		}
	}
	getenv := func(k string) string { return map[string]string{"SANDRUN_TEST_BUCKET": "from-env"}[k] }
	if err := fs.Parse(getenv, nil); err != nil {
		t.Fatal(err)
	}
	if s.Bucket != "from-env" {
		t.Errorf("SANDRUN_TEST_BUCKET=from-env gave %q", s.Bucket)
	}

	if got := JobEnv(table, s)["SANDRUN_TEST_BUCKET"]; got != "from-env" {
		t.Errorf("the host job's environment has SANDRUN_TEST_BUCKET=%q, want from-env", got)
	}
	if env := DeploymentEnv(table, s); !slices.Contains(env, "SANDRUN_TEST_BUCKET=from-env") {
		t.Errorf("dev.env's environment lacks SANDRUN_TEST_BUCKET=from-env: %q", env)
	}
}

// TestJobEnvCarriesWhatHostsNeed: the host job gives every host each
// deployment setting the executor takes, the executor's own settings only
// where they differ from the default (so that the local cloud's own
// environment for tasks can still set them), and nothing a launch sets.
func TestJobEnvCarriesWhatHostsNeed(t *testing.T) {
	table := Table()
	s := DefaultSettings(table, Executor)
	s.Executor.IdleTimeout = 3 * time.Second
	s.Executor.SessionID = "s1"
	env := JobEnv(table, s)
	for _, st := range table {
		if st.Programs&Executor == 0 {
			continue
		}
		v, ok := env[st.Env]
		switch {
		case st.Scope == Launch && ok:
			t.Errorf("the job sets %s=%s, which each launch sets", st.Env, v)
		case st.Scope == Deployment && !ok && !st.isZero(st.format(s)):
			t.Errorf("the job lacks the deployment setting %s", st.Env)
		}
	}
	if env["SANDRUN_IDLE_TIMEOUT"] != "3s" {
		t.Errorf("SANDRUN_IDLE_TIMEOUT=%q, want 3s", env["SANDRUN_IDLE_TIMEOUT"])
	}
	if v, ok := env["SANDRUN_LEASE_TTL"]; ok {
		t.Errorf("the job sets the lease at its default (%s): a task's own environment could not change it", v)
	}
}

// TestLocalJobComesFromTheTable: the local system's host job carries the
// settings of its configuration through JobEnv, so that a setting added to
// the table reaches the local hosts without another edit.
func TestLocalJobComesFromTheTable(t *testing.T) {
	sys := DefaultSettings(Table(), Dev).Config
	sys.Bucket = "b1"
	spec := localJob(sys, LocalConfig{Executor: "/bin/executor", ExecutorArgs: []string{"executor"}, StateDir: "/state", LeaseTTL: 4 * time.Second, LogLevel: "debug"})
	want := DefaultSettings(Table(), Executor)
	want.Config = sys
	want.Executor.WorkspacesDir, want.Executor.LeaseTTL, want.LogLevel = "/state/workspaces", 4*time.Second, "debug"
	got, wantEnv := spec.Env, JobEnv(Table(), want)
	if !maps.Equal(got, wantEnv) {
		t.Errorf("local job environment:\n got %v\nwant %v", got, wantEnv)
	}
	for _, kv := range []string{"SANDRUN_BUCKET=b1", "SANDRUN_WORKSPACES_DIR=/state/workspaces", "SANDRUN_LEASE_TTL=4s", "SANDRUN_LOG_LEVEL=debug"} {
		k, v, _ := strings.Cut(kv, "=")
		if got[k] != v {
			t.Errorf("local job: %s=%q, want %q", k, got[k], v)
		}
	}
}
