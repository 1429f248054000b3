//! `store::Proposer` over Raft. On the leader a batch goes straight into
//! the log; on a follower it is forwarded to the leader, and the follower
//! waits until it has applied the entry itself, so that a read right after
//! a write sees it. With no leader, writes are retried for a few seconds,
//! then refused with how many managers are reachable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::network::client;
use super::node::{NotHere, RaftNode};
use super::wire::{self, Forward, ForwardResult};
use super::{Member, Request};
use crate::rpc::compat::{RaftClient, RaftMethod};
use crate::store::{Change, ProposeFuture, Proposer, StoreError};

/// How long a write (or a read barrier) waits for a leader with a quorum.
const WAIT_FOR_QUORUM: Duration = Duration::from_secs(5);
const RETRY: Duration = Duration::from_millis(100);

/// The running Raft of this manager, if any.
pub type Slot = watch::Receiver<Option<Arc<RaftNode>>>;

pub struct RaftProposer {
    pub slot: Slot,
}

impl RaftProposer {
    async fn node(&self, deadline: Instant) -> Result<Arc<RaftNode>, StoreError> {
        let mut slot = self.slot.clone();
        let found = tokio::time::timeout_at(deadline.into(), async {
            slot.wait_for(|n| n.is_some())
                .await
                .ok()
                .and_then(|n| n.clone())
        })
        .await;
        match found {
            Ok(Some(n)) => Ok(n),
            _ => Err(StoreError::Unavailable(
                "this node does not run the replicated store (it is not a manager, or its components are stopped)".into(),
            )),
        }
    }

    /// Do `op` here if this node leads, else at the leader, retrying while
    /// there is none, until time runs out. After the leader did it, wait
    /// until this node has applied it too (read your writes).
    async fn run(&self, op: Forward) -> ForwardResult {
        let deadline = Instant::now() + WAIT_FOR_QUORUM;
        let node = self.node(deadline).await?;
        // A write that a leader may have taken without answering: its
        // outcome is unknown, and the error must not say "nothing was
        // written". (Sending it again is safe: a create or update applied
        // twice is done once, see `store::apply`.)
        let mut unknown = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = match tokio::time::timeout(left, node.perform(&op)).await {
                Err(_) => {
                    // This node leads and was waiting for the commit.
                    unknown = true;
                    break;
                }
                Ok(Ok(r)) => Some(r),
                Ok(Err(NotHere::Failed(e))) => Some(Err(e)),
                Ok(Err(NotHere::NoLeader)) => None,
                Ok(Err(NotHere::Leader(m))) => {
                    // Give up on this leader as soon as this node stops
                    // following it. A leader whose cable is cut answers
                    // nothing and refuses nothing: without this, the call
                    // waited out the whole deadline and failed with "no
                    // quorum: 2 of 3 managers reachable", though the other
                    // two had elected a new leader within about 2 s (seen
                    // in tests/netns.rs, cutting the leader off).
                    let asked = tokio::select! {
                        r = tokio::time::timeout(left, ask_leader(&node, &m, &op)) => {
                            r.unwrap_or(Asked::Unknown)
                        }
                        _ = node.leader_moved(&m) => {
                            node.drop_leader_client();
                            Asked::Unknown
                        }
                    };
                    match asked {
                        Asked::Answered(Ok((index, log_index))) => Some(
                            node.applied(log_index, WAIT_FOR_QUORUM)
                                .await
                                .map(|_| (index, log_index)),
                        ),
                        Asked::Answered(Err(e)) => Some(Err(e)),
                        Asked::NotSent => None,
                        Asked::Unknown => {
                            unknown = true;
                            None
                        }
                    }
                }
            };
            if let Some(r) = outcome {
                return r;
            }
            if Instant::now() + RETRY >= deadline {
                break;
            }
            tokio::time::sleep(RETRY).await;
        }
        Err(no_quorum(&node, &op, unknown).await)
    }

    /// Take a manager out of the membership (the leader does it).
    pub async fn remove_manager(&self, node_id: &str) -> Result<(), StoreError> {
        self.run(Forward::Remove(node_id.to_string()))
            .await
            .map(|_| ())
    }
}

/// How asking the leader went.
enum Asked {
    Answered(ForwardResult),
    /// Not sent (unreachable), or refused unapplied (not the leader).
    NotSent,
    /// Sent, and no answer came: the leader may have applied it.
    Unknown,
}

