package system

import (
	"fmt"
	"sort"
	"time"

	"github.com/sandrun/sandrun/internal/config"
	"github.com/sandrun/sandrun/internal/dispatcher"
	"github.com/sandrun/sandrun/internal/host"
	"github.com/sandrun/sandrun/internal/hostcred"
	"github.com/sandrun/sandrun/internal/jobrunner"
	"github.com/sandrun/sandrun/internal/launch"
	"github.com/sandrun/sandrun/internal/outbox"
	"github.com/sandrun/sandrun/internal/pool"
	"github.com/sandrun/sandrun/internal/reaper"
	"github.com/sandrun/sandrun/internal/session"
)

// Settings holds every setting of sandrun's programs. Each program takes
// the part Table says it takes; the rest keeps its default.
type Settings struct {
	Config
	// Executor is the executor's own.
	Executor HostConfig
	// Dispatcher and Reaper tune those programs; the dispatcher takes
	// the reaper's too, for the loop it runs in its own process.
	Dispatcher dispatcher.Config
	Reaper     reaper.Config
	// WithReaper makes the dispatcher run the reaper's loop.
	WithReaper bool
	LogLevel   string
}

// Program is a set of the programs that take a setting.
type Program uint8

// The programs that take settings. Dev is `sandrun dev`, Status
// `sandrun status`; Client the commands that talk to sandrun as a backend
// does (exec, session, cp, ls, cat, ps, logs, kill) and Inspect those that
// read its state (status, session list).
const (
	Dispatcher Program = 1 << iota
	Reaper
	Executor
	Dev
	Status
	Client
	Inspect
)

// Scope says who must agree on a setting, and so where the local system
// passes it on.
type Scope uint8

const (
	// Deployment settings are the same for every program of a deployment
	// (Terraform gives each the same value). `sandrun dev` writes them all
	// to dev.env, for other programs and clients, and the local host job
	// carries those the executor takes.
	Deployment Scope = iota
	// Own settings tune one program. The local host job carries the
	// executor's own settings that the local system sets to other than
	// their default.
	Own
	// Launch settings are set for each execution, by the launch or by
	// Cloud Run: no job carries them.
	Launch
)

// Setting is one setting: its flag, its environment variables, its
// default, what it does, which programs take it, and where in Settings
// it is kept.
type Setting struct {
	Flag string
	// Env sets the flag's default; when it is unset, the first of
	// Fallback that is set does.
	Env      string
	Fallback []string
	// Default is the value when nothing sets it: a string, int, bool or
	// time.Duration, the type of the setting; DevDefault, when not nil,
	// is `sandrun dev`'s.
	Default, DevDefault any
	Help                string
	Programs            Program
	Scope               Scope
	// field is where the setting is kept in a Settings: a *string, *int,
	// *bool or *time.Duration; get reads it, set writes it.
	field func(*Settings) any
	get   func(*Settings) any
	set   func(*Settings, any)
}

// value is the types a setting can have.
type value interface {
	string | int | float64 | bool | time.Duration
}

// setting makes a setting whose field has the type of its default.
func setting[T value](flag, env string, def T, programs Program, scope Scope, help string, field func(*Settings) *T) Setting {
	return Setting{Flag: flag, Env: env, Default: def, Help: help, Programs: programs, Scope: scope,
		field: func(s *Settings) any { return field(s) },
		get:   func(s *Settings) any { return *field(s) },
		set:   func(s *Settings, v any) { *field(s) = v.(T) }}
}

// devDefault sets s's default in `sandrun dev`.
func devDefault[T value](s Setting, def T) Setting {
	s.DevDefault = def
	return s
}

// The sets of programs that share settings.
const (
	// deployed are the programs of a deployment.
	deployed = Dispatcher | Reaper | Executor
	// launchers launch hosts and keep the warm pool.
	launchers = Dispatcher | Reaper | Dev
	// longRunning are the programs that log.
	longRunning = Dispatcher | Reaper | Executor | Dev
)

