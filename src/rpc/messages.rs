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
