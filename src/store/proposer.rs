//! The one write path. Everything that changes cluster state hands a batch
//! to a `Proposer`. `LocalProposer` applies it to the local store; the Raft
//! proposer will replicate it first and apply it on every manager.

use std::future::Future;
use std::pin::Pin;

use super::{Change, Store, StoreError};

pub type ProposeFuture<'a> = Pin<Box<dyn Future<Output = Result<u64, StoreError>> + Send + 'a>>;

pub trait Proposer: Send + Sync + 'static {
    /// Commit `batch` atomically. Returns the commit index, once the batch
    /// is durable and its event published.
    fn propose(&self, batch: Vec<Change>) -> ProposeFuture<'_>;

    /// Wait until this node's store holds every write committed before the
    /// call, so that the next read is current (linearizable). Returns the
    /// index waited for.
    fn barrier(&self) -> ProposeFuture<'_> {
        Box::pin(async { Ok(0) })
    }
}

/// Applies batches to the local store: the single-manager proposer.
pub struct LocalProposer {
    store: Store,
}

impl LocalProposer {
    pub fn new(store: Store) -> LocalProposer {
        LocalProposer { store }
    }
}

impl Proposer for LocalProposer {
    fn propose(&self, batch: Vec<Change>) -> ProposeFuture<'_> {
        let store = self.store.clone();
        Box::pin(async move {
            // redb commits fsync: keep them off the async workers.
            tokio::task::spawn_blocking(move || store.apply(batch))
                .await
                .map_err(|e| StoreError::Io(format!("apply task failed: {e}")))?
        })
    }
}
