//! The cluster state: redb tables of encoded, sealed objects (`format`).
//!
//! Writes go one way only: a batch of `Change`s is handed to a `Proposer`
//! (Raft), which calls `Store::apply_marked` on every manager.
//! `apply` checks the whole batch, writes it in one redb transaction, and
//! only after the commit publishes a `Commit` event. The store does not know
//! which proposer feeds it. Reads come from a redb snapshot (`ReadView`).

mod apply;
pub(crate) mod codec;
mod mirror;
mod proposer;
mod read;
mod snapshot;

pub use apply::{Change, Kind, Object};
pub use codec::Codec;
pub use mirror::{Delta, Mirror};
pub use proposer::{ProposeFuture, Proposer};
pub use read::ReadView;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, TableDefinition};
use tokio::sync::broadcast;

pub(crate) const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
pub(crate) const SERVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("services");
pub(crate) const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
pub(crate) const CLUSTER: TableDefinition<&str, &[u8]> = TableDefinition::new("cluster");
pub(crate) const NETWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("networks");
pub(crate) const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
pub(crate) const CONFIGS: TableDefinition<&str, &[u8]> = TableDefinition::new("configs");
/// Bookkeeping: the index of the last applied batch.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The proposer's own bookkeeping, written atomically with each batch
/// (Raft keeps its applied log position and membership here).
pub(crate) const MARKS: TableDefinition<&str, &[u8]> = TableDefinition::new("marks");

/// The tables of cluster objects, as snapshots carry them.
const DATA_TABLES: [TableDefinition<&str, &[u8]>; 7] =
    [CLUSTER, NODES, SERVICES, TASKS, NETWORKS, SECRETS, CONFIGS];

/// Errors travel between managers (a follower forwards writes to the
/// leader), hence serde.
#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum StoreError {
    #[error("{kind} {id} was changed by someone else (read version {expected}, now {actual}); try again")]
    Conflict {
        kind: String,
        id: String,
        expected: u64,
        actual: u64,
    },
    #[error("{kind} {id} already exists")]
    Exists { kind: String, id: String },
    #[error("{kind} {id} not found")]
    NotFound { kind: String, id: String },
    #[error("store: {0}")]
    Io(String),
    /// A batch too large to be one write: the writer sends it in parts.
    #[error("a write of {bytes} bytes is over the limit of {limit} bytes")]
    TooLarge { bytes: usize, limit: usize },
    /// A file of the store failed its integrity check when opened.
    #[error("{file} is damaged: {reason}")]
    Damaged { file: String, reason: String },
    /// A write that breaks a rule of the state (overlapping subnets).
    #[error("{0}")]
    Invalid(String),
    #[error("store: cannot decode a stored value: {0}")]
    Decode(String),
    /// The write could not be committed now (no leader, no quorum, this
    /// node is not a manager); nothing was written and it may be retried.
    #[error("{0}")]
    Unavailable(String),
}

impl StoreError {
    /// A batch refused for what it says, not for a failure of the store.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            StoreError::Conflict { .. }
                | StoreError::Exists { .. }
                | StoreError::NotFound { .. }
                | StoreError::TooLarge { .. }
                | StoreError::Invalid(_)
        )
    }
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
    redb::CommitError,
    redb::SetDurabilityError
);

/// One applied batch, as watchers see it.
#[derive(Debug, Clone)]
pub struct Commit {
    pub index: u64,
    pub changed: Vec<Changed>,
}

/// One object that a commit changed.
#[derive(Debug, Clone)]
pub struct Changed {
    pub kind: Kind,
    pub id: String,
    pub written: Written,
    /// Written by a create (events say "create" rather than "update").
    pub created: bool,
}

/// What a commit left of an object. Watchers take the object from here
/// rather than read and decode it again, each of them, from the store.
#[derive(Debug, Clone)]
pub enum Written {
    /// The object as the commit wrote it.
    Object(Arc<Object>),
    Deleted,
    /// Written without being decoded (a snapshot installed): read it.
    Unread,
}

impl Changed {
    pub fn is(&self, kind: Kind) -> bool {
        self.kind == kind
    }
}

/// A task id, and the task as a commit left it (None: deleted).
pub type TaskAfter<'a> = (&'a str, Option<Arc<Object>>);