/// Send `op` to the leader.
async fn ask_leader(node: &RaftNode, leader: &Member, op: &Forward) -> Asked {
    let Ok(mut c) = node.leader_client(leader).await else {
        return Asked::NotSent;
    };
    let result = match wire::call::<_, ForwardResult>(&mut c, RaftMethod::Forward, op).await {
        Ok(r) => r,
        Err(_) => {
            node.drop_leader_client();
            return Asked::Unknown;
        }
    };
    match result {
        Err(StoreError::Unavailable(_)) => Asked::NotSent,
        r => Asked::Answered(r),
    }
}

/// The error for an operation that found no leader with a quorum, counting
/// the voters this node can reach (itself included): a learner is not
/// part of the quorum.
async fn no_quorum(node: &RaftNode, op: &Forward, unknown: bool) -> StoreError {
    let members = node.voter_members();
    let total = members.len().max(1);
    let probes = members
        .iter()
        .filter(|m| m.node_id != node.node_id)
        .map(|m| async move {
            tokio::time::timeout(Duration::from_secs(1), client(&node.tls, &node.store, m))
                .await
                .is_ok_and(|c| c.is_ok())
        });
    let reachable = 1 + futures::future::join_all(probes)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count();
    let outcome = match op {
        Forward::ReadIndex => "an answer could be out of date, so none is given",
        _ if unknown => {
            "the write may or may not have been applied (a leader took it and gave no answer): look before writing it again"
        }
        _ => "nothing was written",
    };
    StoreError::Unavailable(format!(
        "no quorum: {reachable} of {total} managers reachable; {outcome}. The cluster needs a majority of its managers; if the others are gone for good, run `shoal init --force-new-cluster` on this manager"
    ))
}

impl Proposer for RaftProposer {
    fn propose(&self, batch: Vec<Change>) -> ProposeFuture<'_> {
        let req = Request {
            batch,
            now_ms: crate::types::now_ms(),
        };
        Box::pin(async move { self.run(Forward::Write(req)).await.map(|(index, _)| index) })
    }

    fn barrier(&self) -> ProposeFuture<'_> {
        Box::pin(async move {
            self.run(Forward::ReadIndex)
                .await
                .map(|(_, log_index)| log_index)
        })
    }
}

/// The proposer of the leader-only loops: it writes only while this node
/// leads and never forwards, so a manager that just lost leadership cannot
/// push a stale decision through the new leader.
pub struct LeaderProposer {
    pub node: Arc<RaftNode>,
}

impl Proposer for LeaderProposer {
    fn propose(&self, batch: Vec<Change>) -> ProposeFuture<'_> {
        let req = Request {
            batch,
            now_ms: crate::types::now_ms(),
        };
        Box::pin(async move {
            // A leader cut off from its quorum keeps leading in openraft
            // until it hears of a newer term, and its writes wait forever:
            // bound them, so that the loops that wrote them can stop (a
            // manager stopping or forcing a new cluster waits for them).
            match tokio::time::timeout(WAIT_FOR_QUORUM, self.node.write(req)).await {
                Ok(Ok(r)) => r.map(|(index, _)| index),
                Ok(Err(NotHere::Failed(e))) => Err(e),
                Ok(Err(_)) => Err(StoreError::Unavailable(
                    "this manager no longer leads".into(),
                )),
                Err(_) => Err(StoreError::Unavailable(format!(
                    "no quorum: the write was not committed within {WAIT_FOR_QUORUM:?}"
                ))),
            }
        })
    }
}

/// Ask the managers at `addrs` (any of them; followers send us on) to add
/// `me` to the membership. Used by a manager that joined and is in no
/// membership yet, so it knows no leader.
pub async fn ask_to_join(
    node: &RaftNode,
    addrs: &[String],
    me: &Member,
) -> Result<(), crate::rpc::transport::NoManagerAnswered> {
    let op = Forward::AddMe(me.clone());
    crate::rpc::transport::ask_managers(addrs, &node.tls, |channel| {
        let op = op.clone();
        async move {
            let mut client = RaftClient::new(channel);
            match wire::call::<_, ForwardResult>(&mut client, RaftMethod::Forward, &op).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(s) => Err(s.message().to_string()),
            }
        }
    })
    .await
}
