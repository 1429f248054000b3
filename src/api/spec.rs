//! The control API's own shape of a service: what `POST /v1/services` takes
//! and what `service inspect` and `service update` answer. It is apart from
//! the stored `ServiceSpec`, so the JSON contract does not move when the
//! stored types do (a stored field appears here only when it is added
//! here), and it speaks as `service ls` does: lowercase words, durations
//! in milliseconds, omitted fields taking the CLI's defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::types::*;

/// A service spec, flat: one key per `service create` flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpecBody {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `replicated` (the default), `global`, `replicated-job` or
    /// `global-job`.
    #[serde(default = "replicated")]
    pub mode: String,
    /// Replicated services: how many tasks (default 1); replicated jobs:
    /// how many successful runs in all (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u64>,
    /// Replicated jobs only: how many tasks run at once (default: all of
    /// `replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u64>,
    /// An image reference; normalized as docker does.
    pub image: String,
    /// Labels of the containers (not of the service).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub container_labels: BTreeMap<String, String>,
    /// Replaces the image's Entrypoint (and drops its Cmd). Absent: the
    /// image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Command and arguments. Empty: the image's entrypoint and cmd.
    #[serde(default)]
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs, in order.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub workdir: Option<String>,
    /// A user name or `uid[:gid]`.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(default = "default_stop_grace_ms")]
    pub stop_grace_period_ms: u64,
    /// `any`, `on-failure` or `none`. Absent or empty: `any`, and
    /// `on-failure` for jobs.
    #[serde(default)]
    pub restart_condition: String,
    #[serde(default = "default_restart_delay_ms")]
    pub restart_delay_ms: u64,
    /// Absent: unlimited.
    #[serde(default)]
    pub restart_max_attempts: Option<u64>,
    /// Placement constraints such as `node.labels.zone==a`.
    #[serde(default)]
    pub constraints: Vec<String>,
    /// Placement preferences, `spread=node.labels.<key>`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement_prefs: Vec<String>,
    /// At most this many tasks on one node; 0 or absent: no limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_replicas_per_node: u64,
    /// `missing` (the default), `always` or `never`: when a node pulls the
    /// image.
    #[serde(default = "missing")]
    pub pull: String,
    /// The digest the tag was pinned to (answers only: a create or update
    /// resolves it, unless `no_resolve_image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The image's platforms as the registry listed them (answers only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_platforms: Vec<String>,
    /// Requests only: keep the tag, do not ask the registry for its digest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_resolve_image: bool,
    /// The networks the tasks join, by name or id (answers: by id).
    /// Empty: a network namespace of their own on the node's bridge.
    /// `["host"]`: the node's own network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    /// More names the tasks answer to, per network of `networks` (as
    /// named there): a stack gives each service its short name (`db`) on
    /// the stack's networks.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub network_aliases: BTreeMap<String, Vec<String>>,
    /// Ports published on the nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortBody>,
    /// How other tasks reach the service by name: `vip` (the default: its
    /// virtual IP) or `dnsrr` (its tasks' addresses).
    #[serde(default = "vip")]
    pub endpoint_mode: String,
    /// A health check: `{test: ["CMD-SHELL", "cmd"], interval_ms,
    /// timeout_ms, retries, start_period_ms}` (`["NONE"]`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthCheck>,
    /// Cgroup limits and reservations (`limit_nano_cpus`,
    /// `limit_memory_bytes`, `limit_pids`, `reserve_nano_cpus`,
    /// `reserve_memory_bytes`; 0 or absent: none).
    #[serde(default, skip_serializing_if = "Resources::is_none")]
    pub resources: Resources,
    /// Secrets its tasks get as files (`--secret`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileRefBody>,
    /// Configs its tasks get as files (`--config`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileRefBody>,
    /// Binds and tmpfs (`--mount`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountBody>,
    /// Capabilities beyond docker's default set, and taken from it
    /// (`NET_ADMIN`, `CAP_SYS_RAWIO`, `ALL`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// A read-only root filesystem.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Devices, privileged, groups, sysctls, ulimits, init, hostname.
    #[serde(flatten)]
    pub options: super::options::OptionsBody,
    /// How a change of the spec rolls out.
    #[serde(default)]
    pub update: PolicyBody,
    /// How a rollback rolls out.
    #[serde(default)]
    pub rollback: PolicyBody,
    /// Services (by name) whose tasks must meet a condition before any
    /// task of this one is placed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<DependsOnBody>,
}

