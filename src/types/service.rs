//! Services: the declared unit of scheduling, and the spec of their tasks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Meta, NetworkMode, PortConfig, PullPolicy, Vip};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceMode {
    Replicated {
        replicas: u64,
    },
    Global,
    /// Tasks that run to completion (`--mode replicated-job`): `completions`
    /// successful runs in all, at most `max_concurrent` at once.
    ReplicatedJob {
        completions: u64,
        max_concurrent: u64,
    },
    /// One task that runs to completion on every eligible node, those that
    /// join later included (`--mode global-job`).
    GlobalJob,
}

impl ServiceMode {
    pub fn name(&self) -> &'static str {
        match self {
            ServiceMode::Replicated { .. } => "replicated",
            ServiceMode::Global => "global",
            ServiceMode::ReplicatedJob { .. } => "replicated-job",
            ServiceMode::GlobalJob => "global-job",
        }
    }

    /// Its tasks run to completion: not restarted once they succeed, and
    /// a change of the task spec runs the job again rather than rolling.
    pub fn is_job(&self) -> bool {
        matches!(
            self,
            ServiceMode::ReplicatedJob { .. } | ServiceMode::GlobalJob
        )
    }

    /// The tasks it asks for: replicas, or a job's completions; None for
    /// the global modes (one per eligible node).
    pub fn count(&self) -> Option<u64> {
        match *self {
            ServiceMode::Replicated { replicas } => Some(replicas),
            ServiceMode::ReplicatedJob { completions, .. } => Some(completions),
            ServiceMode::Global | ServiceMode::GlobalJob => None,
        }
    }
}

/// How other tasks reach a service by name (Docker's endpoint mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum EndpointMode {
    /// Its name is a virtual IP on each of its networks, balanced over its
    /// tasks by the nodes.
    #[default]
    Vip,
    /// Its name is its tasks' addresses, in turn: no virtual IP.
    Dnsrr,
}

impl EndpointMode {
    pub fn is_vip(&self) -> bool {
        *self == EndpointMode::Vip
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            EndpointMode::Vip => "vip",
            EndpointMode::Dnsrr => "dnsrr",
        }
    }
}

impl std::str::FromStr for EndpointMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "vip" => Ok(EndpointMode::Vip),
            "dnsrr" => Ok(EndpointMode::Dnsrr),
            other => Err(format!(
                "invalid endpoint mode {other:?}: expected vip or dnsrr"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RestartCondition {
    #[default]
    Any,
    OnFailure,
    None,
}

impl RestartCondition {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartCondition::Any => "any",
            RestartCondition::OnFailure => "on-failure",
            RestartCondition::None => "none",
        }
    }
}

