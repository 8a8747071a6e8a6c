package terraform

import (
	"testing"

	"github.com/sandrun/sandrun/internal/jobrunner"
)

// TestExecutorContainerNamed checks that the executor job's one container
// has the name RunJob's overrides give (jobrunner.ContainerName): Cloud Run
// refuses overrides that name a container the job does not have.
func TestExecutorContainerNamed(t *testing.T) {
	c := parse(t)
	job := c.one("resource", "google_cloud_run_v2_job", "executor")
	if got := c.literal(job, "template.template.containers.name").AsString(); got != jobrunner.ContainerName {
		t.Errorf("the executor job's container is named %q; RunJob's overrides name %q", got, jobrunner.ContainerName)
	}
}

// TestTaskTimeoutRange checks that the host's task timeout may be set up
// to Cloud Run's longest, 168 hours, and no longer.
func TestTaskTimeoutRange(t *testing.T) {
	c := parse(t)
	v := c.one("variable", "executor_task_timeout_hours")
	if got := c.text(v, "validation.condition"); got != "var.executor_task_timeout_hours >= 1 && var.executor_task_timeout_hours <= 168" {
		t.Errorf("executor_task_timeout_hours is validated by %s, want 1 to 168 hours", got)
	}
	job := c.one("resource", "google_cloud_run_v2_job", "executor")
	if got := c.text(job, "template.template.timeout"); got != `"${var.executor_task_timeout_hours * 3600}s"` {
		t.Errorf("the executor job's timeout is %s", got)
	}
}

// TestFirestoreDeleteProtection checks that Firestore refuses to delete the
// sessions database while protection is on.
func TestFirestoreDeleteProtection(t *testing.T) {
	c := parse(t)
	db := c.one("resource", "google_firestore_database", "sessions")
	if got := c.literal(db, "delete_protection_state").AsString(); got != "DELETE_PROTECTION_ENABLED" {
		t.Errorf("delete_protection_state = %q, want DELETE_PROTECTION_ENABLED", got)
	}
}

// TestCostDefaults pins the defaults docs/cost.md prices: hosts of 1 vCPU
// and 2 GiB, no warm pool, one dispatcher. Changing one changes the monthly
// bill; change the model in docs/cost.md with it.
func TestCostDefaults(t *testing.T) {
	c := parse(t)
	want := map[string]string{
		"executor_cpu":         `"1"`,
		"executor_memory":      `"2Gi"`,
		"pool_min":             "0",
		"pool_target":          "0",
		"dispatcher_instances": "1",
		"dispatcher_cpu":       `"1"`,
		"dispatcher_memory":    `"512Mi"`,
	}
	for name, def := range want {
		if got := c.text(c.one("variable", name), "default"); got != def {
			t.Errorf("variable %s defaults to %s, want %s (docs/cost.md)", name, got, def)
		}
	}
}