impl Commit {
    /// The tasks this commit changed, as it left them (None: deleted).
    /// Only the ones it did not carry are read from `store`.
    pub fn tasks(&self, store: &Store) -> Result<Vec<TaskAfter<'_>>, StoreError> {
        let mut view = None;
        let mut out = Vec::new();
        for ch in self.changed.iter().filter(|ch| ch.is(Kind::Task)) {
            let task = match &ch.written {
                Written::Object(o) => Some(o.clone()),
                Written::Deleted => None,
                Written::Unread => {
                    if view.is_none() {
                        view = Some(store.read()?);
                    }
                    let view = view.as_ref().expect("just read");
                    view.task(&ch.id)?.map(|t| Arc::new(Object::Task(t)))
                }
            };
            out.push((ch.id.as_str(), task));
        }
        Ok(out)
    }
}

/// The local copy of the cluster state.
#[derive(Clone)]
pub struct Store {
    /// The open file; None for a moment while `reopen` replaces it.
    db: Arc<RwLock<Option<Arc<Database>>>>,
    path: PathBuf,
    codec: Codec,
    /// Commits, published once committed (and so in the proposer's
    /// durable log, see `apply_marked`). A watcher that lags
    /// behind gets `Lagged` and must treat everything as dirty.
    events: broadcast::Sender<Arc<Commit>>,
    /// Tasks as they are stored, decoded (`apply::TaskCache`).
    tasks: Arc<Mutex<apply::TaskCache>>,
    /// When a write was last made durable (see `apply_marked`).
    synced: Arc<Mutex<Instant>>,
}

/// How long the proposer's writes may stay un-fsynced: this bounds what a
/// restart replays from the proposer's log, and how long redb holds on to
/// pages that only a durable commit frees.
const SYNC_EVERY: Duration = Duration::from_secs(1);

impl Store {
    /// Opens (or creates) the store at `path`, sealing every value with
    /// `codec`'s key.
    pub fn open(path: &Path, codec: Codec) -> Result<Store, StoreError> {
        let db = Self::open_db(path)?;
        let (events, _) = broadcast::channel(1024);
        Ok(Store {
            db: Arc::new(RwLock::new(Some(Arc::new(db)))),
            path: path.to_path_buf(),
            codec,
            events,
            tasks: Default::default(),
            synced: Arc::new(Mutex::new(Instant::now())),
        })
    }

    fn open_db(path: &Path) -> Result<Database, StoreError> {
        let db = crate::data_dir::open_redb(path).map_err(|e| {
            if crate::data_dir::is_damaged(&e) {
                StoreError::Damaged {
                    file: path.display().to_string(),
                    reason: e.to_string(),
                }
            } else {
                e.into()
            }
        })?;
        // Create every table up front so reads never meet a missing table.
        let tx = db.begin_write()?;
        tx.open_table(NODES)?;
        tx.open_table(SERVICES)?;
        tx.open_table(NETWORKS)?;
        tx.open_table(SECRETS)?;
        tx.open_table(CONFIGS)?;
        tx.open_table(TASKS)?;
        tx.open_table(CLUSTER)?;
        tx.open_table(META)?;
        tx.open_table(MARKS)?;
        tx.commit()?;
        Ok(db)
    }

    fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .expect("store lock")
            .clone()
            .ok_or_else(|| StoreError::Unavailable("the store is being opened again".into()))
    }

    /// After a failed write (a full disk) redb refuses every later one
    /// until the file is opened again. Checks that a write goes through,
    /// and if not, opens the file again: it comes back at its last durable
    /// commit, and the proposer replays its log from there.
    pub fn reopen_if_failed(&self) -> Result<(), StoreError> {
        if self.flush().is_ok() {
            return Ok(());
        }
        let mut slot = self.db.write().expect("store lock");
        // Ours must go before the file can be opened again (readers that
        // still hold a transaction keep it open: then try again later).
        *slot = None;
        self.tasks.lock().expect("task cache lock").clear();
        let db = Self::open_db(&self.path)?;
        *slot = Some(Arc::new(db));
        tracing::info!(file = %self.path.display(), "opened the store again after a failed write");
        Ok(())
    }

    /// The codec this store seals its values with, for the files kept
    /// beside it (Raft's log and snapshots).
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    pub fn watch(&self) -> broadcast::Receiver<Arc<Commit>> {
        self.events.subscribe()
    }

    pub fn read(&self) -> Result<ReadView, StoreError> {
        use redb::ReadableDatabase;
        Ok(ReadView::new(self.db()?.begin_read()?, self.codec.clone()))
    }

    /// `apply_marked` now, with no marks: the store's own tests.
    #[cfg(test)]
    pub fn apply(&self, batch: Vec<Change>) -> Result<u64, StoreError> {
        self.apply_marked(batch, crate::types::now_ms(), &[])?
    }

    /// Apply a batch atomically at the proposer's time `now`: every change
    /// is checked, then all are written in one transaction, or none is.
    /// The proposer's `marks` are written in the same transaction, even
    /// when the batch is rejected. Called by the proposer only.
    /// Outer error: the store failed; inner: the batch was refused.
    ///
    /// The write is durable only once a second or at `flush`: the proposer
    /// (Raft) has every batch in its own durable log and replays it from
    /// its mark after a crash, so a second fsync per write bought nothing
    /// but time. It must `flush` before it forgets a batch from that log.
    pub fn apply_marked(
        &self,
        batch: Vec<Change>,
        now: i64,
        marks: &[(&str, Vec<u8>)],
    ) -> Result<Result<u64, StoreError>, StoreError> {
        Ok(apply::apply(
            &*self.db()?,
            &self.codec,
            &self.tasks,
            batch,
            now,
            marks,
            self.durability(),
        )?
        .map(|commit| {
            let index = commit.index;
            // No receivers is fine: nobody is watching yet.
            let _ = self.events.send(Arc::new(commit));
            index
        }))
    }

    /// Write only marks (Raft entries that carry no batch); durable as
    /// `apply_marked` is.
    pub fn set_marks(&self, marks: &[(&str, Vec<u8>)]) -> Result<(), StoreError> {
        let mut tx = self.db()?.begin_write()?;
        tx.set_durability(self.durability())?;
        apply::write_marks(&tx, &self.codec, marks)?;
        tx.commit()?;
        Ok(())
    }

    /// Make every write so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        *self.synced.lock().expect("sync clock lock") = Instant::now();
        // An empty commit at the default durability fsyncs, and with it
        // every non-durable commit before it.
        self.db()?.begin_write()?.commit()?;
        Ok(())
    }

    /// Whether the next write is one to fsync: at most `SYNC_EVERY` apart.
    fn durability(&self) -> redb::Durability {
        let mut synced = self.synced.lock().expect("sync clock lock");
        if synced.elapsed() >= SYNC_EVERY {
            *synced = Instant::now();
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        }
    }

    /// One of the proposer's marks.
    pub fn mark(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        use redb::ReadableDatabase;
        let tx = self.db()?.begin_read()?;
        let t = tx.open_table(MARKS)?;
        t.get(key)?.map(|v| self.codec.open(v.value())).transpose()
    }

    /// Everything, from one read snapshot: the objects and the marks (also
    /// returned apart, as they were in that snapshot).
    pub fn export(&self) -> Result<(Vec<u8>, snapshot::Entries), StoreError> {
        snapshot::export(&*self.db()?, &self.codec)
    }

    /// Remove every object and mark (a demoted manager's copy).
    pub fn clear(&self) -> Result<(), StoreError> {
        let commit = self.replace_all(&snapshot::empty())?;
        let _ = self.events.send(Arc::new(commit));
        Ok(())
    }

    /// Replace everything with an `export`, in one transaction. Watchers
    /// see every object that existed before or after as changed.
    pub fn import(&self, data: &[u8]) -> Result<(), StoreError> {
        let commit = self.replace_all(data)?;
        let _ = self.events.send(Arc::new(commit));
        Ok(())
    }

    fn replace_all(&self, data: &[u8]) -> Result<Commit, StoreError> {
        let result = snapshot::import(&*self.db()?, &self.codec, data);
        // Whether or not it committed, the decoded tasks may be stale.
        self.tasks.lock().expect("task cache lock").clear();
        result
    }
}

#[cfg(test)]
mod tests;