// Table is every setting of sandrun's programs, the one place each is
// declared: the programs' flags and `--help`, the local host job's
// environment and the environment `sandrun dev` writes all come from it.
func Table() []Setting {
	d := outbox.DefaultNames()
	return []Setting{
		// What a deployment's programs agree on.
		setting("project", "SANDRUN_PROJECT", DefaultProject, deployed|Client|Inspect, Deployment, "Google Cloud project of the deployment (for sandrun's own commands, when none is set: the running sandrun dev's)",
			func(s *Settings) *string { return &s.Project }).withFallback("GOOGLE_CLOUD_PROJECT"),
		setting("region", "SANDRUN_REGION", DefaultRegion, deployed, Deployment, "region of the Cloud Run job",
			func(s *Settings) *string { return &s.Region }),
		setting("job", "SANDRUN_JOB", DefaultJob, deployed, Deployment, "Cloud Run job whose executions host sessions",
			func(s *Settings) *string { return &s.Job }),
		setting("bucket", "SANDRUN_BUCKET", DefaultBucket, deployed, Deployment, "Cloud Storage bucket of the sessions' checkpoints and outputs",
			func(s *Settings) *string { return &s.Bucket }),
		setting("requests-topic", "SANDRUN_REQUESTS_TOPIC", d.Requests, deployed|Client, Deployment, "Pub/Sub topic of requests",
			func(s *Settings) *string { return &s.Names.Requests }),
		setting("completions-topic", "SANDRUN_COMPLETIONS_TOPIC", d.Completions, deployed|Client, Deployment, "Pub/Sub topic of completions",
			func(s *Settings) *string { return &s.Names.Completions }),
		setting("dead-letter-topic", "SANDRUN_DEAD_LETTER_TOPIC", d.DeadLetters, deployed, Deployment, "Pub/Sub topic of messages that are not requests",
			func(s *Settings) *string { return &s.Names.DeadLetters }),
		setting("subscription", "SANDRUN_SUBSCRIPTION", d.Dispatcher, deployed, Deployment, "the dispatcher's subscription to the requests topic",
			func(s *Settings) *string { return &s.Names.Dispatcher }),
		setting("session-ttl", "SANDRUN_SESSION_TTL", session.DefaultTTL, deployed, Deployment, "how long an idle session lives before it is destroyed",
			func(s *Settings) *time.Duration { return &s.TTL }),
		setting("host-service-account", "SANDRUN_HOST_SERVICE_ACCOUNT", "", deployed, Deployment, "service account whose access tokens the dispatcher and the reaper mint for the hosts they launch (empty: hosts use their job's own account)",
			func(s *Settings) *string { return &s.Host.Account }),
		setting("host-token-lifetime", "SANDRUN_HOST_TOKEN_LIFETIME", hostcred.DefaultLifetime, deployed, Deployment, "lifetime of a minted host token (IAM allows at most 1h unless an organization policy allows 12h)",
			func(s *Settings) *time.Duration { return &s.Host.Lifetime }),
		setting("host-token-renew-before", "SANDRUN_HOST_TOKEN_RENEW_BEFORE", hostcred.DefaultRenewBefore, deployed, Deployment, "how much of a host token's life is left when it is replaced",
			func(s *Settings) *time.Duration { return &s.Host.RenewBefore }),
		setting("host-token-check-interval", "SANDRUN_HOST_TOKEN_CHECK_INTERVAL", hostcred.DefaultCheckInterval, deployed, Deployment, "how often the dispatcher, the reaper and hosts check the host token",
			func(s *Settings) *time.Duration { return &s.Host.CheckInterval }),

		// The warm pool and launching, which the dispatcher and the
		// reaper, the two that launch hosts, agree on.
		setting("pool-min", "SANDRUN_POOL_MIN", 0, launchers|Status, Deployment, "idle pool hosts kept at all times (0 with --pool-target 0: no pool)",
			func(s *Settings) *int { return &s.Pool.Min }),
		setting("pool-target", "SANDRUN_POOL_TARGET", 0, launchers|Status, Deployment, "idle pool hosts kept while new sessions arrive; more as the arrival rate asks",
			func(s *Settings) *int { return &s.Pool.Target }),
		setting("pool-max", "SANDRUN_POOL_MAX", pool.DefaultMax, launchers|Status, Deployment, "most pool hosts, idle and starting",
			func(s *Settings) *int { return &s.Pool.Max }),
		setting("pool-idle-timeout", pool.EnvIdleTimeout, pool.DefaultIdleTimeout, launchers|Status, Deployment, "how long a pool host waits unclaimed before it exits, and how long after the last new session the pool shrinks to --pool-min",
			func(s *Settings) *time.Duration { return &s.Pool.IdleTimeout }),
		setting("pool-peak", "SANDRUN_POOL_PEAK", pool.DefaultPeak, launchers|Status, Deployment, "while new sessions arrive, idle pool hosts are kept for arrivals at this multiple of the last minute's rate during one host start, beyond the hosts starting: a burst at up to 1 + this times the rate is served from the pool",
			func(s *Settings) *float64 { return &s.Pool.Peak }),
		setting("max-hosts", "SANDRUN_MAX_HOSTS", 0, launchers, Deployment, "most running hosts (Cloud Run executions of the host job, pool hosts included); new sessions beyond wait in line, first come first served (0: no bound; keep it within the region's Cloud Run job instance quota)",
			func(s *Settings) *int { return &s.Launch.MaxHosts }),
		setting("launch-concurrency", "SANDRUN_LAUNCH_CONCURRENCY", launch.DefaultConcurrency, launchers, Deployment, "host launches under way at once",
			func(s *Settings) *int { return &s.Launch.Concurrency }),

		// The dispatcher's own.
		setting("reaper", "SANDRUN_REAPER", true, Dispatcher, Own, "run the reaper's loop in this process",
			func(s *Settings) *bool { return &s.WithReaper }),
		setting("max-outstanding", "SANDRUN_MAX_OUTSTANDING", dispatcher.DefaultMaxOutstanding, Dispatcher, Own, "messages in hand at once (flow control)",
			func(s *Settings) *int { return &s.Dispatcher.MaxOutstanding }),
		setting("shutdown-timeout", "SANDRUN_SHUTDOWN_TIMEOUT", dispatcher.DefaultShutdownTimeout, Dispatcher, Own, "how long a stopping dispatcher waits for the messages in hand",
			func(s *Settings) *time.Duration { return &s.Dispatcher.ShutdownTimeout }),
		setting("ack-extension", "SANDRUN_ACK_EXTENSION", dispatcher.DefaultAckExtension, Dispatcher, Own, "how far at a time the ack deadline of messages in hand is extended (10s to 10m); a dead dispatcher's messages are redelivered after about that long",
			func(s *Settings) *time.Duration { return &s.Dispatcher.AckExtension }),
		setting("order-hold", "SANDRUN_ORDER_HOLD", dispatcher.DefaultOrderHold, Dispatcher, Own, "how long a session's later requests wait for a failed earlier one to be redelivered before going on without it",
			func(s *Settings) *time.Duration { return &s.Dispatcher.OrderHold }),
		setting("refuse-delay", "SANDRUN_REFUSE_DELAY", dispatcher.DefaultRefuseDelay, Dispatcher, Own, "how long requests held behind a failed earlier one of their session are kept in hand before they are nacked",
			func(s *Settings) *time.Duration { return &s.Dispatcher.RefuseDelay }),

		// The reaper's, which the dispatcher takes for the loop it runs.
		devDefault(setting("reaper-interval", "SANDRUN_REAPER_INTERVAL", reaper.DefaultInterval, Dispatcher|Reaper|Dev, Own, "time between reaper passes",
			func(s *Settings) *time.Duration { return &s.Reaper.Interval }), 2*time.Second),
		setting("publish-after", "SANDRUN_PUBLISH_AFTER", reaper.DefaultPublishAfter, Dispatcher|Reaper, Own, "age after which an unpublished completion is re-published",
			func(s *Settings) *time.Duration { return &s.Reaper.PublishAfter }),
		setting("max-launch-attempts", "SANDRUN_MAX_LAUNCH_ATTEMPTS", reaper.DefaultMaxLaunchAttempts, Dispatcher|Reaper, Own, "hosts a session gets that die before serving it, before its requests are answered LAUNCH_FAILED (launches Cloud Run refuses do not count)",
			func(s *Settings) *int { return &s.Reaper.MaxLaunchAttempts }),
		setting("orphan-after", "SANDRUN_ORPHAN_AFTER", reaper.DefaultOrphanAfter, Dispatcher|Reaper, Own, "age after which an execution hosting no session is cancelled",
			func(s *Settings) *time.Duration { return &s.Reaper.OrphanAfter }),
		setting("reaper-concurrency", "SANDRUN_REAPER_CONCURRENCY", reaper.DefaultConcurrency, Dispatcher|Reaper, Own, "sessions a reaper pass works on at once",
			func(s *Settings) *int { return &s.Reaper.Concurrency }),
		setting("http-addr", "SANDRUN_HTTP_ADDR", "", Dispatcher|Reaper, Own, "serve /live, /health, /ready and /metrics (Prometheus) on this host:port; empty: no HTTP server",
			func(s *Settings) *string { return &s.HTTP.Addr }),

		// The executor's own.
		setting("workspace", "SANDRUN_WORKSPACE", "/workspace", Executor, Own, "the session's working tree, kept by checkpoints",
			func(s *Settings) *string { return &s.Executor.Workspace }),
		setting("workspaces-dir", "SANDRUN_WORKSPACES_DIR", "", Executor, Own, "if set, each session's workspace is DIR/SESSION_ID (local runs)",
			func(s *Settings) *string { return &s.Executor.WorkspacesDir }),
		setting("idle-timeout", "SANDRUN_IDLE_TIMEOUT", host.DefaultIdleTimeout, Executor|Dev, Own, "how long an idle host waits for a request before it checkpoints and exits",
			func(s *Settings) *time.Duration { return &s.Executor.IdleTimeout }),
		devDefault(setting("lease-ttl", "SANDRUN_LEASE_TTL", host.DefaultLeaseTTL, Executor|Dev, Own, "how long a host's lease lasts unrenewed; a dead host's requests are answered HOST_LOST after it",
			func(s *Settings) *time.Duration { return &s.Executor.LeaseTTL }), 10*time.Second),
		setting("idle-lease-ttl", "SANDRUN_IDLE_LEASE_TTL", host.DefaultIdleLeaseTTL, Executor, Own, "how long the lease of a host idle for a lease-ttl lasts unrenewed (renewed when 70 % of lease-ttl is left: about once a minute by default); a host that dies idle is replaced after it",
			func(s *Settings) *time.Duration { return &s.Executor.IdleLeaseTTL }),
		setting("maintenance-lease", "SANDRUN_MAINTENANCE_LEASE", host.DefaultMaintenanceLease, Executor, Own, "the lease a host takes when Cloud Run warns (SIGTSTP) that it will pause the task to move it to another machine: the pause must end within it, counted from the warning, or the host is found lost",
			func(s *Settings) *time.Duration { return &s.Executor.MaintenanceLease }),
		setting("max-lifetime", "SANDRUN_MAX_LIFETIME", host.DefaultMaxLifetime, Executor, Own, "how long a host stays up for its session's background processes alone",
			func(s *Settings) *time.Duration { return &s.Executor.MaxLifetime }),
		setting("checkpoint-interval", "SANDRUN_CHECKPOINT_INTERVAL", host.DefaultCheckpointInterval, Executor, Own, "how often a busy host checkpoints between requests",
			func(s *Settings) *time.Duration { return &s.Executor.CheckpointInterval }),

		// What each launch sets for its execution.
		setting("session", jobrunner.EnvSessionID, "", Executor, Launch, "the session to host (set by the launch)",
			func(s *Settings) *string { return &s.Executor.SessionID }),
		setting("execution", "CLOUD_RUN_EXECUTION", "", Executor, Launch, "this execution's id (set by Cloud Run)",
			func(s *Settings) *string { return &s.Executor.Execution }),
		setting("traceparent", launch.EnvTraceparent, "", Executor, Launch, "trace context of the launch that started this host (set by the launch)",
			func(s *Settings) *string { return &s.Executor.Traceparent }),
		setting("pool-member", pool.EnvMember, "", Executor, Launch, "wait in the warm pool as this member instead of hosting --session (set by the pool's launch)",
			func(s *Settings) *string { return &s.Executor.Member.ID }),
		// The pool's launch passes its policy's timeouts to each member.
		setting("pool-idle-timeout", pool.EnvIdleTimeout, pool.DefaultIdleTimeout, Executor, Launch, "how long a pool member waits unclaimed before it exits (set by the pool's launch)",
			func(s *Settings) *time.Duration { return &s.Executor.Member.IdleTimeout }),
		setting("pool-member-ttl", pool.EnvMemberTTL, pool.DefaultMemberTTL, Executor, Launch, "how long an idle pool member stays claimable unrenewed (set by the pool's launch)",
			func(s *Settings) *time.Duration { return &s.Executor.Member.TTL }),

		setting("log-level", "SANDRUN_LOG_LEVEL", "info", longRunning, Own, "debug, info, warn or error",
			func(s *Settings) *string { return &s.LogLevel }),
	}
}