/// One of `depends_on`: a service's name and `service_started`,
/// `service_healthy` or `service_completed_successfully`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependsOnBody {
    pub service: String,
    #[serde(default = "started")]
    pub condition: String,
}

fn started() -> String {
    "service_started".into()
}

/// A mount, as `--mount type=bind,source=/srv/x,target=/data,readonly`
/// (or `type=volume,source=pgdata,target=/data`) gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MountBody {
    /// `bind`, `volume` or `tmpfs`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub readonly: bool,
    /// Tmpfs: bytes; 0: the kernel's default.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tmpfs_size: u64,
    /// Tmpfs: the mode of its root (default 1777).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_mode: Option<u32>,
    /// Volume: `local`, the only driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_driver: Option<String>,
}

impl MountBody {
    fn into_mount(self) -> Result<Mount, ApiError> {
        let bad = |m: String| Err(ApiError::BadRequest(m));
        let target = clean_path(&self.target)
            .map_err(|e| ApiError::BadRequest(format!("invalid mount target: {e}")))?;
        let kind = match self.kind.as_str() {
            "bind" => MountKind::Bind,
            "tmpfs" => MountKind::Tmpfs,
            "volume" => MountKind::Volume,
            other => {
                return bad(format!(
                    "invalid mount type {other:?}: expected bind, volume or tmpfs"
                ))
            }
        };
        if !matches!(self.volume_driver.as_deref(), None | Some("local"))
            || (kind != MountKind::Volume && self.volume_driver.is_some())
        {
            return bad("volume-driver: only local, and only for type=volume".into());
        }
        let source = match kind {
            MountKind::Bind => clean_path(&self.source)
                .map_err(|e| ApiError::BadRequest(format!("invalid bind source: {e}")))?,
            MountKind::Volume if self.source.is_empty() => {
                return bad(format!(
                    "a volume mount needs a name: type=volume,source=NAME,target={target}"
                ))
            }
            MountKind::Volume => {
                check_volume_name(&self.source).map_err(ApiError::BadRequest)?;
                self.source
            }
            MountKind::Tmpfs if !self.source.is_empty() => {
                return bad(format!("a tmpfs has no source (got {:?})", self.source))
            }
            MountKind::Tmpfs => String::new(),
        };
        if kind != MountKind::Tmpfs && (self.tmpfs_size > 0 || self.tmpfs_mode.is_some()) {
            return bad("tmpfs-size and tmpfs-mode are for type=tmpfs".into());
        }
        if self.tmpfs_mode.is_some_and(|m| m > 0o7777) {
            return bad(format!(
                "invalid tmpfs mode {:o}",
                self.tmpfs_mode.unwrap_or(0)
            ));
        }
        Ok(Mount {
            kind,
            source,
            target,
            readonly: self.readonly,
            tmpfs_size: self.tmpfs_size,
            tmpfs_mode: self.tmpfs_mode,
        })
    }
}

impl From<&Mount> for MountBody {
    fn from(m: &Mount) -> Self {
        MountBody {
            kind: m.kind.as_str().into(),
            source: m.source.clone(),
            target: m.target.clone(),
            readonly: m.readonly,
            tmpfs_size: m.tmpfs_size,
            tmpfs_mode: m.tmpfs_mode,
            volume_driver: None,
        }
    }
}

