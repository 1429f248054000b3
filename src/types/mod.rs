//! Domain types of the cluster: nodes, services, tasks and the cluster object.
//! Plain data with serde, no I/O. Everything the store holds is defined here.

mod caps;
mod device;
mod hostname;
mod ids;
mod image;
mod mount;
mod network;
mod node;
mod registry;
mod report;
mod secret;
mod service;
mod signal;
mod sysctl;
mod task;
mod ulimit;
mod units;
mod volume;

pub use caps::{normalize_cap, task_caps, ALL_CAPS, DEFAULT_CAPS};
pub use device::{node_has_device, Device, MAX_REPORTED_DEVICES};
pub use hostname::{check_hostname, expand_hostname, HostnameVars};
pub use ids::{new_id, now_ms};
pub use image::{
    normalize_image, BadImageRef, DiskUsage, ImageGc, ImageInfo, ImagesOnNode, NodeImage,
};
pub use mount::{clean_path, path_under, Mount, MountKind};
pub use network::{
    Network, NetworkAttachment, NetworkDriver, NetworkMode, NetworkSpec, PortConfig, Protocol,
    PublishMode, Vip,
};
pub use node::*;
pub use registry::{
    is_digest, is_loopback_host, registry_host, repository, tag, PullPolicy, RegistryAccess,
};
pub use report::{
    Assignments, IngressView, NetView, NetworkMembers, OverlayPeer, ServiceView, SessionMessage,
    SessionRequest, StatusReport,
};
pub use secret::*;
pub use service::*;
pub use signal::parse_signal;
pub use sysctl::check_sysctl;
pub use task::*;
pub use ulimit::{Ulimit, UNLIMITED};
pub use units::{human_bytes, human_cpus, parse_bytes, parse_cpus};
pub use volume::{check_volume_name, VolumeInfo};

use serde::{Deserialize, Serialize};

/// Bookkeeping every stored object carries. `version` is the store's commit
/// index of the last write, so an update can name the version it read and a
/// concurrent write is caught instead of lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub version: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// The cluster object: one per cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub id: String,
    pub meta: Meta,
    /// Node heartbeat period, cluster-wide.
    pub heartbeat_period_ms: u64,
    /// Old tasks kept per slot, the current one included.
    pub task_history_limit: u32,
    /// How long node certificates last (ms).
    pub cert_expiry_ms: u64,
    /// The root CA, PEM. Its key is in `ca_key_pem`.
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    /// The join tokens' secrets: one for workers, one for managers.
    pub join_tokens: crate::tls::JoinTokens,
    /// Nodes removed from the cluster: their certificates are refused.
    pub removed_nodes: Vec<String>,
    /// Raft log entries between snapshots (log compaction).
    pub snapshot_interval: u64,
    /// Set while the cluster is autolocked: the key (`SHOALKEY-1-…`) that
    /// every manager seals its keys with. Secret, like the CA key beside it.
    pub unlock_key: Option<String>,
    /// How long the managers hold the tasks of a node that said it is
    /// restarting (a daemon stopped with SIGTERM) before they replace them;
    /// 0: replace them as soon as it is down.
    #[serde(default = "default_restart_grace_ms")]
    pub restart_grace_ms: u64,
    /// Registries the cluster knows how to reach: credentials (`registry
    /// login`), plain HTTP allowed (`registry add --insecure`), private
    /// CAs and mirrors. One entry per host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registries: Vec<RegistryAccess>,
    /// When nodes remove unused images (`cluster update --image-gc-*`).
    #[serde(default)]
    pub image_gc: ImageGc,
    /// The address pool (CIDR) that node bridges and networks get their
    /// subnets from (`init --default-addr-pool`). Absent in clusters made
    /// before networks: the default then.
    #[serde(default = "default_addr_pool")]
    pub addr_pool: String,
    /// The node paths services may bind-mount, and under (`cluster update
    /// --bind-allow`). None by default: a bind mount of `/` is root on the
    /// node, so an admin says which paths tasks may have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bind_prefixes: Vec<String>,
    /// Services may ask for `--privileged` (every capability and device
    /// of the node, no seccomp filter): off by default, as it is root on
    /// the node (`cluster update --allow-privileged`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_privileged: bool,
}

fn default_addr_pool() -> String {
    crate::ipam::DEFAULT_POOL.to_string()
}

fn default_restart_grace_ms() -> u64 {
    DEFAULT_RESTART_GRACE_MS
}

/// `cluster update --restart-grace` unless set.
pub const DEFAULT_RESTART_GRACE_MS: u64 = 60_000;
/// The longest restart grace: a day.
pub const MAX_RESTART_GRACE_MS: u64 = 24 * 3_600_000;

impl Cluster {
    /// Whether `node_id` was removed: its certificate is refused from then
    /// on, even before it expires.
    pub fn is_removed(&self, node_id: &str) -> bool {
        self.removed_nodes.iter().any(|n| n == node_id)
    }
}

// What reads the format-1 (postcard) form of each stored object.
impl crate::format::Versioned for Cluster {
    type V1 = crate::format::v1::Cluster;
}
impl crate::format::Versioned for Node {
    type V1 = crate::format::v1::Node;
}
impl crate::format::Versioned for Service {
    type V1 = crate::format::v1::Service;
}
impl crate::format::Versioned for Task {
    type V1 = crate::format::v1::Task;
}

/// `cluster update --snapshot-interval` unless set.
pub const DEFAULT_SNAPSHOT_INTERVAL: u64 = 10_000;
