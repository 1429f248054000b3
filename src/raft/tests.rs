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
