//! How Raft's messages travel in `RaftBytes`: openraft's serde types and the
//! forwarded operations below, in the format of the service they travel
//! on (`Proto`): MessagePack on `shoal.v2`, postcard of the 254a909 types
//! on `shoal.v1`.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tonic::Status;

use super::{Member, NodeId, Request, TypeConfig};
use crate::format::{v1, Versioned};
use crate::rpc::codec::Proto;
use crate::rpc::compat::{RaftClient, RaftMethod};
use crate::rpc::messages::RaftBytes;
use crate::store::StoreError;

/// The largest Raft message sent: half the gRPC limit of both sides. A longer AppendEntries is sent in parts (see
/// `network::Peer::append_entries`); a snapshot goes in openraft's chunks.
pub const MAX_RAFT_MESSAGE: usize = crate::rpc::MAX_MESSAGE / 2;

/// Encodes `value`, unless it is over `MAX_RAFT_MESSAGE`: then nothing is
/// sent, and the error is `ResourceExhausted`.
pub fn encode<T: Serialize + Versioned>(proto: Proto, value: &T) -> Result<RaftBytes, Status> {
    let data = proto.encode(value)?;
    if data.len() > MAX_RAFT_MESSAGE {
        return Err(Status::resource_exhausted(format!(
            "a Raft message of {} bytes is over the limit of {MAX_RAFT_MESSAGE}",
            data.len()
        )));
    }
    Ok(RaftBytes { data })
}

pub fn decode<T: Versioned>(proto: Proto, bytes: &RaftBytes) -> Result<T, Status> {
    proto
        .decode(&bytes.data)
        .map_err(|e| Status::invalid_argument(format!("cannot decode a Raft message: {e}")))
}

/// Sends `req` to another manager's Raft service by `method`, in the
/// format that manager speaks, and decodes its answer.
pub async fn call<Req, Resp>(
    client: &mut RaftClient,
    method: RaftMethod,
    req: &Req,
) -> Result<Resp, Status>
where
    Req: Serialize + Versioned,
    Resp: Versioned,
{
    let (reply, proto) = client.call(method, |p| encode(p, req)).await?;
    decode(proto, &reply)
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

// What each message was in format 1. openraft's own types did not change;
// those that carry our payload are read with the frozen payload.
impl Versioned for Forward {
    type V1 = v1::Forward;
}
impl Versioned for ForwardResult {
    type V1 = Result<(u64, u64), v1::StoreError>;
}
impl Versioned for AppendEntriesRequest<TypeConfig> {
    type V1 = AppendEntriesRequest<v1::TypeConfig>;
}
impl Versioned for InstallSnapshotRequest<TypeConfig> {
    type V1 = InstallSnapshotRequest<v1::TypeConfig>;
}
macro_rules! unchanged {
    ($($t:ty),* $(,)?) => {$(
        impl Versioned for $t {
            type V1 = $t;
        }
    )*};
}
unchanged!(
    VoteRequest<NodeId>,
    Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>,
    Result<VoteResponse<NodeId>, RaftError<NodeId>>,
    Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
);