/// Capability names as the spec keeps them (`CAP_…`), each once.
pub fn caps(list: &[String]) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::new();
    for c in list {
        let c = normalize_cap(c).map_err(ApiError::BadRequest)?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// Mounts as the stored spec keeps them, each checked, one per target.
pub fn mounts(list: Vec<MountBody>) -> Result<Vec<Mount>, ApiError> {
    let mut out: Vec<Mount> = Vec::new();
    for m in list {
        let m = m.into_mount()?;
        if out.iter().any(|o| o.target == m.target) {
            return Err(ApiError::BadRequest(format!(
                "two mounts have the target {}",
                m.target
            )));
        }
        out.push(m);
    }
    Ok(out)
}

/// A task's use of a secret or a config (`--secret source=db_pw,target=pw,
/// uid=0,gid=0,mode=0400`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRefBody {
    /// Its name (or id).
    pub source: String,
    /// The file in the container: absolute, or (secrets) a name under
    /// `/run/secrets`. Default: the name (secrets), `/NAME` (configs).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    /// The file's mode; default 0444 (read by anyone in the task).
    #[serde(default = "default_file_mode")]
    pub mode: u32,
    /// Answers only: the id of the one it names.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
}

fn default_file_mode() -> u32 {
    0o444
}

impl FileRefBody {
    fn into_ref(self) -> Result<FileRef, ApiError> {
        if self.mode > 0o777 {
            return Err(ApiError::BadRequest(format!(
                "invalid file mode {:o} for {}: at most 0777",
                self.mode, self.source
            )));
        }
        let t = &self.target;
        let bad_part = t.split('/').any(|p| p == "..") || t.contains('\0');
        if self.source.is_empty() || bad_part || (t.ends_with('/') && !t.is_empty()) {
            return Err(ApiError::BadRequest(format!(
                "invalid source or target in {}:{t}: a name, and a file path without '..'",
                self.source
            )));
        }
        Ok(FileRef {
            // Resolved by the handler from the name.
            id: String::new(),
            name: self.source,
            target: self.target,
            uid: self.uid,
            gid: self.gid,
            mode: self.mode,
        })
    }
}

impl From<&FileRef> for FileRefBody {
    fn from(f: &FileRef) -> Self {
        FileRefBody {
            source: f.name.clone(),
            target: f.target.clone(),
            uid: f.uid,
            gid: f.gid,
            mode: f.mode,
            id: f.id.clone(),
        }
    }
}

/// References as the stored spec keeps them, each checked.
pub fn file_refs(list: Vec<FileRefBody>) -> Result<Vec<FileRef>, ApiError> {
    list.into_iter().map(FileRefBody::into_ref).collect()
}

/// An update or rollback policy, in the words of `service inspect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyBody {
    /// Tasks replaced at once; 0: all.
    pub parallelism: u64,
    pub delay_ms: u64,
    /// `stop-first` or `start-first`.
    pub order: String,
    /// `pause`, `continue` or `rollback`.
    pub failure_action: String,
    pub monitor_ms: u64,
    /// The share of new tasks that may fail, 0 to 1.
    pub max_failure_ratio: f64,
}

impl Default for PolicyBody {
    fn default() -> Self {
        (&UpdatePolicy::default()).into()
    }
}

/// The longest `delay` and `monitor` a policy takes.
const POLICY_MAX_MS: u64 = 24 * 3600 * 1000;

impl PolicyBody {
    /// The stored policy, or why this is not one; `what` is `update` or
    /// `rollback`, for the errors.
    pub fn into_policy(self, what: &str) -> Result<UpdatePolicy, ApiError> {
        let bad = |m: String| ApiError::BadRequest(format!("{what} policy: {m}"));
        let order = self.order.parse().map_err(bad)?;
        let failure_action: FailureAction = self.failure_action.parse().map_err(bad)?;
        if what == "rollback" && failure_action == FailureAction::Rollback {
            return Err(bad(
                "a rollback cannot roll back on failure: pause or continue".into(),
            ));
        }
        for (name, ms) in [("delay", self.delay_ms), ("monitor", self.monitor_ms)] {
            if ms > POLICY_MAX_MS {
                return Err(bad(format!("{name} is {ms} ms: at most 24 h")));
            }
        }
        let ratio = self.max_failure_ratio;
        if !(0.0..=1.0).contains(&ratio) {
            return Err(bad(format!("max failure ratio {ratio}: expected 0 to 1")));
        }
        Ok(UpdatePolicy {
            parallelism: self.parallelism,
            delay_ms: self.delay_ms,
            order,
            failure_action,
            monitor_ms: self.monitor_ms,
            max_failure_ppm: (ratio * 1_000_000.0).round() as u32,
        })
    }
}