// withFallback adds environment variables that set s when its own is
// unset.
func (s Setting) withFallback(keys ...string) Setting {
	s.Fallback = append(s.Fallback, keys...)
	return s
}

// DefaultIn is s's default in program p.
func (s Setting) DefaultIn(p Program) any {
	if p == Dev && s.DevDefault != nil {
		return s.DevDefault
	}
	return s.Default
}

// define registers s on fs, kept in v, with its default in program p.
func (s Setting) define(fs *config.FlagSet, v *Settings, p Program) {
	switch f := s.field(v).(type) {
	case *string:
		fs.StringVar(f, s.Flag, s.DefaultIn(p).(string), s.Help)
	case *int:
		fs.IntVar(f, s.Flag, s.DefaultIn(p).(int), s.Help)
	case *float64:
		fs.Float64Var(f, s.Flag, s.DefaultIn(p).(float64), s.Help)
	case *bool:
		fs.BoolVar(f, s.Flag, s.DefaultIn(p).(bool), s.Help)
	case *time.Duration:
		fs.DurationVar(f, s.Flag, s.DefaultIn(p).(time.Duration), s.Help)
	default:
		panic(fmt.Sprintf("system: setting %s has a field of type %T", s.Flag, f))
	}
	fs.Env(s.Flag, s.Env, s.Fallback...)
}

