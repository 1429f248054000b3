//! Requests and responses of the control API, shared by the server and the
//! CLI. The row types are the `--format json` contract that scripts rely
//! on: change their keys only with care.

use serde::{Deserialize, Serialize};

use crate::types::{Node, Service, ServiceMode, Task};

#[derive(Debug, Serialize, Deserialize)]
pub struct InitRequest {
    /// The address other nodes should use; detected when absent.
    pub advertise: Option<String>,
    /// How long node certificates last.
    pub cert_expiry_ms: Option<u64>,
    /// Rebuild a one-manager cluster from this manager's state.
    #[serde(default)]
    pub force_new_cluster: bool,
    /// The pool node bridges and networks get subnets from (CIDR).
    #[serde(default)]
    pub addr_pool: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct InitResponse {
    pub cluster_id: String,
    pub node_id: String,
    pub advertise: String,
    pub worker_token: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Created {
    pub id: String,
    /// What the user should know although the write succeeded, such as an
    /// image that no node has (docker prints such warnings too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ServiceUpdate {
    pub image: Option<String>,
    pub env_add: Vec<String>,
    pub env_rm: Vec<String>,
    pub replicas: Option<u64>,
    /// Replicated jobs: how many tasks run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u64>,
    /// A new command and arguments (`--args`); empty: the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// A new entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// The image's entrypoint again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub entrypoint_reset: bool,
    /// Service labels `KEY=VALUE` to add or replace, and keys to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_rm: Vec<String>,
    /// Container labels, the same way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container_label_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container_label_rm: Vec<String>,
    /// Empty: the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Empty: the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period_ms: Option<u64>,
    /// `any`, `on-failure` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_delay_ms: Option<u64>,
    /// 0: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_max_attempts: Option<u64>,
    /// Networks to join and to leave, by name or id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_rm: Vec<String>,
    /// Secrets and configs to add (or replace, by name) and to remove, by
    /// name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_add: Vec<crate::api::spec::FileRefBody>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_rm: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_add: Vec<crate::api::spec::FileRefBody>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_rm: Vec<String>,
    /// Mounts to add (or replace, by target) and to remove, by target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_add: Vec<crate::api::spec::MountBody>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_rm: Vec<String>,
    /// Capabilities to add to the task's set and to drop from it (each
    /// also taken out of the other list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// Devices, privileged, groups, sysctls, ulimits, init, hostname.
    #[serde(flatten)]
    pub options: crate::api::options::OptionsPatch,
    /// Keep the new image's tag instead of pinning its digest.
    #[serde(default)]
    pub no_resolve_image: bool,
    /// Ports to publish (or publish anew, by published port and protocol).
    #[serde(default)]
    pub publish_add: Vec<crate::api::spec::PortBody>,
    /// Published ports to remove: `PORT` or `PORT/udp`.
    #[serde(default)]
    pub publish_rm: Vec<String>,
    /// `vip` or `dnsrr`.
    #[serde(default)]
    pub endpoint_mode: Option<String>,
    /// Changes to the update policy.
    #[serde(default)]
    pub update: crate::api::spec::PolicyPatch,
    /// Changes to the rollback policy.
    #[serde(default)]
    pub rollback: crate::api::spec::PolicyPatch,
    /// Replace every task, though the spec may not change.
    #[serde(default)]
    pub force: bool,
    /// Limits and reservations to set (0: none).
    #[serde(default)]
    pub resources: ResourcesPatch,
    /// Placement constraints to add, and to remove (by their text).
    #[serde(default)]
    pub constraint_add: Vec<String>,
    #[serde(default)]
    pub constraint_rm: Vec<String>,
    /// Placement preferences (`spread=node.labels.<key>`) to add, and to
    /// remove.
    #[serde(default)]
    pub placement_pref_add: Vec<String>,
    #[serde(default)]
    pub placement_pref_rm: Vec<String>,
    /// The most tasks per node (0: no limit).
    #[serde(default)]
    pub max_replicas_per_node: Option<u64>,
    /// Changes to the health check.
    #[serde(default)]
    pub health: HealthPatch,
}

/// Changes to a health check: `none` takes it away (not even the
/// image's), `cmd` sets the command; the rest change the check there is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HealthPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub none: bool,
}

impl HealthPatch {
    pub fn is_empty(&self) -> bool {
        self.cmd.is_none()
            && self.interval_ms.is_none()
            && self.timeout_ms.is_none()
            && self.retries.is_none()
            && self.start_period_ms.is_none()
            && !self.none
    }