impl From<&UpdatePolicy> for PolicyBody {
    fn from(p: &UpdatePolicy) -> PolicyBody {
        PolicyBody {
            parallelism: p.parallelism,
            delay_ms: p.delay_ms,
            order: p.order.as_str().into(),
            failure_action: p.failure_action.as_str().into(),
            monitor_ms: p.monitor_ms,
            max_failure_ratio: f64::from(p.max_failure_ppm) / 1_000_000.0,
        }
    }
}

/// Changes to a policy: each field given replaces the stored one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PolicyPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failure_ratio: Option<f64>,
}

impl PolicyPatch {
    /// `policy` with the patch's fields, checked as a whole.
    pub fn apply(self, policy: &UpdatePolicy, what: &str) -> Result<UpdatePolicy, ApiError> {
        self.onto(policy.into()).into_policy(what)
    }

    /// `body` with the patch's fields (unchecked).
    pub fn onto(self, mut body: PolicyBody) -> PolicyBody {
        if let Some(v) = self.parallelism {
            body.parallelism = v;
        }
        if let Some(v) = self.delay_ms {
            body.delay_ms = v;
        }
        if let Some(v) = self.order {
            body.order = v;
        }
        if let Some(v) = self.failure_action {
            body.failure_action = v;
        }
        if let Some(v) = self.monitor_ms {
            body.monitor_ms = v;
        }
        if let Some(v) = self.max_failure_ratio {
            body.max_failure_ratio = v;
        }
        body
    }
}

/// A service's last rollout, as `service inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatusBody {
    /// `updating`, `paused`, `completed`, `rollback_started`,
    /// `rollback_paused` or `rollback_completed`.
    pub state: String,
    pub started_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_ms: Option<i64>,
    #[serde(default)]
    pub message: String,
}

impl From<&UpdateStatus> for UpdateStatusBody {
    fn from(u: &UpdateStatus) -> UpdateStatusBody {
        UpdateStatusBody {
            state: u.state.as_str().into(),
            started_ms: u.started_ms,
            completed_ms: u.completed_ms,
            message: u.message.clone(),
        }
    }
}

fn vip() -> String {
    EndpointMode::Vip.as_str().into()
}

/// A published port as `--publish` gives it and `service inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBody {
    pub published: u16,
    pub target: u16,
    /// `tcp` (the default) or `udp`.
    #[serde(default = "tcp")]
    pub protocol: String,
    /// `ingress` (the default) or `host`.
    #[serde(default = "ingress")]
    pub mode: String,
}

fn tcp() -> String {
    "tcp".into()
}
fn ingress() -> String {
    "ingress".into()
}

impl PortBody {
    pub fn into_config(self) -> Result<PortConfig, ApiError> {
        let bad = |m: String| Err(ApiError::BadRequest(m));
        let Some(protocol) = Protocol::parse(&self.protocol) else {
            return bad(format!(
                "invalid protocol {:?}: expected tcp or udp",
                self.protocol
            ));
        };
        let Some(mode) = PublishMode::parse(&self.mode) else {
            return bad(format!(
                "invalid publish mode {:?}: expected ingress or host",
                self.mode
            ));
        };
        if self.published == 0 || self.target == 0 {
            return bad("a published port and its target are 1 to 65535".into());
        }
        Ok(PortConfig {
            protocol,
            target: self.target,
            published: self.published,
            mode,
        })
    }
}

impl From<&PortConfig> for PortBody {
    fn from(p: &PortConfig) -> PortBody {
        PortBody {
            published: p.published,
            target: p.target,
            protocol: p.protocol.as_str().into(),
            mode: p.mode.as_str().into(),
        }
    }
}

/// The name that asks for the node's own network.
pub const HOST_NETWORK: &str = "host";

fn missing() -> String {
    "missing".into()
}

fn replicated() -> String {
    "replicated".into()
}
fn default_stop_grace_ms() -> u64 {
    10_000
}
fn default_restart_delay_ms() -> u64 {
    RestartPolicy::default().delay_ms
}

