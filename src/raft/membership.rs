//! The managers' membership as the control API sees it: who leads, who is
//! a member, taking a manager out, and waiting for this manager to lead.
//! One interface, so that API handlers never build a proposer or reach
//! into openraft themselves.

use std::time::Duration;

use super::node::RaftNode;
use super::proposer::{RaftProposer, Slot};
use crate::store::StoreError;

/// The membership of this manager's Raft, while it runs.
pub struct Membership {
    slot: Slot,
}

/// Who leads, and who is a member, by node id.
#[derive(Debug, Default)]
pub struct Members {
    pub leader: Option<String>,
    /// Voters and learners.
    pub members: Vec<String>,
    /// The managers the quorum counts: a manager that joined but was
    /// never made a voter (its leader could not reach it) is not one.
    pub voters: Vec<String>,
}

impl Membership {
    pub fn new(slot: Slot) -> Membership {
        Membership { slot }
    }

    /// As this manager sees it now; empty while its Raft does not run.
    pub fn members(&self) -> Members {
        match self.slot.borrow().as_ref() {
            Some(raft) => Members {
                leader: raft.leader().map(|m| m.node_id),
                members: raft.members().into_iter().map(|m| m.node_id).collect(),
                voters: raft.voters(),
            },
            None => Members::default(),
        }
    }

    /// Takes a manager out of the membership (the leader does it), so that
    /// the quorum no longer counts it.
    pub async fn remove(&self, node_id: &str) -> Result<(), StoreError> {
        RaftProposer {
            slot: self.slot.clone(),
        }
        .remove_manager(node_id)
        .await
    }

    /// The number of voters once `node_id` is one of them, or None if it
    /// is not within `within` (the leader cannot reach it, say).
    pub async fn voter_within(&self, node_id: &str, within: Duration) -> Option<usize> {
        let mut slot = self.slot.clone();
        let counted = async {
            loop {
                let node = slot.wait_for(|r| r.is_some()).await.ok()?.clone()?;
                let mut metrics = node.raft.metrics();
                tokio::select! {
                    r = metrics.wait_for(|m| RaftNode::counts(m, node_id)) => {
                        if r.is_ok() { return Some(node.voters().len()) }
                    }
                    _ = slot.changed() => {}
                }
            }
        };
        tokio::time::timeout(within, counted).await.ok().flatten()
    }

    /// Whether this manager leads within `within`, across a restart of its
    /// Raft (as when it forces a new cluster).
    pub async fn leads_within(&self, within: Duration) -> bool {
        let mut slot = self.slot.clone();
        let leads = async {
            loop {
                let node = slot.wait_for(|r| r.is_some()).await.ok()?.clone()?;
                let mut metrics = node.raft.metrics();
                tokio::select! {
                    r = metrics.wait_for(RaftNode::leads) => if r.is_ok() { return Some(()) },
                    _ = slot.changed() => {}
                }
            }
        };
        tokio::time::timeout(within, leads)
            .await
            .ok()
            .flatten()
            .is_some()
    }
}