    /// `check` with the patch applied, or why it cannot be.
    pub fn apply(
        &self,
        check: Option<crate::types::HealthCheck>,
    ) -> Result<Option<crate::types::HealthCheck>, String> {
        if self.is_empty() {
            return Ok(check);
        }
        if self.none {
            if self.cmd.is_some() {
                return Err("a health command and no health check at once".into());
            }
            return Ok(Some(crate::types::HealthCheck {
                test: vec!["NONE".into()],
                ..Default::default()
            }));
        }
        let mut c = match (check, &self.cmd) {
            (_, Some(cmd)) => crate::types::HealthCheck {
                test: vec!["CMD-SHELL".into(), cmd.clone()],
                ..Default::default()
            },
            (Some(c), None) if c.args().is_some() => c,
            _ => {
                return Err(
                    "the service has no health check to change: give a health command".into(),
                )
            }
        };
        if let Some(cmd) = &self.cmd {
            c.test = vec!["CMD-SHELL".into(), cmd.clone()];
        }
        if let Some(v) = self.interval_ms {
            c.interval_ms = v;
        }
        if let Some(v) = self.timeout_ms {
            c.timeout_ms = v;
        }
        if let Some(v) = self.retries {
            c.retries = v;
        }
        if let Some(v) = self.start_period_ms {
            c.start_period_ms = v;
        }
        Ok(Some(c))
    }
}

/// Changes to a task's resources: each field given replaces the stored one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResourcesPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_nano_cpus: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_pids: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve_nano_cpus: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve_memory_bytes: Option<u64>,
}

impl ResourcesPatch {
    pub fn apply(&self, r: &mut crate::types::Resources) {
        let set = |to: &mut u64, from: Option<u64>| {
            if let Some(v) = from {
                *to = v;
            }
        };
        set(&mut r.limit_nano_cpus, self.limit_nano_cpus);
        set(&mut r.limit_memory_bytes, self.limit_memory_bytes);
        set(&mut r.limit_pids, self.limit_pids);
        set(&mut r.reserve_nano_cpus, self.reserve_nano_cpus);
        set(&mut r.reserve_memory_bytes, self.reserve_memory_bytes);
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ScaleRequest {
    pub replicas: u64,
}

/// `image pull`: what to pull, and for which platform.
#[derive(Debug, Serialize, Deserialize)]
pub struct PullBody {
    pub image: String,
    /// `os/arch[/variant]`; default: the node's.
    #[serde(default)]
    pub platform: Option<String>,
}

/// One line of `image pull`'s answer: progress, then the result or the
/// error.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PullLine {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::executor::PullEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<crate::executor::Pulled>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ImageLoaded {
    pub images: Vec<String>,
}

/// One node's answer to `image ls|rm|prune --all-nodes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeImages {
    pub node_id: String,
    pub hostname: String,
    #[serde(flatten)]
    pub on: crate::types::ImagesOnNode,
    /// The node could not be asked, or refused (an image in use): why.
    #[serde(default)]
    pub error: Option<String>,
    /// With `error`: the node simply does not have the image to remove.
    #[serde(default)]
    pub not_found: bool,
}

/// Every error answer of the API, as the Docker Engine API writes it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// `error`: what daemons before this release wrote.
    #[serde(alias = "error")]
    pub message: String,
}