/// A stored service, as `service inspect` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceBody {
    pub id: String,
    /// The store's version of the last write.
    pub version: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub spec: ServiceSpecBody,
    /// Bumped when the task spec changes (scaling alone does not).
    pub spec_version: u64,
    /// The spec before the last update, for rollback.
    pub previous_spec: Option<ServiceSpecBody>,
    /// What the user should know about the write that returned this,
    /// although it succeeded (an image no node has). Never stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Its virtual IP on each of its networks (network id and address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vips: Vec<Vip>,
    /// Its last rollout, if its spec ever changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_status: Option<UpdateStatusBody>,
    /// The tasks (ids) that a `service rebalance` in progress moves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rebalance: Vec<String>,
}

impl ServiceSpecBody {
    /// The stored spec, or why this one is not one. Further checks
    /// (names, env, constraints) are `validate::service_spec`'s.
    pub fn into_spec(mut self) -> Result<ServiceSpec, ApiError> {
        let bad = |m: String| Err(ApiError::BadRequest(m));
        let options = std::mem::take(&mut self.options);
        let mode = match (self.mode.as_str(), self.replicas) {
            ("replicated", n) => ServiceMode::Replicated {
                replicas: n.unwrap_or(1),
            },
            ("global" | "global-job", Some(_)) => {
                return bad("replicas can only be set for a replicated service or job".into())
            }
            ("global", None) => ServiceMode::Global,
            ("global-job", None) => ServiceMode::GlobalJob,
            ("replicated-job", n) => {
                let completions = n.unwrap_or(1);
                ServiceMode::ReplicatedJob {
                    completions,
                    max_concurrent: self.max_concurrent.unwrap_or(completions),
                }
            }
            (other, _) => {
                return bad(format!(
                    "invalid mode {other:?}: expected \"replicated\", \"global\", \"replicated-job\" or \"global-job\""
                ))
            }
        };
        if self.max_concurrent.is_some() && !matches!(mode, ServiceMode::ReplicatedJob { .. }) {
            return bad("max_concurrent can only be set for a replicated job".into());
        }
        let condition = match self.restart_condition.as_str() {
            "" if mode.is_job() => RestartCondition::OnFailure,
            "" => RestartCondition::Any,
            c => c.parse().map_err(ApiError::BadRequest)?,
        };
        let pull: PullPolicy = self.pull.parse().map_err(ApiError::BadRequest)?;
        let endpoint_mode: EndpointMode =
            self.endpoint_mode.parse().map_err(ApiError::BadRequest)?;
        let mut container = ContainerSpec {
            image: self.image,
            // Resolved by the handler, never taken from the client.
            image_digest: None,
            image_platforms: Vec::new(),
            pull,
            args: self.args,
            env: self.env,
            workdir: self.workdir,
            user: self.user,
            labels: self.container_labels,
            stop_signal: self.stop_signal,
            stop_grace_period_ms: self.stop_grace_period_ms,
            cap_add: caps(&self.cap_add)?,
            cap_drop: caps(&self.cap_drop)?,
            read_only: self.read_only,
            entrypoint: self.entrypoint,
            ..Default::default()
        };
        options.apply(&mut container)?;
        Ok(ServiceSpec {
            name: self.name,
            labels: self.labels,
            mode,
            endpoint_mode,
            update: self.update.into_policy("update")?,
            rollback: self.rollback.into_policy("rollback")?,
            depends_on: dependencies(self.depends_on)?,
            task: TaskSpec {
                container,
                restart: RestartPolicy {
                    condition,
                    delay_ms: self.restart_delay_ms,
                    max_attempts: self.restart_max_attempts,
                },
                placement: Placement {
                    constraints: self.constraints,
                    spread: spread_prefs(self.placement_prefs)?,
                    max_replicas_per_node: self.max_replicas_per_node,
                },
                network: network_mode(self.networks, self.network_aliases)?,
                ports: ports(self.ports)?,
                force_update: 0,
                resources: self.resources,
                health: self.healthcheck,
                secrets: file_refs(self.secrets)?,
                configs: file_refs(self.configs)?,
                mounts: mounts(self.mounts)?,
            },
        })
    }
}