// setDefault sets s in v to its default in program p.
func (s Setting) setDefault(v *Settings, p Program) { s.set(v, s.DefaultIn(p)) }

// format is the value of s in v as its flag and environment variable
// take it.
func (s Setting) format(v *Settings) string { return fmt.Sprint(s.get(v)) }

// Define registers on fs, kept in s, the flags of the settings of table
// that program p takes, each with its environment variable and its
// default in p.
func (s *Settings) Define(fs *config.FlagSet, table []Setting, p Program) {
	for _, st := range table {
		if st.Programs&p != 0 {
			st.define(fs, s, p)
		}
	}
}

// DefaultSettings are all the settings of table at their defaults in
// program p, taken by p or not. The dead-letter topic's subscription,
// which no program takes, has its fixed name.
func DefaultSettings(table []Setting, p Program) *Settings {
	s := &Settings{Config: Config{Names: outbox.DefaultNames()}}
	for _, st := range table {
		st.setDefault(s, p)
	}
	return s
}

// JobEnv is the environment a host job gives its hosts for the settings
// s holds: every deployment setting the executor takes, and the
// executor's own settings that differ from their default. Zero values are
// left out: the program's default applies.
func JobEnv(table []Setting, s *Settings) map[string]string {
	defaults := DefaultSettings(table, Executor)
	env := map[string]string{}
	for _, st := range table {
		if st.Programs&Executor == 0 || st.Scope == Launch {
			continue
		}
		v := st.format(s)
		if st.isZero(v) || (st.Scope == Own && v == st.format(defaults)) {
			continue
		}
		env[st.Env] = v
	}
	return env
}

// isZero reports whether v, a value of s, is its type's zero value.
func (s Setting) isZero(v string) bool { return v == s.format(&Settings{}) }

// DeploymentEnv is the environment (KEY=VALUE, sorted) that gives another
// program, or a client, the deployment settings s holds. Zero values are
// left out: the program's default applies.
func DeploymentEnv(table []Setting, s *Settings) []string {
	var env []string
	for _, st := range table {
		if st.Scope != Deployment {
			continue
		}
		if v := st.format(s); !st.isZero(v) {
			env = append(env, st.Env+"="+v)
		}
	}
	sort.Strings(env)
	return env
}