/// One line of `service logs`, as streamed (newline-delimited JSON).
#[derive(Debug, Serialize, Deserialize)]
pub struct LogEntry {
    /// `web.1.abc123@host`
    pub source: String,
    pub ts: String,
    /// `stdout` or `stderr`
    pub stream: String,
    pub line: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ServiceRow {
    pub id: String,
    pub name: String,
    pub mode: String,
    pub image: String,
    /// Desired count (replicated), or eligible nodes (global).
    pub replicas: u64,
    pub running: u64,
    /// Its last rollout's state (`updating`, `paused`, `completed`,
    /// `rollback_…`), if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_state: Option<String>,
    /// Jobs only: how many units (slots, nodes) of the current run have
    /// succeeded, of `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<u64>,
    /// Replicated jobs only: how many tasks may run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u64>,
}

impl ServiceRow {
    pub fn new(s: &Service, tasks: &[Task], global_target: u64) -> ServiceRow {
        let running = tasks
            .iter()
            .filter(|t| {
                t.desired_state == crate::types::TaskState::Running
                    && t.status.state == crate::types::TaskState::Running
            })
            .count() as u64;
        ServiceRow {
            id: s.id.clone(),
            name: s.spec.name.clone(),
            mode: s.spec.mode.name().to_string(),
            image: s.spec.task.container.image.clone(),
            replicas: s.spec.mode.count().unwrap_or(global_target),
            running,
            update_state: s
                .update_status
                .as_ref()
                .map(|u| u.state.as_str().to_string()),
            completed: s.spec.mode.is_job().then(|| {
                let done: std::collections::HashSet<(u64, Option<&str>)> = tasks
                    .iter()
                    .filter(|t| t.spec_version == s.spec_version && t.status.succeeded())
                    .map(|t| (t.slot, t.node_id.as_deref().filter(|_| t.slot == 0)))
                    .collect();
                done.len() as u64
            }),
            max_concurrent: match s.spec.mode {
                ServiceMode::ReplicatedJob { max_concurrent, .. } => Some(max_concurrent),
                _ => None,
            },
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TaskRow {
    pub id: String,
    /// `service.slot`
    pub name: String,
    pub service: String,
    pub slot: u64,
    /// The node's hostname, or null while unassigned.
    pub node: Option<String>,
    pub node_id: Option<String>,
    pub desired_state: String,
    pub state: String,
    pub message: String,
    pub error: Option<String>,
    pub container_id: Option<String>,
    pub exit_code: Option<i32>,
    /// When the node last reported (ms since epoch).
    pub updated_ms: i64,
    /// The image the task runs: `name:tag@digest` when pinned.
    #[serde(default)]
    pub image: String,
    /// The task's addresses on its networks (none on the host's network).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// It runs the service's current spec (what a rollout waits for).
    #[serde(default)]
    pub up_to_date: bool,
    /// How many tasks of its slot (or node) ran before it, as the restart
    /// policy replaced them (`--restart-max-attempts` counts these).
    #[serde(default)]
    pub restarts: u64,
    /// Its health check's verdict (`starting`, `healthy`, `unhealthy`) and
    /// the start of the last check's output, when it has a check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_output: Option<String>,
}

impl TaskRow {
    /// `service`: its service, None when that is gone.
    pub fn new(t: &Task, service: Option<&Service>, nodes: &[Node]) -> TaskRow {
        let node = t.node_id.as_ref().map(|id| {
            nodes
                .iter()
                .find(|n| &n.id == id)
                .map(|n| n.description.hostname.clone())
                .unwrap_or_else(|| id.clone())
        });
        TaskRow {
            id: t.id.clone(),
            name: t.display_name(),
            service: t.service_name.clone(),
            slot: t.slot,
            node,
            node_id: t.node_id.clone(),
            desired_state: t.desired_state.to_string(),
            state: t.status.state.to_string(),
            message: t.status.message.clone(),
            error: t.status.error.clone(),
            container_id: t.status.container_id.clone(),
            exit_code: t.status.exit_code,
            updated_ms: t.status.timestamp_ms,
            image: match &t.spec.container.image_digest {
                Some(d) => format!("{}@{d}", t.spec.container.image),
                None => t.spec.container.image.clone(),
            },
            addresses: t.status.addresses.clone(),
            up_to_date: service.is_some_and(|s| s.is_current(t)),
            restarts: t.restarts,
            health: t.status.health.clone(),
            health_output: t.status.health_output.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct NodeRow {
    pub id: String,
    pub hostname: String,
    pub role: String,
    pub status: String,
    /// Why it has that status (a missed heartbeat, a restart it announced).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub availability: String,
    pub leader: bool,
    /// `leader`, `reachable`, `unreachable`, or null for workers.
    pub manager_status: Option<String>,
    pub platform: String,
    pub addr: String,
    pub version: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub images: Vec<crate::types::ImageInfo>,
    /// Why the node's agent cannot reach its container runtime, while it
    /// cannot (the node is then given no new task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_error: Option<String>,
    /// The subnet of the node's bridge, which its tasks get addresses from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_subnet: Option<String>,
    /// Its devices (what `--device` may name), as it reports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// The names of its named volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
}

/// The Raft as the serving manager sees it: who leads, and who is in the
/// membership (node ids).
#[derive(Debug, Default)]
pub struct RaftView {
    pub leader: Option<String>,
    pub members: Vec<String>,
}

impl NodeRow {
    pub fn new(n: &Node, raft: &RaftView) -> NodeRow {
        let leader = n.is_manager() && raft.leader.as_deref() == Some(n.id.as_str());
        // A manager outside the membership (lost in a forced new cluster,
        // or not added yet) is unreachable whatever its heartbeats say.
        let member = raft.members.contains(&n.id);
        NodeRow {
            id: n.id.clone(),
            hostname: n.description.hostname.clone(),
            role: n.spec.role.as_str().to_string(),
            status: n.status.state.as_str().to_string(),
            message: n.status.message.clone(),
            availability: n.spec.availability.as_str().to_string(),
            leader,
            manager_status: n
                .is_manager()
                .then(|| manager_status(leader, member, n.status.state).to_string()),
            platform: n.description.platform.to_string(),
            addr: n.status.addr.clone(),
            version: n.version.clone(),
            labels: n.spec.labels.clone(),
            cpus: n.description.cpus,
            memory_bytes: n.description.memory_bytes,
            images: n.description.images.clone(),
            runtime_error: n.description.runtime_error.clone(),
            bridge_subnet: n.bridge_subnet.clone(),
            devices: n.description.devices.clone(),
            volumes: n.description.volumes.clone(),
        }
    }
}

/// A manager is reachable while it is a Raft member and the leader hears
/// its heartbeats.
fn manager_status(leader: bool, member: bool, state: crate::types::NodeState) -> &'static str {
    match (leader, state) {
        (true, _) => "leader",
        (false, crate::types::NodeState::Ready) if member => "reachable",
        _ => "unreachable",
    }
}