impl From<&ServiceSpec> for ServiceSpecBody {
    fn from(s: &ServiceSpec) -> ServiceSpecBody {
        let c = &s.task.container;
        let r = &s.task.restart;
        ServiceSpecBody {
            name: s.name.clone(),
            labels: s.labels.clone(),
            mode: s.mode.name().to_string(),
            replicas: s.mode.count(),
            max_concurrent: match s.mode {
                ServiceMode::ReplicatedJob { max_concurrent, .. } => Some(max_concurrent),
                _ => None,
            },
            image: c.image.clone(),
            container_labels: c.labels.clone(),
            entrypoint: c.entrypoint.clone(),
            args: c.args.clone(),
            env: c.env.clone(),
            workdir: c.workdir.clone(),
            user: c.user.clone(),
            stop_signal: c.stop_signal.clone(),
            stop_grace_period_ms: c.stop_grace_period_ms,
            restart_condition: r.condition.as_str().to_string(),
            restart_delay_ms: r.delay_ms,
            restart_max_attempts: r.max_attempts,
            constraints: s.task.placement.constraints.clone(),
            placement_prefs: s
                .task
                .placement
                .spread
                .iter()
                .map(|l| format!("spread={l}"))
                .collect(),
            max_replicas_per_node: s.task.placement.max_replicas_per_node,
            pull: c.pull.as_str().to_string(),
            image_digest: c.image_digest.clone(),
            image_platforms: c.image_platforms.clone(),
            no_resolve_image: false,
            networks: match &s.task.network {
                NetworkMode::Host => vec![HOST_NETWORK.to_string()],
                NetworkMode::Own(_) => s.task.network.network_ids().map(String::from).collect(),
            },
            network_aliases: match &s.task.network {
                NetworkMode::Host => BTreeMap::new(),
                NetworkMode::Own(list) => list
                    .iter()
                    .filter(|a| !a.aliases.is_empty())
                    .map(|a| (a.network.clone(), a.aliases.clone()))
                    .collect(),
            },
            ports: s.task.ports.iter().map(PortBody::from).collect(),
            endpoint_mode: s.endpoint_mode.as_str().into(),
            resources: s.task.resources,
            healthcheck: s.task.health.clone(),
            secrets: s.task.secrets.iter().map(Into::into).collect(),
            configs: s.task.configs.iter().map(Into::into).collect(),
            mounts: s.task.mounts.iter().map(Into::into).collect(),
            cap_add: c.cap_add.clone(),
            cap_drop: c.cap_drop.clone(),
            read_only: c.read_only,
            options: c.into(),
            update: (&s.update).into(),
            rollback: (&s.rollback).into(),
            depends_on: s
                .depends_on
                .iter()
                .map(|d| DependsOnBody {
                    service: d.service.clone(),
                    condition: d.condition.as_str().into(),
                })
                .collect(),
        }
    }
}

