//! How Raft's messages travel in `RaftBytes`: postcard of openraft's serde
//! types, and of the forwarded operations below.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tonic::Status;

use super::{Member, Request};
use crate::rpc::messages::RaftBytes;
use crate::store::StoreError;

pub fn encode<T: Serialize>(value: &T) -> RaftBytes {
    RaftBytes {
        data: postcard::to_allocvec(value).expect("postcard encoding into a Vec"),
    }
}

pub fn decode<T: DeserializeOwned>(bytes: &RaftBytes) -> Result<T, Status> {
    postcard::from_bytes(&bytes.data)
        .map_err(|e| Status::invalid_argument(format!("cannot decode a Raft message: {e}")))
}

/// What a manager asks of the leader on behalf of its API or of itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Forward {
    Write(Request),
    /// Add the calling manager (named by its certificate) as a voter.
    AddMe(Member),
    /// Take a manager out of the membership.
    Remove(String),
    /// The log index a linearizable read must wait for.
    ReadIndex,
}

/// The leader's answer: (the store's commit index, the Raft log index the
/// caller waits to have applied), as `RaftNode::perform` gives it.
pub type ForwardResult = Result<(u64, u64), StoreError>;
