//! `shoal service …`

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use super::node::encode;
use super::progress::{self, Until};
use super::{parse, table, Client, Format};
use crate::api::spec::{PolicyBody, PolicyPatch, ServiceBody, ServiceSpecBody};
use crate::api::types::{
    Created, HealthPatch, LogEntry, ResourcesPatch, ScaleRequest, ServiceRow, ServiceUpdate,
    TaskRow,
};

#[derive(Subcommand)]
pub enum ServiceCmd {
    /// Create a service.
    Create(Box<CreateArgs>),
    /// List services.
    Ls {
        /// Output: a table, or JSON for scripts.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// List the tasks of a service, with the last 5 per slot.
    Ps {
        /// The service's name or id.
        service: String,
        /// Output: a table, or JSON for scripts.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show a service, spec included.
    Inspect {
        /// The service's name or id.
        service: String,
        /// Output: a table, or JSON for scripts.
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
    /// Set the replica count of services: NAME=N [NAME=N...].
    Scale {
        /// NAME=N pairs: a service and its new number of tasks.
        #[arg(required = true, value_parser = parse::scale)]
        scales: Vec<(String, u64)>,
        #[command(flatten)]
        detach: Detach,
    },
    /// Change a service. A change of the task spec replaces its tasks as
    /// its update policy says (default: one at a time, stop-first).
    Update(Box<UpdateArgs>),
    /// Go back to the service's previous spec, rolled out with its
    /// rollback policy.
    Rollback {
        /// The service's name or id.
        service: String,
        #[command(flatten)]
        detach: Detach,
    },
    /// Spread a replicated service's tasks evenly again (a node that came
    /// back gets its share): the tasks that must move are replaced as its
    /// update policy says.
    Rebalance {
        /// The service's name or id.
        service: String,
        #[command(flatten)]
        detach: Detach,
    },
    /// Remove services.
    Rm {
        /// Names or ids of the services.
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Show the logs of a service's tasks.
    Logs {
        /// The service's name or id.
        service: String,
        /// Keep printing new lines as the tasks write them.
        #[arg(short, long)]
        follow: bool,
        /// Lines from the end of each task's log.
        #[arg(long, value_parser = parse::count)]
        tail: Option<u64>,
        /// Prefix each line with the time it was written.
        #[arg(short = 't', long)]
        timestamps: bool,
    },
}

/// Whether the command returns at once or waits for the service to
/// converge, showing its progress (docker's `--detach`).
#[derive(Args)]
pub struct Detach {
    /// Return at once instead of waiting for the tasks to run and showing
    /// their progress (`--detach=false`: wait, the default).
    #[arg(
        short,
        long,
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    detach: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Mode {
    Replicated,
    Global,
    /// Tasks that run to completion: --replicas successful runs in all.
    ReplicatedJob,
    /// A task that runs to completion on every eligible node.
    GlobalJob,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Condition {
    Any,
    OnFailure,
    None,
}

#[derive(Args)]
pub struct CreateArgs {
    /// The service's name: 1-63 letters, digits, '-' or '_'.
    #[arg(long)]
    name: String,
    /// Tasks to run (replicated mode), or successful runs in all
    /// (replicated-job mode).
    #[arg(long, value_parser = parse::count, allow_negative_numbers = true)]
    replicas: Option<u64>,
    /// replicated: --replicas tasks; global: one task on every eligible
    /// node; replicated-job and global-job: the same, run to completion.
    #[arg(long, value_enum, default_value = "replicated")]
    mode: Mode,
    /// Replicated jobs: how many tasks run at once (default: --replicas).
    #[arg(long, value_parser = parse::count)]
    max_concurrent: Option<u64>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(short, long = "env", value_parser = parse::key_value)]
    env: Vec<(String, String)>,
    /// Working directory of the command (default: the image's).
    #[arg(short, long)]
    workdir: Option<String>,
    /// Replace the image's ENTRYPOINT (and drop its CMD), split as a
    /// shell would ("" for none at all).
    #[arg(long, allow_hyphen_values = true)]
    entrypoint: Option<String>,
    /// User name or uid[:gid].
    #[arg(short, long)]
    user: Option<String>,
    /// Service label KEY=VALUE (repeatable).
    #[arg(short, long = "label", value_parser = parse::key_value)]
    label: Vec<(String, String)>,
    /// Container label KEY=VALUE (repeatable).
    #[arg(long = "container-label", value_parser = parse::key_value)]
    container_label: Vec<(String, String)>,
    /// When a task that ended is replaced (default: any; on-failure for
    /// jobs).
    #[arg(long, value_enum)]
    restart_condition: Option<Condition>,
    /// How long to wait before replacing a task that ended (at most 24h).
    #[arg(long, value_parser = parse::duration, default_value = "5s")]
    restart_delay: Duration,
    /// How many times a slot's task is replaced before giving up
    /// (default: no limit).
    #[arg(long, value_parser = parse::count)]
    restart_max_attempts: Option<u64>,
    /// How long a task has to stop before it is killed (at most 1h).
    #[arg(long, value_parser = parse::duration, default_value = "10s")]
    stop_grace_period: Duration,
    /// The signal that asks a task to stop (default: SIGTERM).
    #[arg(long, value_parser = parse::signal)]
    stop_signal: Option<String>,
    /// Placement constraint, e.g. node.labels.zone==a (repeatable).
    #[arg(long)]
    constraint: Vec<String>,
    /// Placement preference, spread=node.labels.KEY (repeatable, in order):
    /// tasks spread evenly over the label's values first.
    #[arg(long)]
    placement_pref: Vec<String>,
    /// At most this many tasks on one node (default: no limit).
    #[arg(long, value_parser = parse::count)]
    replicas_max_per_node: Option<u64>,
    /// When a node pulls the image: missing, always or never.
    #[arg(long, default_value = "missing", value_parser = ["missing", "always", "never"])]
    pull: String,
    /// Keep the tag: do not ask the registry for the digest it points at
    /// now (each node then runs what the tag names when it pulls).
    #[arg(long)]
    no_resolve_image: bool,
    /// A network to join, by name or id (repeatable); `host` for the
    /// node's own network. Default: a network namespace of the task's own
    /// on the node's bridge.
    #[arg(long)]
    network: Vec<String>,
    /// A capability beyond docker's default set, e.g. NET_ADMIN or ALL
    /// (repeatable).
    #[arg(long)]
    cap_add: Vec<String>,
    /// A capability taken from the default set, e.g. NET_RAW or ALL
    /// (repeatable).
    #[arg(long)]
    cap_drop: Vec<String>,
    /// Mount the task's root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// A mount: type=bind,source=PATH,target=PATH[,readonly] (a node path
    /// the cluster allows: `cluster update --bind-allow`), or
    /// type=tmpfs,target=PATH[,tmpfs-size=16M][,tmpfs-mode=1770]
    /// (repeatable).
    #[arg(long, value_parser = parse::mount)]
    mount: Vec<crate::api::spec::MountBody>,
    /// A secret the tasks get as a file: NAME, or
    /// source=NAME,target=PATH,uid=N,gid=N,mode=0400 (repeatable). Default
    /// target /run/secrets/NAME.
    #[arg(long, value_parser = parse::file_ref)]
    secret: Vec<crate::api::spec::FileRefBody>,
    /// A config the tasks get as a read-only file, as --secret (default
    /// target /NAME).
    #[arg(long, value_parser = parse::file_ref)]
    config: Vec<crate::api::spec::FileRefBody>,
    #[command(flatten)]
    options: super::task_options::CreateOptionFlags,
    /// Publish a port: published=P,target=T[,protocol=udp][,mode=host], or
    /// P:T[/udp] (repeatable). The nodes answer on P and forward to a task.
    #[arg(short, long, value_parser = parse::publish)]
    publish: Vec<crate::api::spec::PortBody>,
    /// How other tasks reach the service by name: vip (its virtual IP) or
    /// dnsrr (its tasks' addresses, in turn).
    #[arg(long, default_value = "vip", value_parser = ["vip", "dnsrr"])]
    endpoint_mode: String,
    #[command(flatten)]
    resources: ResourceFlags,
    #[command(flatten)]
    health: HealthFlags,
    #[command(flatten)]
    update: UpdateFlags,
    #[command(flatten)]
    rollback: RollbackFlags,
    #[command(flatten)]
    detach: Detach,
    /// The image, e.g. busybox or registry.example:5000/app:v1.
    image: String,
    /// The command and its arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args)]
pub struct UpdateArgs {
    /// The service's name or id.
    service: String,
    /// A new image for its tasks.
    #[arg(long)]
    image: Option<String>,
    /// Keep the tag: do not ask the registry for its digest.
    #[arg(long)]
    no_resolve_image: bool,
    /// Add or replace an environment variable KEY=VALUE (repeatable).
    #[arg(long, value_parser = parse::key_value)]
    env_add: Vec<(String, String)>,
    /// Remove an environment variable by KEY (repeatable).
    #[arg(long)]
    env_rm: Vec<String>,
    /// The new number of tasks (replicated services), or of successful
    /// runs (replicated jobs).
    #[arg(long, value_parser = parse::count, allow_negative_numbers = true)]
    replicas: Option<u64>,
    /// Replicated jobs: how many tasks run at once.
    #[arg(long, value_parser = parse::count)]
    max_concurrent: Option<u64>,
    /// A new command line for the tasks, split as a shell would ("" for
    /// the image's own).
    #[arg(long, allow_hyphen_values = true)]
    args: Option<String>,
    /// A new ENTRYPOINT, split as a shell would ("" for none at all).
    #[arg(long, allow_hyphen_values = true, conflicts_with = "entrypoint_reset")]
    entrypoint: Option<String>,
    /// Go back to the image's own ENTRYPOINT and CMD.
    #[arg(long)]
    entrypoint_reset: bool,
    /// Add or replace a service label KEY=VALUE (repeatable).
    #[arg(long, value_parser = parse::key_value)]
    label_add: Vec<(String, String)>,
    /// Remove a service label by KEY (repeatable).
    #[arg(long)]
    label_rm: Vec<String>,
    /// Add or replace a container label KEY=VALUE (repeatable).
    #[arg(long, value_parser = parse::key_value)]
    container_label_add: Vec<(String, String)>,
    /// Remove a container label by KEY (repeatable).
    #[arg(long)]
    container_label_rm: Vec<String>,
    /// A new working directory ("" for the image's).
    #[arg(short, long)]
    workdir: Option<String>,
    /// A new user, name or uid[:gid] ("" for the image's).
    #[arg(short, long)]
    user: Option<String>,
    /// A new stop signal.
    #[arg(long, value_parser = parse::signal)]
    stop_signal: Option<String>,
    /// A new stop grace period (at most 1h).
    #[arg(long, value_parser = parse::duration)]
    stop_grace_period: Option<Duration>,
    /// When a task that ended is replaced.
    #[arg(long, value_enum)]
    restart_condition: Option<Condition>,
    /// How long to wait before replacing a task that ended.
    #[arg(long, value_parser = parse::duration)]
    restart_delay: Option<Duration>,
    /// How many times a slot's task is replaced before giving up (0: no
    /// limit).
    #[arg(long, value_parser = parse::count)]
    restart_max_attempts: Option<u64>,
    /// Join a network, by name or id (repeatable).
    #[arg(long)]
    network_add: Vec<String>,
    /// Leave a network (repeatable).
    #[arg(long)]
    network_rm: Vec<String>,
    /// Add a secret, as `create --secret` (repeatable; replaces one of the
    /// same name).
    #[arg(long, value_parser = parse::file_ref)]
    secret_add: Vec<crate::api::spec::FileRefBody>,
    /// Remove a secret by name (repeatable).
    #[arg(long)]
    secret_rm: Vec<String>,
    /// Add a config, as `create --config` (repeatable).
    #[arg(long, value_parser = parse::file_ref)]
    config_add: Vec<crate::api::spec::FileRefBody>,
    /// Remove a config by name (repeatable).
    #[arg(long)]
    config_rm: Vec<String>,
    /// Add a capability to the task's set (repeatable).
    #[arg(long)]
    cap_add: Vec<String>,
    /// Drop a capability from the task's set (repeatable).
    #[arg(long)]
    cap_drop: Vec<String>,
    /// A read-only root filesystem (--read-only=false: writable again).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    read_only: Option<bool>,
    /// Add a mount, as `create --mount` (repeatable; replaces one at the
    /// same target).
    #[arg(long, value_parser = parse::mount)]
    mount_add: Vec<crate::api::spec::MountBody>,
    /// Remove the mount at this target (repeatable).
    #[arg(long)]
    mount_rm: Vec<String>,
    #[command(flatten)]
    options: super::task_options::UpdateOptionFlags,
    /// Publish a port, as `create --publish` (repeatable).
    #[arg(long, value_parser = parse::publish)]
    publish_add: Vec<crate::api::spec::PortBody>,
    /// Stop publishing a port: PORT or PORT/udp (repeatable).
    #[arg(long)]
    publish_rm: Vec<String>,
    /// vip or dnsrr, as `create --endpoint-mode`.
    #[arg(long, value_parser = ["vip", "dnsrr"])]
    endpoint_mode: Option<String>,
    /// Replace every task, even if nothing else changes.
    #[arg(long)]
    force: bool,
    /// Add a placement constraint (repeatable).
    #[arg(long)]
    constraint_add: Vec<String>,
    /// Remove a placement constraint, as written (repeatable).
    #[arg(long)]
    constraint_rm: Vec<String>,
    /// Add a placement preference, spread=node.labels.KEY (repeatable).
    #[arg(long)]
    placement_pref_add: Vec<String>,
    /// Remove a placement preference (repeatable).
    #[arg(long)]
    placement_pref_rm: Vec<String>,
    /// The most tasks on one node (0: no limit).
    #[arg(long, value_parser = parse::count)]
    replicas_max_per_node: Option<u64>,
    #[command(flatten)]
    resources: ResourceFlags,
    #[command(flatten)]
    health: HealthFlags,
    #[command(flatten)]
    update: UpdateFlags,
    #[command(flatten)]
    rollback: RollbackFlags,
    #[command(flatten)]
    detach: Detach,
}

/// Limits and reservations (Docker's `--limit-*` and `--reserve-*`; 0
/// takes one away on `update`).
#[derive(Args)]
pub struct ResourceFlags {
    /// CPUs the task may use, e.g. 0.5 (a cgroup quota).
    #[arg(long, value_parser = crate::types::parse_cpus)]
    limit_cpu: Option<u64>,
    /// Memory the task may use, e.g. 64M; past it, the kernel kills it
    /// (the task fails, "OOM killed").
    #[arg(long, value_parser = crate::types::parse_bytes)]
    limit_memory: Option<u64>,
    /// Processes the task may have.
    #[arg(long, value_parser = parse::count)]
    limit_pids: Option<u64>,
    /// CPUs set aside for the task: it is placed only where they are free.
    #[arg(long, value_parser = crate::types::parse_cpus)]
    reserve_cpu: Option<u64>,
    /// Memory set aside for the task, e.g. 32M: it is placed only where it
    /// is free.
    #[arg(long, value_parser = crate::types::parse_bytes)]
    reserve_memory: Option<u64>,
}

impl ResourceFlags {
    fn patch(self) -> ResourcesPatch {
        ResourcesPatch {
            limit_nano_cpus: self.limit_cpu,
            limit_memory_bytes: self.limit_memory,
            limit_pids: self.limit_pids,
            reserve_nano_cpus: self.reserve_cpu,
            reserve_memory_bytes: self.reserve_memory,
        }
    }
}

/// A health check (Docker's `--health-*` flags).
#[derive(Args)]
pub struct HealthFlags {
    /// A command run in the task (by /bin/sh -c); the task runs only once
    /// it exits 0, and is replaced when it fails --health-retries times.
    #[arg(long)]
    health_cmd: Option<String>,
    /// Time between checks (default 30s).
    #[arg(long, value_parser = parse::duration)]
    health_interval: Option<Duration>,
    /// How long one check may take (default 30s).
    #[arg(long, value_parser = parse::duration)]
    health_timeout: Option<Duration>,
    /// Failures in a row that make the task unhealthy (default 3).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    health_retries: Option<u32>,
    /// Time after the start during which failures do not count (default 0s).
    #[arg(long, value_parser = parse::duration)]
    health_start_period: Option<Duration>,
    /// No health check at all.
    #[arg(long, conflicts_with = "health_cmd")]
    no_healthcheck: bool,
}

impl HealthFlags {
    fn patch(self) -> HealthPatch {
        HealthPatch {
            cmd: self.health_cmd,
            interval_ms: self.health_interval.map(parse::millis),
            timeout_ms: self.health_timeout.map(parse::millis),
            retries: self.health_retries,
            start_period_ms: self.health_start_period.map(parse::millis),
            none: self.no_healthcheck,
        }
    }
}

/// How an update rolls out (Docker's `--update-*` flags).
#[derive(Args)]
pub struct UpdateFlags {
    /// Tasks replaced at once during an update (0: all at once; default 1).
    #[arg(long, value_parser = parse::count)]
    update_parallelism: Option<u64>,
    /// The wait between replacing tasks (default 0s).
    #[arg(long, value_parser = parse::duration)]
    update_delay: Option<Duration>,
    /// stop-first (the default) or start-first: whether a new task starts
    /// before its old one stops.
    #[arg(long, value_parser = ["stop-first", "start-first"])]
    update_order: Option<String>,
    /// What an update does when too many new tasks fail: pause (the
    /// default), continue or rollback.
    #[arg(long, value_parser = ["pause", "continue", "rollback"])]
    update_failure_action: Option<String>,
    /// How long after its last new task starts an update still watches
    /// for failures (default 5s).
    #[arg(long, value_parser = parse::duration)]
    update_monitor: Option<Duration>,
    /// The share of new tasks that may fail before the failure action
    /// runs, 0 to 1 (default 0).
    #[arg(long, value_parser = parse::ratio)]
    update_max_failure_ratio: Option<f64>,
}

/// How a rollback rolls out (Docker's `--rollback-*` flags).
#[derive(Args)]
pub struct RollbackFlags {
    /// Tasks replaced at once during a rollback (0: all at once; default 1).
    #[arg(long, value_parser = parse::count)]
    rollback_parallelism: Option<u64>,
    /// The wait between replacing tasks in a rollback (default 0s).
    #[arg(long, value_parser = parse::duration)]
    rollback_delay: Option<Duration>,
    /// stop-first (the default) or start-first, for a rollback.
    #[arg(long, value_parser = ["stop-first", "start-first"])]
    rollback_order: Option<String>,
    /// What a rollback does when too many new tasks fail: pause (the
    /// default) or continue.
    #[arg(long, value_parser = ["pause", "continue"])]
    rollback_failure_action: Option<String>,
    /// How long after its last new task starts a rollback still watches
    /// for failures (default 5s).
    #[arg(long, value_parser = parse::duration)]
    rollback_monitor: Option<Duration>,
    /// The share of a rollback's new tasks that may fail, 0 to 1.
    #[arg(long, value_parser = parse::ratio)]
    rollback_max_failure_ratio: Option<f64>,
}

impl UpdateFlags {
    fn patch(self) -> PolicyPatch {
        PolicyPatch {
            parallelism: self.update_parallelism,
            delay_ms: self.update_delay.map(parse::millis),
            order: self.update_order,
            failure_action: self.update_failure_action,
            monitor_ms: self.update_monitor.map(parse::millis),
            max_failure_ratio: self.update_max_failure_ratio,
        }
    }
}

impl RollbackFlags {
    fn patch(self) -> PolicyPatch {
        PolicyPatch {
            parallelism: self.rollback_parallelism,
            delay_ms: self.rollback_delay.map(parse::millis),
            order: self.rollback_order,
            failure_action: self.rollback_failure_action,
            monitor_ms: self.rollback_monitor.map(parse::millis),
            max_failure_ratio: self.rollback_max_failure_ratio,
        }
    }
}

impl Condition {
    fn as_str(self) -> &'static str {
        match self {
            Condition::Any => "any",
            Condition::OnFailure => "on-failure",
            Condition::None => "none",
        }
    }
}

fn labels(pairs: Vec<(String, String)>) -> BTreeMap<String, String> {
    pairs.into_iter().collect()
}

fn spec(a: Box<CreateArgs>) -> anyhow::Result<ServiceSpecBody> {
    let (mode, replicas) = match (a.mode, a.replicas) {
        (Mode::Replicated, n) => ("replicated", Some(n.unwrap_or(1))),
        (Mode::ReplicatedJob, n) => ("replicated-job", Some(n.unwrap_or(1))),
        (Mode::Global, None) => ("global", None),
        (Mode::GlobalJob, None) => ("global-job", None),
        (Mode::Global | Mode::GlobalJob, Some(_)) => {
            anyhow::bail!("--replicas can only be used with --mode replicated or replicated-job")
        }
    };
    if a.max_concurrent.is_some() && !matches!(a.mode, Mode::ReplicatedJob) {
        anyhow::bail!("--max-concurrent can only be used with --mode replicated-job");
    }
    Ok(ServiceSpecBody {
        name: a.name,
        labels: labels(a.label),
        container_labels: labels(a.container_label),
        mode: mode.into(),
        replicas,
        max_concurrent: a.max_concurrent,
        image: a.image,
        pull: a.pull,
        image_digest: None,
        image_platforms: Vec::new(),
        no_resolve_image: a.no_resolve_image,
        entrypoint: a.entrypoint.as_deref().map(split_line).transpose()?,
        depends_on: Vec::new(),
        network_aliases: BTreeMap::new(),
        args: a.command,
        env: a.env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        workdir: a.workdir,
        user: a.user,
        stop_signal: a.stop_signal,
        stop_grace_period_ms: parse::millis(a.stop_grace_period),
        restart_condition: a
            .restart_condition
            .map_or(String::new(), |c| c.as_str().into()),
        restart_delay_ms: parse::millis(a.restart_delay),
        restart_max_attempts: a.restart_max_attempts,
        constraints: a.constraint,
        placement_prefs: a.placement_pref,
        max_replicas_per_node: a.replicas_max_per_node.unwrap_or(0),
        networks: a.network,
        ports: a.publish,
        secrets: a.secret,
        configs: a.config,
        mounts: a.mount,
        cap_add: a.cap_add,
        cap_drop: a.cap_drop,
        read_only: a.read_only,
        options: a.options.body(),
        endpoint_mode: a.endpoint_mode,
        resources: {
            let mut r = crate::types::Resources::default();
            a.resources.patch().apply(&mut r);
            r
        },
        healthcheck: a
            .health
            .patch()
            .apply(None)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        update: a.update.patch().onto(PolicyBody::default()),
        rollback: a.rollback.patch().onto(PolicyBody::default()),
    })
}

pub async fn run(client: &Client, cmd: ServiceCmd) -> anyhow::Result<()> {
    match cmd {
        ServiceCmd::Create(a) => {
            let detach = a.detach.detach;
            let name = a.name.clone();
            let r: Created = client.post("/v1/services", &spec(a)?).await?;
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
            println!("{}", r.id);
            if !detach {
                progress::wait(client, &name, Until::Converged).await?;
            }
        }
        ServiceCmd::Ls { format } => {
            let rows: Vec<ServiceRow> = client.get("/v1/services").await?;
            if format == Format::Json {
                return table::json(&rows);
            }
            print_services(&rows);
        }
        ServiceCmd::Ps { service, format } => {
            let rows: Vec<TaskRow> = client
                .get(&format!("/v1/services/{}/tasks", encode(&service)))
                .await?;
            if format == Format::Json {
                return table::json(&rows);
            }
            print_tasks(&rows);
        }
        ServiceCmd::Inspect { service, .. } => {
            let s: ServiceBody = client
                .get(&format!("/v1/services/{}", encode(&service)))
                .await?;
            table::json(&s)?;
        }
        ServiceCmd::Scale { scales, detach } => {
            // Every name is checked before anything is changed.
            for (name, _) in &scales {
                let _: ServiceBody = client
                    .get(&format!("/v1/services/{}", encode(name)))
                    .await?;
            }
            for (name, replicas) in scales.iter().cloned() {
                let _: Created = client
                    .post(
                        &format!("/v1/services/{}/scale", encode(&name)),
                        &ScaleRequest { replicas },
                    )
                    .await?;
                println!("{name} scaled to {replicas}");
            }
            if !detach.detach {
                for (name, _) in &scales {
                    progress::wait(client, name, Until::Converged).await?;
                }
            }
        }
        ServiceCmd::Update(a) => {
            let before: ServiceBody = client
                .get(&format!("/v1/services/{}", encode(&a.service)))
                .await?;
            let req = ServiceUpdate {
                image: a.image,
                env_add: kv_list(a.env_add),
                env_rm: a.env_rm,
                replicas: a.replicas,
                max_concurrent: a.max_concurrent,
                args: match a.args {
                    Some(line) => Some(
                        shell_words::split(&line)
                            .map_err(|e| anyhow::anyhow!("--args {line:?}: {e}"))?,
                    ),
                    None => None,
                },
                entrypoint: a.entrypoint.as_deref().map(split_line).transpose()?,
                entrypoint_reset: a.entrypoint_reset,
                label_add: kv_list(a.label_add),
                label_rm: a.label_rm,
                container_label_add: kv_list(a.container_label_add),
                container_label_rm: a.container_label_rm,
                workdir: a.workdir,
                user: a.user,
                stop_signal: a.stop_signal,
                stop_grace_period_ms: a.stop_grace_period.map(parse::millis),
                restart_condition: a.restart_condition.map(|c| c.as_str().into()),
                restart_delay_ms: a.restart_delay.map(parse::millis),
                restart_max_attempts: a.restart_max_attempts,
                network_add: a.network_add,
                network_rm: a.network_rm,
                secret_add: a.secret_add,
                secret_rm: a.secret_rm,
                config_add: a.config_add,
                config_rm: a.config_rm,
                mount_add: a.mount_add,
                mount_rm: a.mount_rm,
                cap_add: a.cap_add,
                cap_drop: a.cap_drop,
                read_only: a.read_only,
                options: a.options.patch(),
                no_resolve_image: a.no_resolve_image,
                publish_add: a.publish_add,
                publish_rm: a.publish_rm,
                endpoint_mode: a.endpoint_mode,
                update: a.update.patch(),
                rollback: a.rollback.patch(),
                force: a.force,
                resources: a.resources.patch(),
                constraint_add: a.constraint_add,
                constraint_rm: a.constraint_rm,
                placement_pref_add: a.placement_pref_add,
                placement_pref_rm: a.placement_pref_rm,
                max_replicas_per_node: a.replicas_max_per_node,
                health: a.health.patch(),
            };
            let s: ServiceBody = client
                .post(&format!("/v1/services/{}/update", encode(&a.service)), &req)
                .await?;
            for w in &s.warnings {
                eprintln!("warning: {w}");
            }
            println!("{}", s.spec.name);
            if !a.detach.detach {
                // A new spec version rolls out; anything else (a scale,
                // labels) only has to converge.
                let rolls = s.spec_version != before.spec_version && !s.spec.mode.ends_with("job");
                let until = if rolls {
                    Until::Rollout("completed")
                } else {
                    Until::Converged
                };
                progress::wait(client, &s.id, until).await?;
            }
        }
        ServiceCmd::Rollback { service, detach } => {
            let s: ServiceBody = client
                .post(
                    &format!("/v1/services/{}/rollback", encode(&service)),
                    &serde_json::json!({}),
                )
                .await?;
            println!("{}", s.spec.name);
            if !detach.detach {
                progress::wait(client, &s.id, Until::Rollout("rollback_completed")).await?;
            }
        }
        ServiceCmd::Rebalance { service, detach } => {
            let s: ServiceBody = client
                .post(
                    &format!("/v1/services/{}/rebalance", encode(&service)),
                    &serde_json::json!({}),
                )
                .await?;
            if s.rebalance.is_empty() {
                // Nothing moves: the warning says why.
                for w in &s.warnings {
                    println!("{w}");
                }
                return Ok(());
            }
            println!("{}: {} tasks move", s.spec.name, s.rebalance.len());
            if !detach.detach {
                progress::wait(client, &s.id, Until::Rollout("completed")).await?;
            }
        }
        ServiceCmd::Rm { services } => {
            for name in &services {
                let _: ServiceBody = client
                    .get(&format!("/v1/services/{}", encode(name)))
                    .await?;
            }
            for name in services {
                let _: Created = client
                    .delete(&format!("/v1/services/{}", encode(&name)))
                    .await?;
                println!("{name}");
            }
        }
        ServiceCmd::Logs {
            service,
            follow,
            tail,
            timestamps,
        } => {
            let mut path = format!("/v1/services/{}/logs?follow={follow}", encode(&service));
            if let Some(n) = tail {
                path.push_str(&format!("&tail={n}"));
            }
            let mut missing = 0;
            client
                .stream(&path, |e: LogEntry| {
                    if !print_log(&e, timestamps) {
                        missing += 1;
                    }
                })
                .await?;
            // What could be read was printed; a script must still learn
            // that some of it is not there.
            if missing > 0 {
                anyhow::bail!(
                    "the logs of {missing} task(s) could not be read (see the warnings above)"
                );
            }
        }
    }
    Ok(())
}

fn kv_list(pairs: Vec<(String, String)>) -> Vec<String> {
    pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Prints one entry; false for shoal's note that some logs are missing.
fn print_log(e: &LogEntry, timestamps: bool) -> bool {
    if e.source == "shoal" {
        // A note from shoal itself, e.g. a node it could not reach.
        eprintln!("warning: {}", e.line);
        return false;
    }
    let line = if timestamps {
        format!("{} | {} {}\n", e.source, e.ts, e.line)
    } else {
        format!("{} | {}\n", e.source, e.line)
    };
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = if e.stream == "stderr" {
        std::io::stderr().write_all(line.as_bytes())
    } else {
        std::io::stdout().write_all(line.as_bytes())
    };
    true
}

/// The ERROR column: the task's error, or why a pending task waits (docker
/// shows "no suitable node (…)" there too).
fn error_column(t: &TaskRow) -> String {
    match t.error.as_deref() {
        Some(e) if !e.is_empty() => e.to_string(),
        _ if t.state == "pending" => t.message.clone(),
        _ => String::new(),
    }
}

pub(super) fn print_services(rows: &[ServiceRow]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|s| {
            vec![
                s.id.chars().take(12).collect(),
                s.name.clone(),
                s.mode.clone(),
                match s.completed {
                    // Docker's form: running/at once (done/all completed).
                    Some(done) => format!(
                        "{}/{} ({done}/{} completed)",
                        s.running,
                        s.max_concurrent.unwrap_or(s.replicas),
                        s.replicas
                    ),
                    None => format!("{}/{}", s.running, s.replicas),
                },
                s.image.clone(),
                s.update_state.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table::print(
        &["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "UPDATE"],
        &cells,
    );
}

pub(super) fn print_tasks(rows: &[TaskRow]) {
    let mut cells = Vec::new();
    let mut prev: Option<(&str, u64, Option<String>)> = None;
    for t in rows {
        let key = (
            t.service.as_str(),
            t.slot,
            if t.slot == 0 { t.node_id.clone() } else { None },
        );
        // Older tasks of a slot are indented under the newest, as docker does.
        let name = if prev.as_ref() == Some(&key) {
            format!(" \\_ {}", t.name)
        } else {
            t.name.clone()
        };
        prev = Some(key);
        cells.push(vec![
            t.id.chars().take(12).collect(),
            name,
            t.node.clone().unwrap_or_default(),
            t.desired_state.clone(),
            match &t.health {
                Some(h) => format!("{} ({h}) {}", t.state, table::ago(t.updated_ms)),
                None => format!("{} {}", t.state, table::ago(t.updated_ms)),
            },
            truncate(&error_column(t), 60),
        ]);
    }
    table::print(
        &[
            "ID",
            "NAME",
            "NODE",
            "DESIRED STATE",
            "CURRENT STATE",
            "ERROR",
        ],
        &cells,
    );
}

/// Long errors are cut in tables, as docker does; `--format json` has them
/// whole.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// A command line split as a shell would split it.
fn split_line(line: &str) -> anyhow::Result<Vec<String>> {
    shell_words::split(line).map_err(|e| anyhow::anyhow!("{line:?}: {e}"))
}