/// `depends_on` as the spec keeps it: each service once.
fn dependencies(list: Vec<DependsOnBody>) -> Result<Vec<Dependency>, ApiError> {
    let mut out: Vec<Dependency> = Vec::new();
    for d in list {
        if d.service.is_empty() {
            return Err(ApiError::BadRequest(
                "depends_on: a service name is empty".into(),
            ));
        }
        if out.iter().any(|o| o.service == d.service) {
            return Err(ApiError::BadRequest(format!(
                "depends_on names {} twice",
                d.service
            )));
        }
        out.push(Dependency {
            condition: d.condition.parse().map_err(ApiError::BadRequest)?,
            service: d.service,
        });
    }
    Ok(out)
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `spread=node.labels.zone` preferences as the spec keeps them
/// (`node.labels.zone`), each checked.
pub fn spread_prefs(prefs: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::new();
    for p in prefs {
        let label = p.strip_prefix("spread=").ok_or_else(|| {
            ApiError::BadRequest(format!(
                "invalid placement preference {p:?}: expected spread=node.labels.<key>"
            ))
        })?;
        Placement::spread_key(label).map_err(ApiError::BadRequest)?;
        if !out.iter().any(|o| o == label) {
            out.push(label.to_string());
        }
    }
    Ok(out)
}

/// The published ports, each (protocol, port) once.
pub fn ports(list: Vec<PortBody>) -> Result<Vec<PortConfig>, ApiError> {
    let mut out: Vec<PortConfig> = Vec::new();
    for p in list {
        let p = p.into_config()?;
        if out
            .iter()
            .any(|o| o.published == p.published && o.protocol == p.protocol)
        {
            return Err(ApiError::BadRequest(format!(
                "port {}/{} is published twice",
                p.published,
                p.protocol.as_str()
            )));
        }
        out.push(p);
    }
    Ok(out)
}

/// The tasks' network mode as the request names it. The networks are
/// still names here; the handler resolves them to ids
/// (`services::resolve_networks`).
fn network_mode(
    names: Vec<String>,
    mut aliases: BTreeMap<String, Vec<String>>,
) -> Result<NetworkMode, ApiError> {
    if let Some(n) = aliases.keys().find(|n| !names.contains(n)) {
        return Err(ApiError::BadRequest(format!(
            "aliases are given for network {n}, which the service is not on"
        )));
    }
    for a in aliases.values().flatten() {
        let ok = !a.is_empty()
            && a.len() <= 63
            && a.starts_with(|c: char| c.is_ascii_alphanumeric())
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
        if !ok {
            return Err(ApiError::BadRequest(format!(
                "invalid network alias {a:?}: use 1-63 letters, digits, '-' or '_'"
            )));
        }
    }
    if names.iter().any(|n| n == HOST_NETWORK) {
        if names.len() > 1 {
            return Err(ApiError::BadRequest(
                "the host network cannot be combined with other networks".into(),
            ));
        }
        return Ok(NetworkMode::Host);
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut list = Vec::new();
    for n in names {
        if n.is_empty() {
            return Err(ApiError::BadRequest("a network name is empty".into()));
        }
        if !seen.insert(n.clone()) {
            return Err(ApiError::BadRequest(format!("network {n} is given twice")));
        }
        list.push(NetworkAttachment {
            aliases: aliases.remove(&n).unwrap_or_default(),
            network: n,
        });
    }
    Ok(NetworkMode::Own(list))
}

impl From<&Service> for ServiceBody {
    fn from(s: &Service) -> ServiceBody {
        ServiceBody {
            id: s.id.clone(),
            version: s.meta.version,
            created_ms: s.meta.created_ms,
            updated_ms: s.meta.updated_ms,
            spec: (&s.spec).into(),
            spec_version: s.spec_version,
            previous_spec: s.previous_spec.as_ref().map(Into::into),
            warnings: Vec::new(),
            vips: s.vips.clone(),
            update_status: s.update_status.as_ref().map(Into::into),
            rebalance: s.rebalance.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(json: &str) -> Result<ServiceSpec, ApiError> {
        serde_json::from_str::<ServiceSpecBody>(json)
            .unwrap()
            .into_spec()
    }

    #[test]
    fn omitted_fields_take_the_cli_defaults() {
        let spec = minimal(r#"{"name":"web","image":"busybox"}"#).unwrap();
        assert_eq!(spec.mode, ServiceMode::Replicated { replicas: 1 });
        assert_eq!(spec.task.restart, RestartPolicy::default());
        assert_eq!(spec.task.container.stop_grace_period_ms, 10_000);
    }

    #[test]
    fn a_spec_shows_as_it_was_given() {
        let body = ServiceSpecBody {
            name: "edge".into(),
            labels: BTreeMap::from([("team".into(), "a".into())]),
            mode: "global".into(),
            replicas: None,
            max_concurrent: None,
            container_labels: BTreeMap::from([("c".to_string(), "d".to_string())]),
            image: "docker.io/library/busybox:latest".into(),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            args: vec!["sleep".into(), "1".into()],
            env: vec!["A=1".into()],
            workdir: Some("/tmp".into()),
            user: Some("app".into()),
            stop_signal: Some("SIGINT".into()),
            stop_grace_period_ms: 2_000,
            restart_condition: "on-failure".into(),
            restart_delay_ms: 1_000,
            restart_max_attempts: Some(3),
            constraints: vec!["node.role==manager".into()],
            placement_prefs: vec!["spread=node.labels.zone".into()],
            max_replicas_per_node: 2,
            pull: "always".into(),
            image_digest: None,
            image_platforms: vec![],
            no_resolve_image: false,
            endpoint_mode: "dnsrr".into(),
            networks: vec!["host".into()],
            ports: vec![],
            healthcheck: Some(HealthCheck {
                test: vec!["CMD-SHELL".into(), "true".into()],
                ..HealthCheck::default()
            }),
            resources: Resources {
                limit_memory_bytes: 64 << 20,
                reserve_nano_cpus: 250_000_000,
                ..Resources::default()
            },
            secrets: vec![FileRefBody {
                source: "pw".into(),
                target: "/etc/pw".into(),
                uid: 1,
                gid: 2,
                mode: 0o400,
                id: String::new(),
            }],
            configs: vec![],
            cap_add: vec!["CAP_NET_ADMIN".into()],
            cap_drop: vec!["ALL".into()],
            read_only: true,
            mounts: vec![MountBody {
                kind: "tmpfs".into(),
                source: String::new(),
                target: "/scratch".into(),
                readonly: false,
                tmpfs_size: 16 << 20,
                tmpfs_mode: Some(0o1770),
                volume_driver: None,
            }],
            options: super::super::options::OptionsBody {
                devices: vec!["/dev/ttyUSB0:/dev/serial:rw".into()],
                privileged: true,
                group_add: vec!["dialout".into()],
                sysctls: BTreeMap::from([("kernel.shmmax".into(), "4096".into())]),
                ulimits: vec!["nofile=1024:2048".into()],
                init: true,
                hostname: Some("{{.Node.Hostname}}-{{.Task.Slot}}".into()),
            },
            update: PolicyBody {
                parallelism: 2,
                delay_ms: 5_000,
                order: "start-first".into(),
                failure_action: "rollback".into(),
                monitor_ms: 10_000,
                max_failure_ratio: 0.2,
            },
            rollback: PolicyBody::default(),
            depends_on: vec![DependsOnBody {
                service: "db".into(),
                condition: "service_healthy".into(),
            }],
            network_aliases: BTreeMap::new(),
        };
        let spec = body.clone().into_spec().unwrap();
        assert_eq!(ServiceSpecBody::from(&spec), body);
        let mut aliased = body.clone();
        aliased.networks = vec!["front".into(), "back".into()];
        aliased.network_aliases = BTreeMap::from([("front".into(), vec!["web".into()])]);
        let spec = aliased.clone().into_spec().unwrap();
        assert_eq!(spec.task.network.aliases_on("front"), ["web".to_string()]);
        assert_eq!(ServiceSpecBody::from(&spec), aliased);
        aliased.network_aliases = BTreeMap::from([("other".into(), vec!["web".into()])]);
        assert!(aliased.into_spec().is_err());
        // The same words as `service ls`.
        let json = serde_json::to_string(&body).unwrap();
        assert!(json.contains(r#""mode":"global""#), "{json}");
        assert!(
            json.contains(r#""restart_condition":"on-failure""#),
            "{json}"
        );
    }

    #[test]
    fn bad_words_are_refused_without_naming_cli_flags() {
        for (json, want) in [
            (r#"{"name":"w","image":"b","mode":"both"}"#, "invalid mode"),
            (
                r#"{"name":"w","image":"b","mode":"global","replicas":2}"#,
                "replicated service",
            ),
            (
                r#"{"name":"w","image":"b","restart_condition":"sometimes"}"#,
                "invalid restart condition",
            ),
            (
                r#"{"name":"w","image":"b","update":{"parallelism":1,"delay_ms":0,"order":"stop-first","failure_action":"pause","monitor_ms":0,"max_failure_ratio":1.5}}"#,
                "max failure ratio 1.5",
            ),
            (
                r#"{"name":"w","image":"b","rollback":{"parallelism":1,"delay_ms":0,"order":"stop-first","failure_action":"rollback","monitor_ms":0,"max_failure_ratio":0}}"#,
                "a rollback cannot roll back",
            ),
        ] {
            let err = minimal(json).unwrap_err().to_string();
            assert!(err.contains(want), "{json}: {err}");
            assert!(!err.contains("--"), "{json}: {err}");
        }
    }
}
