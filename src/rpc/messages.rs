//! The messages of shoal's node-to-node services (see build.rs), as plain
//! serde types (see `codec` for their formats). A caller's identity is never a field
//! here: it comes from the caller's certificate.

use serde::{Deserialize, Serialize};

use crate::logs::LogLine;
use crate::types::{NodeDescription, StatusReport};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootInfo {
    pub cluster_id: String,
    pub ca_pem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub token: String,
    /// The joining node's key stays on the node: it sends a CSR.
    pub csr_pem: String,
    pub description: NodeDescription,
    /// The address the node advertises (its node-to-node endpoint).
    pub addr: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinResponse {
    pub cluster_id: String,
    pub node_id: String,
    pub cert_pem: String,
    pub ca_pem: String,
    /// Managers' addresses, for the node's list of where to reconnect.
    pub managers: Vec<String>,
    /// What the token made the node.
    pub role: crate::types::NodeRole,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewRequest {
    pub csr_pem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewResponse {
    pub cert_pem: String,
}

pub use crate::types::{SessionMessage, SessionRequest};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    pub period_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusBatch {
    pub updates: Vec<StatusReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogsRequest {
    pub task_ids: Vec<String>,
    pub tail: Option<usize>,
    pub follow: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogItem {
    pub task_id: String,
    pub line: LogLine,
}

/// The image blobs a node holds (committed in its content store).
/// `full`: the whole set, replacing what the managers knew.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BlobReport {
    pub full: bool,
    #[serde(default)]
    pub added: Vec<String>,
    #[serde(default)]
    pub removed: Vec<String>,
}

/// Who holds a blob. `fetching`: the asker is fetching it from the
/// registry and keeps its claim alive (no answer needed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobQuery {
    pub digest: String,
    #[serde(default)]
    pub fetching: bool,
}

/// Nodes that hold a blob: (node id, address), best first. With none,
/// `wait_ms` > 0 says another node is fetching it from the registry:
/// ask again then, rather than fetch it a second time over the uplink.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BlobSources {
    pub nodes: Vec<(String, String)>,
    #[serde(default)]
    pub wait_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobRead {
    pub digest: String,
    pub offset: u64,
}

/// A piece of a blob, as MessagePack bytes (not an array of numbers).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobChunk {
    pub data: bytes::Bytes,
}

/// What a manager asks of a node's images. Neither `remove` nor `prune`:
/// only the list.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImagesOp {
    #[serde(default)]
    pub remove: Option<String>,
    #[serde(default)]
    pub prune: bool,
}

/// The node's images after the operation, what it removed, and the disk.
pub use crate::types::ImagesOnNode as ImagesReply;

/// What a manager asks of a node's volumes: make one (`create`, with
/// `labels`), remove one, or prune those not in `keep` (what the
/// cluster's tasks on the node use, as the manager knows it). None of
/// them: only the list, or the one volume `get` names.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VolumesOp {
    #[serde(default)]
    pub create: Option<String>,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Option<String>,
    #[serde(default)]
    pub prune: bool,
    #[serde(default)]
    pub keep: Vec<String>,
}

/// The node's volumes after the operation, and what it removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VolumesReply {
    pub volumes: Vec<crate::types::VolumeInfo>,
    #[serde(default)]
    pub removed: Vec<String>,
}

/// What starts a `shoal exec`: the process to run in a task's container.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecStart {
    /// A task id, a prefix of one, or `SERVICE.SLOT` (the manager sends
    /// the node the task's full id).
    pub task: String,
    pub args: Vec<String>,
    /// A terminal of its own (stdout and stderr are one stream).
    #[serde(default)]
    pub tty: bool,
    /// The client sends input.
    #[serde(default)]
    pub stdin: bool,
    /// `uid[:gid]`; default: the task's own user.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub workdir: Option<String>,
    /// `KEY=VALUE`, added to the task's environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// The terminal's size at the start.
    #[serde(default)]
    pub cols: u16,
    #[serde(default)]
    pub rows: u16,
    /// Who asked (the manager's CLI user), for the node's log.
    #[serde(default)]
    pub who: String,
}

/// From the client: the start (first), then input, its end, resizes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ExecIn {
    Start(ExecStart),
    Stdin(bytes::Bytes),
    StdinEnd,
    Resize { cols: u16, rows: u16 },
}

/// To the client: output, then the exit code (or why it could not run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ExecOut {
    Stdout(bytes::Bytes),
    Stderr(bytes::Bytes),
    Exit(i32),
    Error(String),
}

/// New in format 2: no node of format 1 knows these routes, so their
/// format-1 form is never used; it is the same type.
macro_rules! new_in_v2 {
    ($($t:ident),* $(,)?) => {$(
        impl crate::format::Versioned for $t {
            type V1 = $t;
        }
    )*};
}
new_in_v2!(
    BlobReport,
    BlobQuery,
    BlobSources,
    BlobRead,
    BlobChunk,
    ImagesOp,
    ImagesReply,
    VolumesOp,
    VolumesReply,
    ExecIn,
    ExecOut
);

/// An encoded openraft message (see `crate::raft::wire`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RaftBytes {
    pub data: Vec<u8>,
}

// What each message was in format 1, for the `shoal.v1` services.
macro_rules! versioned {
    ($($t:ident),* $(,)?) => {$(
        impl crate::format::Versioned for $t {
            type V1 = crate::format::v1::$t;
        }
    )*};
}
versioned!(
    Empty,
    RootInfo,
    JoinRequest,
    JoinResponse,
    RenewRequest,
    RenewResponse,
    SessionRequest,
    SessionMessage,
    HeartbeatResponse,
    StatusBatch,
    LogsRequest,
    LogItem,
);

/// The bytes are the Raft layer's to encode (`crate::raft::wire`).
impl crate::format::Versioned for RaftBytes {
    type V1 = RaftBytes;
}
