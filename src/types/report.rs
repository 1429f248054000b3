//! What travels between a node's agent and the dispatcher, in both
//! directions. Both sides use these types; neither side's module owns them,
//! so the node side needs nothing from the manager side.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{ImageGc, NodeDescription, NodeRole, RegistryAccess, Task, TaskStatus};

/// The node's view of its work: every task assigned to it.
pub type Assignments = Arc<Vec<Task>>;

/// A node's report of one of its tasks.
///
/// On the wire it is the pair `(task id, status)`, as it was before it had
/// names, so that nodes of either build read each other's batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "(String, TaskStatus)", into = "(String, TaskStatus)")]
pub struct StatusReport {
    pub task_id: String,
    pub status: TaskStatus,
}

impl From<(String, TaskStatus)> for StatusReport {
    fn from((task_id, status): (String, TaskStatus)) -> Self {
        StatusReport { task_id, status }
    }
}

impl From<StatusReport> for (String, TaskStatus) {
    fn from(r: StatusReport) -> Self {
        (r.task_id, r.status)
    }
}

/// What a node sends when it opens its session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRequest {
    pub description: NodeDescription,
    pub addr: String,
    pub version: String,
}

/// What a manager sends down a node's session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SessionMessage {
    /// The node's tasks. `full`: this is the whole set and replaces what
    /// the node knew; otherwise `tasks` are added or changed and `removed`
    /// are gone.
    ///
    /// `registries`: the cluster's access (credentials, plain HTTP allowed,
    /// private CA, mirrors) for the registries of the images of the tasks
    /// in this message that are still to run (not terminal), one entry per
    /// host. Credentials go only to nodes that run a task needing them, and
    /// a node keeps them in memory only. With `full`, they replace what the
    /// node had; otherwise they are added to it. Its `Debug` shows no
    /// password.
    Assignments {
        full: bool,
        tasks: Vec<Task>,
        removed: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        registries: Vec<RegistryAccess>,
        /// The data of the secrets and configs of the tasks in this
        /// message that are still to run, which the node does not have
        /// yet (all of them with `full`). In memory only on the node.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<crate::types::FileData>,
    },
    /// Where the managers are, how often to heartbeat, and what the store
    /// says this node is (sent again when that changes: promote, demote).
    ///
    /// `image_gc`: when the node removes unused images (absent from a
    /// manager of 254a909, which knows no image GC: the default then).
    Cluster {
        managers: Vec<String>,
        heartbeat_period_ms: u64,
        role: NodeRole,
        #[serde(default)]
        image_gc: ImageGc,
        /// The subnet of the node's bridge, which its tasks get addresses
        /// from (absent from a manager of 254a909, or before the leader
        /// allocated one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bridge_subnet: Option<String>,
        /// The other nodes that the node's overlay has as peers: every
        /// node with a bridge subnet and an overlay endpoint.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        overlay_peers: Vec<OverlayPeer>,
        /// For each network that a task of the node is on, the addresses
        /// of that network's tasks on other nodes: what the node lets in
        /// from the overlay, and out to it, for that network's tasks.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        remote_members: Vec<NetworkMembers>,
        /// The services with a virtual IP on a network of the node's
        /// tasks, with their running tasks' addresses, on any node.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        services: Vec<ServiceView>,
        /// Every port published in ingress mode, with the running tasks
        /// behind it on any node: every node answers on it (the routing
        /// mesh).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ingress: Vec<IngressView>,
    },
}

/// A port published in ingress mode and the running tasks behind it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IngressView {
    pub protocol: super::Protocol,
    pub port: u16,
    /// The port the tasks listen on.
    pub target: u16,
    pub addresses: Vec<String>,
}

/// What the managers say of a node's networks (the network part of
/// `SessionMessage::Cluster`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetView {
    pub members: Vec<NetworkMembers>,
    pub services: Vec<ServiceView>,
    pub ingress: Vec<IngressView>,
}

/// A service on one network: its virtual IP there (empty when it has none:
/// `--endpoint-mode dnsrr`), and the addresses of its running tasks. Nodes
/// balance the VIP over them and their DNS servers answer with them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceView {
    pub name: String,
    pub network: String,
    pub vip: String,
    pub addresses: Vec<String>,
}

/// The addresses of a network's tasks on other nodes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NetworkMembers {
    pub network: String,
    pub addresses: Vec<String>,
    /// The network crosses between nodes in clear (VXLAN), not through
    /// WireGuard: `--opt encrypted=false`. Missing (a manager before it):
    /// encrypted, the safe reading.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plain: bool,
}

/// Another node as this node's overlay sees it: traffic for `subnet` (its
/// bridge's) goes to it, encrypted with `public_key`, at `endpoint`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OverlayPeer {
    pub node_id: String,
    pub public_key: String,
    /// `IP:port` (or `host:port`) of the node's WireGuard.
    pub endpoint: String,
    pub subnet: String,
}
