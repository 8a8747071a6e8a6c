// Package cloudrun is the local fake of the Cloud Run Admin API v2 for jobs:
// it serves google.cloud.run.v2.Jobs, Executions and Tasks and
// google.longrunning.Operations over gRPC, so that the official client
// (cloud.google.com/go/run/apiv2: JobsClient, ExecutionsClient, TasksClient)
// works against it unchanged, and it runs each task of an execution as a
// local process. No Google emulator covers Cloud Run; this one covers what
// sandrun relies on, and its tests prove each behaviour through the official
// client.
//
// # What it owns
//
// Jobs, executions, tasks and operations, in memory, behind one mutex; one
// runner goroutine per execution (cold start, then the tasks with at most
// parallelism running at once, retries, then completion of the operations);
// and the task processes. A container image stands for a local program
// (Config.Images). Each task attempt runs in a fresh directory
// WorkDir/PROJECT/LOCATION/EXECUTION/taskI-attemptN: the process's working
// directory is work/ there, and its output goes to stdout.log and stderr.log
// next to it (and to Config.Output, line by line). The environment is
// Config.Env, then the container's env, then the run's overrides (a later one
// wins by name), then CLOUD_RUN_JOB, CLOUD_RUN_EXECUTION,
// CLOUD_RUN_TASK_INDEX, CLOUD_RUN_TASK_COUNT and CLOUD_RUN_TASK_ATTEMPT.
//
// Every task process leads a session and process group of its own. Stopping a
// task (cancel, timeout, shutdown) sends SIGTERM to all of them and SIGKILL
// after Config.StopGrace; when the main process exits, whatever it left
// behind is killed, as Cloud Run tears down a container. On Linux the
// processes also die with the emulator (parent-death signal). KillExecution
// kills a running execution's processes at once, as a crashed host would;
// MigrateExecution puts them through a maintenance event (a SIGTSTP to the
// main process, a pause of every process of the task, a SIGCONT), as Cloud
// Run does when it moves a task to another machine.
//
// # Cloud Run behaviour it follows
//
//   - Names: projects/P/locations/L/jobs/J, executions J-xxxxx (five random
//     lowercase letters and digits), tasks J-xxxxx-taskI, operations
//     projects/P/locations/L/operations/UUID. Job IDs are DNS labels of at
//     most 63 characters.
//   - Defaults: task count 1, max retries 3, task timeout 600 s (per
//     attempt), parallelism 0 = all tasks at once.
//   - CreateJob, UpdateJob and DeleteExecution return operations that are
//     already done. RunJob's and CancelExecution's operations carry the live
//     execution as metadata and are done when it finishes, with the finished
//     execution as response, also when it failed or was cancelled: callers
//     read its counts and its Completed condition.
//   - DeleteJob cancels the job's running executions and deletes them with
//     it; its operation is done once they have stopped. DeleteExecution
//     refuses a running execution (FailedPrecondition); cancel it first.
//     CancelExecution refuses a finished one.
//   - Conditions: an execution has Completed, ResourcesAvailable and Started;
//     a task has Completed and Started. Failures read "Task J-xxxxx-task0
//     failed with message: The container exited with an error (exit code 3)."
//     or "... The configured timeout was reached."; a cancelled execution's
//     Completed condition has the reason CANCELLED.
//
// # What it does not emulate
//
// Container images (an image is only a key of Config.Images), networking and
// ports, CPU and memory limits, volumes, secrets (an env var with a
// value_source is refused), IAM (the IAM methods answer Unimplemented),
// service accounts, VPC access, more than one container per task, the
// start/run execution tokens of CreateJob, operation filters, and persistence
// across restarts. Execution environment, service account and the like are
// stored and echoed, never acted on. Task processes run as the emulator's
// user. Windows is not supported; outside Linux a process that leaves its
// task's process group is not reached when the task stops.
package cloudrun
