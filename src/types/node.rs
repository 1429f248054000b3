//! Nodes: machines in the cluster, their role, availability and status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ImageInfo, Meta};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeRole {
    Manager,
    Worker,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Manager => "manager",
            NodeRole::Worker => "worker",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Availability {
    #[default]
    Active,
    Pause,
    Drain,
}

impl Availability {
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Active => "active",
            Availability::Pause => "pause",
            Availability::Drain => "drain",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NodeState {
    #[default]
    Unknown,
    Down,
    Ready,
    Disconnected,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Unknown => "unknown",
            NodeState::Down => "down",
            NodeState::Ready => "ready",
            NodeState::Disconnected => "disconnected",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub role: NodeRole,
    pub availability: Availability,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Platform {
    /// `linux`
    pub os: String,
    /// Normalized as docker does: `amd64`, `arm64`, `arm`.
    pub arch: String,
}

impl Platform {
    /// The platform of this machine, with the arch normalized.
    pub fn local() -> Platform {
        Platform {
            os: std::env::consts::OS.to_string(),
            arch: normalize_arch(std::env::consts::ARCH).to_string(),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)
    }
}

/// Map kernel and Rust arch names onto the OCI names that images use, so
/// `aarch64` and `arm64` are one platform (swarmkit#2294).
pub fn normalize_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" | "amd64" => "amd64",
        "aarch64" | "arm64" | "armv8" => "arm64",
        "arm" | "armv7" | "armv7l" | "armhf" | "armv6l" => "arm",
        "i386" | "i686" | "x86" => "386",
        other => other,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeDescription {
    pub hostname: String,
    pub platform: Platform,
    pub cpus: u32,
    pub memory_bytes: u64,
    /// Images present on the node, reported by its agent.
    pub images: Vec<ImageInfo>,
    /// Set while the node's agent cannot reach its container runtime: why.
    /// Such a node is given no new task, and its tasks are not failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_error: Option<String>,
    /// What the node's build can do (`crate::LEVEL`): 0 for 254a909, which
    /// does not send it. Managers turn a feature on only once every node
    /// that must read it reports a level that has it (docs/formats.md).
    #[serde(default)]
    pub level: u32,
    /// The node's end of the overlay between nodes (absent from 254a909,
    /// and from a node whose overlay could not be made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<OverlayEndpoint>,
    /// The character and block devices under the node's /dev (and links
    /// to them, such as /dev/serial/by-id/…), sorted, at most
    /// `MAX_REPORTED_DEVICES`: the scheduler places a task with
    /// `--device` only on a node that has it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// The names of its named volumes: a task that uses one is placed on
    /// a node that has it, when any has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
}

/// What other nodes need to reach this node's tasks over the overlay: its
/// WireGuard public key (base64; the private key never leaves the node)
/// and the UDP port it listens on, at the node's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayEndpoint {
    pub public_key: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeStatus {
    pub state: NodeState,
    pub message: String,
    /// The address other nodes use to reach this one.
    pub addr: String,
    /// Set while the node is down after saying it would restart: until
    /// then (the leader's clock, ms) its tasks are held, not replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_until_ms: Option<i64>,
}

impl NodeStatus {
    /// Down after saying it would restart, within the grace period: its
    /// tasks stay where they are, and nothing new is placed on it.
    pub fn held(&self) -> bool {
        self.state == NodeState::Down && self.held_until_ms.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub meta: Meta,
    pub spec: NodeSpec,
    pub description: NodeDescription,
    pub status: NodeStatus,
    /// The shoal version the node runs.
    pub version: String,
    /// The subnet (CIDR) of the node's bridge, which its tasks get their
    /// addresses from: allocated by the leader from the cluster's pool
    /// when the node first connects, and never shared (the store refuses
    /// an overlap with another node's or a network's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_subnet: Option<String>,
}

impl Node {
    /// A node that has just joined (or, for the first manager, started the
    /// cluster), active and with no labels: how every node begins.
    pub fn joined(
        id: String,
        role: NodeRole,
        description: NodeDescription,
        addr: String,
        version: String,
    ) -> Node {
        Node {
            id,
            meta: Meta::default(),
            spec: NodeSpec {
                role,
                availability: Availability::Active,
                labels: Default::default(),
            },
            description,
            status: NodeStatus {
                state: NodeState::Unknown,
                message: "joined".into(),
                addr,
                held_until_ms: None,
            },
            version,
            bridge_subnet: None,
        }
    }

    /// Whether the node is a manager. Who leads is Raft's to say, and a
    /// manager is reached at `status.addr` like any node.
    pub fn is_manager(&self) -> bool {
        self.spec.role == NodeRole::Manager
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_arch;

    #[test]
    fn arches_normalize_to_oci_names() {
        assert_eq!(normalize_arch("x86_64"), "amd64");
        assert_eq!(normalize_arch("aarch64"), "arm64");
        assert_eq!(normalize_arch("arm64"), "arm64");
        assert_eq!(normalize_arch("armv7l"), "arm");
        assert_eq!(normalize_arch("riscv64"), "riscv64");
    }
}