impl std::str::FromStr for RestartCondition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "any" => Ok(RestartCondition::Any),
            "on-failure" => Ok(RestartCondition::OnFailure),
            "none" => Ok(RestartCondition::None),
            other => Err(format!(
                "invalid restart condition {other:?}: expected \"any\", \"on-failure\" or \"none\""
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    pub delay_ms: u64,
    /// None: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u64>,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            condition: RestartCondition::Any,
            delay_ms: 5_000,
            max_attempts: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ContainerSpec {
    /// Normalized reference, e.g. `docker.io/library/busybox:latest`.
    pub image: String,
    /// The digest the image's tag pointed at when the service was created
    /// or updated (`sha256:…`, of the index or manifest): every node runs
    /// this one, so a tag that moves cannot mix versions. None: the tag is
    /// used as each node finds it (`--no-resolve-image`, an unreachable
    /// registry, or a reference that is a digest already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The platforms the image has (`linux/arm64`, `linux/arm/v7`), as the
    /// registry said at resolve time; empty when unknown. The scheduler
    /// places no task on a node whose platform is not among them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_platforms: Vec<String>,
    /// When the node pulls the image (`--pull`).
    #[serde(default, skip_serializing_if = "PullPolicy::is_missing")]
    pub pull: PullPolicy,
    /// Command and arguments. Empty: the image's entrypoint and cmd.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// A user name or `uid[:gid]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    pub stop_grace_period_ms: u64,
    /// Capabilities beyond docker's default set, and taken from it
    /// (`CAP_…`, or `ALL`), normalized.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// The root filesystem is read-only (`--read-only`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Devices of the node (`--device`): the task is placed only on nodes
    /// that have them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<super::Device>,
    /// Every capability and device, no seccomp filter (`--privileged`),
    /// only where the cluster allows it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// Supplementary groups, by name (from the image's /etc/group) or id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    /// Namespaced kernel parameters (`--sysctl`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Rlimits of its processes (`--ulimit`), one per name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<super::Ulimit>,
    /// An init (the node's tini) runs as PID 1, reaps zombies and passes
    /// signals on (`--init`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    /// The container's hostname, or a template of it
    /// (`{{.Node.Hostname}}-{{.Task.Slot}}`); None: the task id's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Replaces the image's Entrypoint (`--entrypoint`, compose's
    /// `entrypoint`); the image's Cmd is then not used either, as docker
    /// does. None: the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
}

impl ContainerSpec {
    /// Whether it asks for what a node before `crate::LEVEL_OPTIONS`
    /// would silently leave out.
    pub fn has_options(&self) -> bool {
        !self.cap_add.is_empty()
            || !self.cap_drop.is_empty()
            || self.read_only
            || !self.devices.is_empty()
            || self.privileged
            || !self.group_add.is_empty()
            || !self.sysctls.is_empty()
            || !self.ulimits.is_empty()
            || self.init
            || self.hostname.is_some()
            || self.entrypoint.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TaskSpec {
    pub container: ContainerSpec,
    pub restart: RestartPolicy,
    pub placement: Placement,
    /// Absent (as every 254a909 spec is): the host's network.
    #[serde(default, skip_serializing_if = "NetworkMode::is_host")]
    pub network: NetworkMode,
    /// Ports published on the nodes (`--publish`); never with the host's
    /// network, where the task's own ports are the node's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
    /// Bumped by `service update --force`: a spec that differs, so that
    /// every task is replaced though nothing else changed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub force_update: u64,
    /// Its cgroup limits and what the scheduler sets aside for it.
    #[serde(default, skip_serializing_if = "Resources::is_none")]
    pub resources: Resources,
    /// A command run in the task now and then (`--health-cmd`): the task
    /// counts as running only once it passes, and is replaced when it
    /// fails `retries` times in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    /// Secrets, as files on a tmpfs that only this task's node holds, in
    /// memory (`--secret`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<super::FileRef>,
    /// Configs, the same way, read-only (`--config`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<super::FileRef>,
    /// Binds and tmpfs (`--mount`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<super::Mount>,
}

impl TaskSpec {
    /// The names of the node volumes it mounts.
    pub fn volume_names(&self) -> impl Iterator<Item = &str> {
        self.mounts
            .iter()
            .filter(|m| m.kind == super::MountKind::Volume)
            .map(|m| m.source.as_str())
    }

    /// The ids of the secrets and configs its tasks use.
    pub fn file_ids(&self) -> impl Iterator<Item = &str> {
        self.secrets
            .iter()
            .chain(&self.configs)
            .map(|f| f.id.as_str())
    }
}

/// A health check, as Docker's (`HEALTHCHECK` and `--health-*`). Fields
/// left out of a request take Docker's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthCheck {
    /// `["CMD-SHELL", command]` (run by `/bin/sh -c`), `["CMD", arg…]`, or
    /// `["NONE"]`: no check at all (`--no-healthcheck`).
    pub test: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Failures in a row that make the task unhealthy.
    pub retries: u32,
    /// Failures in this time after the start do not count (a success
    /// still makes the task healthy).
    pub start_period_ms: u64,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            test: Vec::new(),
            interval_ms: 30_000,
            timeout_ms: 30_000,
            retries: 3,
            start_period_ms: 0,
        }
    }
}

impl HealthCheck {
    /// The process to run, or None for no check.
    pub fn args(&self) -> Option<Vec<String>> {
        let (kind, rest) = self.test.split_first()?;
        match kind.as_str() {
            "CMD-SHELL" if !rest.is_empty() => {
                Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")])
            }
            "CMD" if !rest.is_empty() => Some(rest.to_vec()),
            _ => None,
        }
    }
}

/// What a task may use (cgroup limits, as runc sets them on cgroup v1 and
/// v2) and what it is sure to have (reservations: the scheduler places it
/// only on a node whose capacity, less what its other tasks reserve,
/// holds them). 0: none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Resources {
    /// CPU time, in billionths of a CPU (0.5 CPU = 500_000_000).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit_nano_cpus: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit_memory_bytes: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit_pids: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reserve_nano_cpus: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reserve_memory_bytes: u64,
}

