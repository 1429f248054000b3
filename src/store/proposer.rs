//! The one write path. Everything that changes cluster state hands a batch
//! to a `Proposer`; `raft::RaftProposer` replicates it and applies it on
//! every manager. The store does not know who feeds it.

use std::future::Future;
use std::pin::Pin;

use super::{Change, StoreError};

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
