//! The replicated store: openraft (0.9, storage v2) over redb. The Raft log
//! and vote live in their own redb file (`log_store`); the state machine is
//! the cluster store itself (`state_machine`), which records Raft's applied
//! position in the same transaction as each batch. Managers talk Raft over
//! the node-to-node mTLS gRPC (`network`, `service`). Everything above the
//! store sees only `store::Proposer` (`proposer`).

// openraft's traits return its `StorageError` (224 bytes) by value; our
// helpers return what the traits need.
#![allow(clippy::result_large_err)]

mod force;
mod log_store;
mod membership;
mod network;
pub mod node;
mod proposer;
mod service;
mod state_machine;
pub(crate) mod wire;

pub use force::force_new_cluster;
pub use log_store::LogStore;
pub use membership::Membership;
pub use node::{snapshots, RaftNode};
pub use proposer::{ask_to_join, LeaderProposer, RaftProposer, Slot};
pub use service::RaftService;
pub use state_machine::StateMachine;
#[cfg(test)]
pub(crate) use state_machine::StoredSnapshot;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::store::{Change, StoreError};

openraft::declare_raft_types!(
    /// shoal's Raft: batches of store changes, keyed by a u64 derived from
    /// the node id.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = Member,
);

/// One log entry's payload: a batch, and the time the proposer stamped on
/// it, so that every manager applies the same timestamps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub batch: Vec<Change>,
    pub now_ms: i64,
}

/// What applying a batch gave: its commit index, or why it was refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response(pub Result<u64, StoreError>);

/// A manager in the Raft membership. `addr` is only where it was when it
/// was added: the network looks up a manager's current address in the
/// store first, so a manager that moves is still reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub node_id: String,
    pub addr: String,
}

// What reads the format-1 (postcard) form of what Raft stores.
impl crate::format::Versioned for openraft::Entry<TypeConfig> {
    type V1 = crate::format::v1::Entry;
}
impl crate::format::Versioned for openraft::Vote<NodeId> {
    type V1 = openraft::Vote<NodeId>;
}
impl crate::format::Versioned for openraft::LogId<NodeId> {
    type V1 = openraft::LogId<NodeId>;
}
impl crate::format::Versioned for openraft::StoredMembership<NodeId, Member> {
    type V1 = openraft::StoredMembership<NodeId, crate::format::v1::Member>;
}

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;

/// The Raft id of a shoal node: the first 8 bytes of SHA-256 of its id.
/// Node ids are random, so collisions are not a practical concern.
pub fn raft_id(node_id: &str) -> NodeId {
    use sha2::Digest;
    let d = sha2::Sha256::digest(node_id.as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

fn io_err(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    e: impl std::fmt::Display,
) -> StorageError {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::error(e.to_string())).into()
}

#[cfg(test)]
mod tests;