impl Resources {
    pub fn is_none(&self) -> bool {
        *self == Resources::default()
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Where tasks may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Placement {
    /// Expressions such as `node.labels.zone==a` or `node.role!=manager`,
    /// all of which a node must meet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// Labels to spread the tasks over, in order (`node.labels.zone` for
    /// `--placement-pref spread=node.labels.zone`): as evenly as can be
    /// over the label's values, then within each value over its nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spread: Vec<String>,
    /// At most this many of the service's tasks on one node; 0: no limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_replicas_per_node: u64,
}

impl Placement {
    /// The label key of a spread preference (`node.labels.zone` → `zone`),
    /// or why it is not one.
    pub fn spread_key(pref: &str) -> Result<&str, String> {
        pref.strip_prefix("node.labels.")
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                format!(
                    "invalid placement preference spread={pref}: expected spread=node.labels.<key>"
                )
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub mode: ServiceMode,
    /// Absent: `vip`.
    #[serde(default, skip_serializing_if = "EndpointMode::is_vip")]
    pub endpoint_mode: EndpointMode,
    pub task: TaskSpec,
    /// How a change of the task spec rolls out (`--update-*`). Absent:
    /// Docker's defaults.
    #[serde(default, skip_serializing_if = "UpdatePolicy::is_default")]
    pub update: UpdatePolicy,
    /// How a rollback rolls out (`--rollback-*`).
    #[serde(default, skip_serializing_if = "UpdatePolicy::is_default")]
    pub rollback: UpdatePolicy,
    /// Services whose state a new task of this one waits for (compose's
    /// `depends_on`), by name: checked by the scheduler before it places
    /// any task of this service, on every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
}

/// A service this one starts after, and what it waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub service: String,
    pub condition: DependsCondition,
}

/// Compose's `depends_on` conditions, judged cluster-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DependsCondition {
    /// One of its tasks is running.
    Started,
    /// One of its tasks is running and healthy.
    Healthy,
    /// It ran to completion: its tasks exited 0 and none is left to run.
    CompletedSuccessfully,
}

impl DependsCondition {
    pub fn as_str(self) -> &'static str {
        match self {
            DependsCondition::Started => "service_started",
            DependsCondition::Healthy => "service_healthy",
            DependsCondition::CompletedSuccessfully => "service_completed_successfully",
        }
    }
}

impl std::str::FromStr for DependsCondition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "service_started" => Ok(DependsCondition::Started),
            "service_healthy" => Ok(DependsCondition::Healthy),
            "service_completed_successfully" => Ok(DependsCondition::CompletedSuccessfully),
            other => Err(format!(
                "invalid depends_on condition {other:?}: expected service_started, service_healthy or service_completed_successfully"
            )),
        }
    }
}

/// Whether a slot's new task starts before or after its old one stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

impl UpdateOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateOrder::StopFirst => "stop-first",
            UpdateOrder::StartFirst => "start-first",
        }
    }
}

impl std::str::FromStr for UpdateOrder {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stop-first" => Ok(UpdateOrder::StopFirst),
            "start-first" => Ok(UpdateOrder::StartFirst),
            o => Err(format!(
                "invalid update order {o:?}: expected stop-first or start-first"
            )),
        }
    }
}

/// What a rollout does when too many of its new tasks fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum FailureAction {
    /// Stops replacing tasks until the next `service update`.
    #[default]
    Pause,
    /// Goes on as if nothing failed.
    Continue,
    /// Goes back to the previous spec (updates only).
    Rollback,
}

impl FailureAction {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureAction::Pause => "pause",
            FailureAction::Continue => "continue",
            FailureAction::Rollback => "rollback",
        }
    }
}

impl std::str::FromStr for FailureAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pause" => Ok(FailureAction::Pause),
            "continue" => Ok(FailureAction::Continue),
            "rollback" => Ok(FailureAction::Rollback),
            o => Err(format!(
                "invalid failure action {o:?}: expected pause, continue or rollback"
            )),
        }
    }
}

/// A rollout's pace and what stops it (Docker's UpdateConfig).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatePolicy {
    /// Slots replaced at once; 0: all of them.
    pub parallelism: u64,
    /// The wait after a batch runs before the next one starts.
    pub delay_ms: u64,
    pub order: UpdateOrder,
    pub failure_action: FailureAction,
    /// How long after its last task runs a rollout still watches for
    /// failures before it is complete.
    pub monitor_ms: u64,
    /// The share of failed new tasks that is tolerated, in millionths of
    /// the service's tasks (an integer, so that specs compare exactly).
    pub max_failure_ppm: u32,
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        UpdatePolicy {
            parallelism: 1,
            delay_ms: 0,
            order: UpdateOrder::StopFirst,
            failure_action: FailureAction::Pause,
            monitor_ms: 5_000,
            max_failure_ppm: 0,
        }
    }
}

impl UpdatePolicy {
    pub fn is_default(&self) -> bool {
        *self == UpdatePolicy::default()
    }
}

/// Where a service's rollout stands (Docker's UpdateStatus.State).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateState {
    Updating,
    Paused,
    Completed,
    RollbackStarted,
    RollbackPaused,
    RollbackCompleted,
}

