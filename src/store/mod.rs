//! The cluster state: redb tables of postcard-encoded objects.
//!
//! Writes go one way only: a batch of `Change`s is handed to a `Proposer`
//! (local today, Raft later), which calls `Store::apply` on every manager.
//! `apply` checks the whole batch, writes it in one redb transaction, and
//! only after the commit publishes a `Commit` event. The store does not know
//! which proposer feeds it. Reads come from a redb snapshot (`ReadView`).

mod apply;
mod codec;
mod proposer;
mod read;

pub use apply::{Change, Kind, Object};
pub use proposer::{LocalProposer, Proposer};
pub use read::ReadView;

use std::path::Path;
use std::sync::Arc;

use redb::{Database, TableDefinition};
use tokio::sync::broadcast;

pub(crate) const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
pub(crate) const SERVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("services");
pub(crate) const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
pub(crate) const CLUSTER: TableDefinition<&str, &[u8]> = TableDefinition::new("cluster");
/// Bookkeeping: the index of the last applied batch.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {id} was changed by someone else (read version {expected}, now {actual}); try again")]
    Conflict {
        kind: &'static str,
        id: String,
        expected: u64,
        actual: u64,
    },
    #[error("{kind} {id} already exists")]
    Exists { kind: &'static str, id: String },
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("store: {0}")]
    Io(String),
    #[error("store: cannot decode a stored value: {0}")]
    Decode(String),
}

macro_rules! io_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Io(e.to_string()) }
        }
    )*};
}
io_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// One applied batch, as watchers see it.
#[derive(Debug, Clone)]
pub struct Commit {
    pub index: u64,
    /// What changed: kind, id, and whether it was deleted.
    pub changed: Vec<(Kind, String, bool)>,
}

/// The local copy of the cluster state.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    /// Commits, published after they are durable. A watcher that lags
    /// behind gets `Lagged` and must treat everything as dirty.
    events: broadcast::Sender<Arc<Commit>>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path)?;
        // Create every table up front so reads never meet a missing table.
        let tx = db.begin_write()?;
        tx.open_table(NODES)?;
        tx.open_table(SERVICES)?;
        tx.open_table(TASKS)?;
        tx.open_table(CLUSTER)?;
        tx.open_table(META)?;
        tx.commit()?;
        let (events, _) = broadcast::channel(1024);
        Ok(Store {
            db: Arc::new(db),
            events,
        })
    }

    pub fn watch(&self) -> broadcast::Receiver<Arc<Commit>> {
        self.events.subscribe()
    }

    pub fn read(&self) -> Result<ReadView, StoreError> {
        use redb::ReadableDatabase;
        Ok(ReadView::new(self.db.begin_read()?))
    }

    /// Apply a batch atomically: every change is checked, then all are
    /// written in one transaction, or none is. Called by the proposer only.
    pub fn apply(&self, batch: Vec<Change>) -> Result<u64, StoreError> {
        let commit = apply::apply(&self.db, batch)?;
        let index = commit.index;
        // No receivers is fine: nobody is watching yet.
        let _ = self.events.send(Arc::new(commit));
        Ok(index)
    }
}

#[cfg(test)]
mod tests;
