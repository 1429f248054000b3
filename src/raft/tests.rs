//! openraft's own storage conformance suite, run against our log store and
//! state machine on disk.

use openraft::testing::{StoreBuilder, Suite};

use super::*;
use crate::store::Store;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let codec = crate::store::Codec::ephemeral();
        let log = LogStore::open(&dir.path().join("raft.redb"), codec.clone())?;
        let store = Store::open(&dir.path().join("state.redb"), codec).expect("store");
        let sm = StateMachine::new(store, dir.path());
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft's storage suite");
}

#[test]
fn raft_ids_are_stable_and_distinct() {
    assert_eq!(raft_id("abc"), raft_id("abc"));
    assert_ne!(raft_id("abc"), raft_id("abd"));
}

/// Applies are not fsynced one by one (`Store::apply_marked`), so a
/// snapshot, after which openraft purges the log behind it, must first make
/// them durable. A copy of the state file, taken while it is open, is what
/// a power cut (or SIGKILL) leaves: redb opens it at its last durable
/// commit.
#[tokio::test]
async fn what_a_snapshot_holds_is_durable_before_the_log_behind_it_goes() {
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};

    let dir = tempfile::tempdir().expect("temp dir");
    let codec = crate::store::Codec::ephemeral();
    let store = Store::open(&dir.path().join("state.redb"), codec.clone()).expect("store");
    let mut sm = StateMachine::new(store.clone(), dir.path());
    let entries = (1..=5).map(|index| Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Blank,
    });
    sm.apply(entries).await.expect("apply");
    let snapshot = sm.build_snapshot().await.expect("snapshot");
    assert_eq!(snapshot.meta.last_log_id.map(|l| l.index), Some(5));

    let copy = dir.path().join("copy.redb");
    std::fs::copy(dir.path().join("state.redb"), &copy).expect("copy the state");
    let after_crash = Store::open(&copy, codec).expect("open the copy");
    let mut sm = StateMachine::new(after_crash, dir.path());
    let (applied, _) = sm.applied_state().await.expect("applied");
    assert_eq!(
        applied.map(|l| l.index),
        Some(5),
        "the snapshot's entries were not durable when the log behind it could go"
    );
}