impl UpdateState {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateState::Updating => "updating",
            UpdateState::Paused => "paused",
            UpdateState::Completed => "completed",
            UpdateState::RollbackStarted => "rollback_started",
            UpdateState::RollbackPaused => "rollback_paused",
            UpdateState::RollbackCompleted => "rollback_completed",
        }
    }

    /// A rollback, in whatever state.
    pub fn is_rollback(self) -> bool {
        matches!(
            self,
            UpdateState::RollbackStarted
                | UpdateState::RollbackPaused
                | UpdateState::RollbackCompleted
        )
    }

    /// Tasks are being replaced.
    pub fn in_progress(self) -> bool {
        matches!(self, UpdateState::Updating | UpdateState::RollbackStarted)
    }

    pub fn is_paused(self) -> bool {
        matches!(self, UpdateState::Paused | UpdateState::RollbackPaused)
    }
}

/// A service's last rollout: its state, when it started and ended, and
/// why it is where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    pub state: UpdateState,
    pub started_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub id: String,
    pub meta: Meta,
    pub spec: ServiceSpec,
    /// Bumped when the task spec changes, so the orchestrator can tell
    /// which tasks are out of date. Scaling alone does not bump it.
    pub spec_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_spec: Option<ServiceSpec>,
    /// Its virtual IP on each of its networks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vips: Vec<Vip>,
    /// Its last rollout, if its task spec ever changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_status: Option<UpdateStatus>,
    /// The tasks that `service rebalance` moves: out of date though their
    /// spec is current, so that they are replaced as an update replaces
    /// tasks (its policy, its progress), and their replacements placed
    /// where the fewest run. A new spec replaces them all anyway. Sorted;
    /// emptied when the rollout completes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rebalance: Vec<String>,
}

impl Service {
    /// The policy the current rollout follows: the rollback one while it
    /// rolls back.
    pub fn rollout_policy(&self) -> &UpdatePolicy {
        match &self.update_status {
            Some(u) if u.state.is_rollback() => &self.spec.rollback,
            _ => &self.spec.update,
        }
    }

    /// Puts `spec` in force, as `service update` does at `now_ms`: a change
    /// of the task spec is a new spec version (the old spec kept for a
    /// rollback) and starts a rollout; any other update resumes a paused
    /// rollout, its failures so far forgiven.
    pub fn set_spec(&mut self, spec: ServiceSpec, now_ms: i64) {
        if spec.task != self.spec.task {
            self.spec_version += 1;
            self.rebalance.clear();
            self.previous_spec = Some(std::mem::replace(&mut self.spec, spec));
            // A job does not roll: its new spec version is a new run.
            if self.spec.mode.is_job() {
                self.update_status = None;
                return;
            }
            self.update_status = Some(UpdateStatus {
                state: UpdateState::Updating,
                started_ms: now_ms,
                completed_ms: None,
                message: "update in progress".into(),
            });
            return;
        }
        self.spec = spec;
        if let Some(u) = self.update_status.as_mut().filter(|u| u.state.is_paused()) {
            let rollback = u.state.is_rollback();
            u.state = if rollback {
                UpdateState::RollbackStarted
            } else {
                UpdateState::Updating
            };
            u.started_ms = now_ms;
            u.message = format!("{} resumed", if rollback { "rollback" } else { "update" });
        }
    }

    /// This service rolled back: the previous spec in force again (a spec
    /// version of its own, so that the tasks of the spec it leaves are
    /// replaced), the one it leaves as the previous one (a rollback of a
    /// rollback goes forward again), and the rollout started at `now_ms`.
    /// None when there is no previous spec.
    pub fn rolled_back(&self, message: String, now_ms: i64) -> Option<Service> {
        let mut s = self.clone();
        let previous = s.previous_spec.take()?;
        s.previous_spec = Some(std::mem::replace(&mut s.spec, previous));
        s.spec_version += 1;
        s.rebalance.clear();
        s.update_status = Some(UpdateStatus {
            state: UpdateState::RollbackStarted,
            started_ms: now_ms,
            completed_ms: None,
            message,
        });
        Some(s)
    }

    /// Whether `task` runs the current spec: made from this spec version,
    /// or from an older one with the same content (a task that a rollback
    /// finds on the spec it goes back to is not replaced).
    /// A task that `service rebalance` moves is not.
    pub fn is_current(&self, task: &super::Task) -> bool {
        (task.spec_version == self.spec_version || task.spec == self.spec.task)
            && self.rebalance.binary_search(&task.id).is_err()
    }

    /// `service rebalance` at `now_ms`: these tasks move, as an update
    /// replaces tasks.
    pub fn rebalanced(&mut self, mut moves: Vec<String>, now_ms: i64) {
        // Sorted: `is_current` looks each task up in it, on every pass.
        moves.sort_unstable();
        self.rebalance = moves;
        self.update_status = Some(UpdateStatus {
            state: UpdateState::Updating,
            started_ms: now_ms,
            completed_ms: None,
            message: format!("rebalance in progress: {} tasks move", self.rebalance.len()),
        });
    }
}
