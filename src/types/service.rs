//! Services: the declared unit of scheduling, and the spec of their tasks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Meta, NetworkMode, PortConfig, PullPolicy, Vip};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceMode {
    Replicated { replicas: u64 },
    Global,
}

impl ServiceMode {
    pub fn name(&self) -> &'static str {
        match self {
            ServiceMode::Replicated { .. } => "replicated",
            ServiceMode::Global => "global",
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
}

/// Where tasks may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Placement {
    /// Expressions such as `node.labels.zone==a` or `node.role!=manager`,
    /// all of which a node must meet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
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
}
