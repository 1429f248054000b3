//! Raft's peer RPC, client side: gRPC over the node-to-node mTLS, to the
//! `Raft` service of another manager. The server's certificate must name
//! the target node, so a message never reaches the wrong manager.

use std::sync::Arc;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;

use super::{wire, Member, NodeId, TypeConfig};
use crate::format::Versioned;
use crate::rpc::compat::{RaftClient, RaftMethod};
use crate::store::Store;

#[derive(Clone)]
pub struct Network {
    pub tls: Arc<rustls::ClientConfig>,
    pub store: Store,
}

/// Where a manager is now: its address in the store, else where it was
/// when it joined the membership.
pub fn current_addr(store: &Store, member: &Member) -> String {
    store
        .read()
        .ok()
        .and_then(|v| v.node(&member.node_id).ok().flatten())
        .map(|n| n.status.addr)
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| member.addr.clone())
}

/// A gRPC client of the `Raft` service on `member`.
pub async fn client(
    tls: &Arc<rustls::ClientConfig>,
    store: &Store,
    member: &Member,
) -> Result<RaftClient, tonic::transport::Error> {
    let addr = current_addr(store, member);
    let channel = crate::rpc::transport::connect(&addr, tls.clone(), &member.node_id).await?;
    Ok(RaftClient::new(channel))
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Peer {
        Peer {
            target,
            member: node.clone(),
            net: self.clone(),
            client: None,
        }
    }
}

pub struct Peer {
    target: NodeId,
    member: Member,
    net: Network,
    client: Option<RaftClient>,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, Member, RaftError<NodeId, E>>;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failed(String);

impl Peer {
    /// Send one message by `method`. The remote's answer is a
    /// `Result<Resp, RaftError<E>>`.
    /// `shrink`: for a message that can be sent in parts, how many entries
    /// to try when this one is too large.
    async fn send<Req, Resp, E>(
        &mut self,
        req: &Req,
        option: &RPCOption,
        method: RaftMethod,
        shrink: Option<u64>,
    ) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize + Versioned,
        Result<Resp, RaftError<NodeId, E>>: Versioned,
        E: std::error::Error,
    {
        let mut client = match self.client.clone() {
            Some(c) => c,
            None => {
                let c = client(&self.net.tls, &self.net.store, &self.member)
                    .await
                    .map_err(|e| RPCError::Unreachable(Unreachable::new(&Failed(e.to_string()))))?;
                self.client = Some(c.clone());
                c
            }
        };
        let sent = tokio::time::timeout(
            option.hard_ttl(),
            wire::call::<Req, Result<Resp, RaftError<NodeId, E>>>(&mut client, method, req),
        )
        .await;
        let result = match sent {
            Ok(Ok(r)) => r,
            // Too large to send (or to receive): openraft sends fewer
            // entries. Once, one oversized AppendEntries was refused by
            // every follower, forever.
            Ok(Err(status)) if status.code() == tonic::Code::ResourceExhausted => {
                if let Some(hint) = shrink {
                    return Err(RPCError::PayloadTooLarge(
                        PayloadTooLarge::new_entries_hint(hint),
                    ));
                }
                self.client = None;
                return Err(RPCError::Unreachable(Unreachable::new(&Failed(
                    status.message().to_string(),
                ))));
            }
            Ok(Err(status)) => {
                // Drop the channel: the next call dials again, maybe at a
                // new address.
                self.client = None;
                return Err(RPCError::Unreachable(Unreachable::new(&Failed(
                    status.message().to_string(),
                ))));
            }
            Err(_) => {
                self.client = None;
                return Err(RPCError::Network(NetworkError::new(&Failed(
                    "timed out".into(),
                ))));
            }
        };
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        // openraft gives an AppendEntries one heartbeat interval (150 ms)
        // and sends the same one again when it times out: one that cannot
        // travel and be fsynced in that time never would, and a follower
        // or a new manager would never catch up. So a batch is cut to
        // about `APPEND_BYTES` (one entry cannot be cut).
        if let Some(fits) = entries_within(&rpc.entries, APPEND_BYTES) {
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fits),
            ));
        }
        let half = (rpc.entries.len() > 1).then_some(rpc.entries.len() as u64 / 2);
        self.send(&rpc, &option, RaftMethod::Append, half).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.send(&rpc, &option, RaftMethod::Snapshot, None).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        self.send(&rpc, &option, RaftMethod::Vote, None).await
    }
}

/// The bytes of entries one AppendEntries carries, at most (unless one
/// entry alone is larger): a few milliseconds on a LAN, and one fsync.
/// 1 MiB (8 entries near the spec limit) did not arrive within 150 ms in
/// a debug build on 2 busy cores, and a new manager never caught up.
const APPEND_BYTES: usize = 256 * 1024;

/// How many of `entries` to send when all of them would be more than
/// `budget` bytes (at least one); None when they fit. Stops counting at
/// the first entry past the budget.
fn entries_within(entries: &[openraft::Entry<TypeConfig>], budget: usize) -> Option<u64> {
    if entries.len() < 2 {
        return None;
    }
    let mut total = 0;
    for (fits, e) in entries.iter().enumerate() {
        total += crate::format::encoded_len(e);
        if total > budget {
            return Some((fits as u64).max(1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Change, Kind};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    fn entry(index: u64, bytes: usize) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(super::super::Request {
                batch: vec![Change::Delete {
                    kind: Kind::Service,
                    id: "x".repeat(bytes),
                    expected_version: None,
                }],
                now_ms: 0,
            }),
        }
    }

    #[test]
    fn an_append_is_cut_to_its_byte_budget_but_never_below_one_entry() {
        let mib = 1024 * 1024;
        let big: Vec<_> = (1..=5).map(|i| entry(i, 400 * 1024)).collect();
        assert_eq!(entries_within(&big, mib), Some(2));
        let small: Vec<_> = (1..=5).map(|i| entry(i, 1024)).collect();
        assert_eq!(entries_within(&small, mib), None);
        // One entry larger than the budget goes alone.
        let huge = vec![entry(1, 2 * mib), entry(2, 10)];
        assert_eq!(entries_within(&huge, mib), Some(1));
        assert_eq!(entries_within(&huge[..1], mib), None);
    }
}
