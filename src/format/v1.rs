//! Frozen copies of every stored and sent type as 254a909 (format 1,
//! postcard) defined it. postcard reads a value only with the exact type it
//! was written with, so these never change: a field added to today's types
//! is not added here. Only names and field order matter; the types carry
//! no behaviour. `#[serde]` renames are kept, since values are carried
//! into today's types by name. `#[serde(default)]` may be added to a field
//! (postcard's layout does not change): today's types leave empty fields
//! out, and a value sent to a node one release behind is carried back into
//! these types by name.

#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

// ---- types/ ---------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub version: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cluster {
    pub id: String,
    pub meta: Meta,
    pub heartbeat_period_ms: u64,
    pub task_history_limit: u32,
    pub cert_expiry_ms: u64,
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub join_tokens: JoinTokens,
    pub removed_nodes: Vec<String>,
    pub snapshot_interval: u64,
    pub unlock_key: Option<String>,
}

/// A join token was stored as its string.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JoinToken(pub String);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinTokens {
    pub worker: JoinToken,
    pub manager: JoinToken,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum NodeRole {
    Manager,
    Worker,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Availability {
    Active,
    Pause,
    Drain,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum NodeState {
    Unknown,
    Down,
    Ready,
    Disconnected,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSpec {
    pub role: NodeRole,
    pub availability: Availability,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub arch: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageInfo {
    pub name: String,
    pub digest: String,
    pub platforms: Vec<String>,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeDescription {
    pub hostname: String,
    pub platform: Platform,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub images: Vec<ImageInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub state: NodeState,
    pub message: String,
    pub addr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub meta: Meta,
    pub spec: NodeSpec,
    pub description: NodeDescription,
    pub status: NodeStatus,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ServiceMode {
    Replicated { replicas: u64 },
    Global,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RestartCondition {
    Any,
    OnFailure,
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    pub delay_ms: u64,
    pub max_attempts: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub image: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    pub stop_grace_period_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskSpec {
    pub container: ContainerSpec,
    pub restart: RestartPolicy,
    pub placement: Placement,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Placement {
    #[serde(default)]
    pub constraints: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub mode: ServiceMode,
    pub task: TaskSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Service {
    pub id: String,
    pub meta: Meta,
    pub spec: ServiceSpec,
    pub spec_version: u64,
    pub previous_spec: Option<ServiceSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TaskState {
    New,
    Pending,
    Assigned,
    Accepted,
    Preparing,
    Ready,
    Starting,
    Running,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    Remove,
    Orphaned,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskStatus {
    pub state: TaskState,
    pub timestamp_ms: i64,
    pub message: String,
    pub error: Option<String>,
    pub container_id: Option<String>,
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub oom_killed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub meta: Meta,
    pub service_id: String,
    pub service_name: String,
    pub slot: u64,
    pub node_id: Option<String>,
    pub spec: TaskSpec,
    pub spec_version: u64,
    pub restarts: u64,
    pub desired_state: TaskState,
    pub status: TaskStatus,
}

// ---- store/ ---------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Kind {
    Cluster,
    Node,
    Service,
    Task,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Object {
    Cluster(Cluster),
    Node(Node),
    Service(Service),
    Task(Task),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Change {
    Create(Object),
    Update(Object),
    Delete {
        kind: Kind,
        id: String,
        expected_version: Option<u64>,
    },
    TaskStatus {
        id: String,
        status: TaskStatus,
    },
    TaskDesired {
        id: String,
        state: TaskState,
    },
    TaskAssign {
        id: String,
        node_id: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StoreError {
    Conflict {
        kind: String,
        id: String,
        expected: u64,
        actual: u64,
    },
    Exists {
        kind: String,
        id: String,
    },
    NotFound {
        kind: String,
        id: String,
    },
    Io(String),
    Decode(String),
    Unavailable(String),
}

/// A store export (a Raft snapshot's data). Its values are stored values,
/// each with its own format byte.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dump {
    pub index: u64,
    pub tables: Vec<(String, Entries)>,
    pub marks: Entries,
}

/// (key, stored value) pairs of one table.
pub type Entries = Vec<(String, Vec<u8>)>;

// ---- raft/ ----------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub batch: Vec<Change>,
    pub now_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response(pub Result<u64, StoreError>);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub node_id: String,
    pub addr: String,
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.node_id, self.addr)
    }
}

openraft::declare_raft_types!(
    /// Raft as 254a909 typed it: its entries and messages carry the frozen
    /// payload above.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = Member,
);

pub type Entry = openraft::Entry<TypeConfig>;

/// The Raft state machine's snapshot file: (meta, store export).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotFile {
    pub meta: openraft::SnapshotMeta<u64, Member>,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Forward {
    Write(Request),
    AddMe(Member),
    Remove(String),
    ReadIndex,
}

// ---- rpc/ -----------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootInfo {
    pub cluster_id: String,
    pub ca_pem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub token: String,
    pub csr_pem: String,
    pub description: NodeDescription,
    pub addr: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinResponse {
    pub cluster_id: String,
    pub node_id: String,
    pub cert_pem: String,
    pub ca_pem: String,
    pub managers: Vec<String>,
    pub role: NodeRole,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewRequest {
    pub csr_pem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewResponse {
    pub cert_pem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRequest {
    pub description: NodeDescription,
    pub addr: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SessionMessage {
    Assignments {
        full: bool,
        tasks: Vec<Task>,
        removed: Vec<String>,
    },
    Cluster {
        managers: Vec<String>,
        heartbeat_period_ms: u64,
        role: NodeRole,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    pub period_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusBatch {
    pub updates: Vec<(String, TaskStatus)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogsRequest {
    pub task_ids: Vec<String>,
    pub tail: Option<usize>,
    pub follow: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    pub ts: String,
    pub stream: Stream,
    pub line: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogItem {
    pub task_id: String,
    pub line: LogLine,
}
