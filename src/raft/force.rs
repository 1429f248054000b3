//! `shoal init --force-new-cluster`: a surviving manager of a cluster that
//! lost its quorum for good becomes the only member of its Raft, keeping
//! the cluster state it has (nodes, services, tasks, the CA). openraft 0.9
//! has no call for this, so it is done in storage, before Raft starts:
//! 1. entries known committed but not yet applied are applied;
//! 2. the applied membership is replaced by one with only this manager;
//! 3. the log is purged up to the last applied entry and nothing follows
//!    it (uncommitted entries were never acknowledged to anyone);
//! 4. a snapshot is written with the new membership, so that managers that
//!    join later catch up from it, not from the old membership.
//!
//! Raft then starts as a one-voter cluster and elects this manager.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Context;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{Membership, RaftLogReader, RaftSnapshotBuilder, StoredMembership};
use tracing::info;

use super::{raft_id, LogStore, Member, StateMachine};
use crate::store::Store;

pub async fn force_new_cluster(
    data_dir: &Path,
    store: &Store,
    node_id: &str,
    addr: &str,
) -> anyhow::Result<()> {
    let mut log = open_when_released(data_dir, store).await?;
    let mut sm = StateMachine::new(store.clone(), data_dir);

    let (applied, _) = sm.applied_state().await?;
    if let Some(committed) = log.read_committed().await? {
        if applied.is_none_or(|a| a.index < committed.index) {
            let from = applied.map_or(0, |a| a.index + 1);
            let entries = log.try_get_log_entries(from..=committed.index).await?;
            sm.apply(entries).await?;
        }
    }
    let (applied, _) = sm.applied_state().await?;
    let applied =
        applied.context("this manager has applied nothing: there is no cluster state to keep")?;

    let id = raft_id(node_id);
    let member = Member {
        node_id: node_id.to_string(),
        addr: addr.to_string(),
    };
    let membership = StoredMembership::new(
        Some(applied),
        Membership::new(vec![BTreeSet::from([id])], BTreeMap::from([(id, member)])),
    );
    store.set_marks(&StateMachine::marks(Some(applied), Some(&membership)))?;
    // Durable before the log behind it goes.
    store.flush()?;

    log.purge(applied).await?;
    log.truncate(openraft::LogId {
        leader_id: applied.leader_id,
        index: applied.index + 1,
    })
    .await?;
    sm.build_snapshot().await?;
    info!(
        last_applied = applied.index,
        "forced a new cluster: this manager is the only member of the Raft"
    );
    Ok(())
}

/// The stopped Raft's last handles on its log (replication streams to the
/// lost managers) go away a moment after it stops; redb allows one open.
async fn open_when_released(data_dir: &Path, store: &Store) -> anyhow::Result<LogStore> {
    let path = crate::data_dir::DataDir::at(data_dir).raft_log();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match LogStore::open(&path, store.codec().clone()) {
            Ok(log) => return Ok(log),
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "the Raft log is still open; waiting");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
