//! The Raft log and vote in redb (`raft.redb`, apart from the state so that
//! appends and applies do not queue on one writer). `append` reports the
//! entries flushed only after the redb commit, which is durable.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;

use super::{io_err, NodeId, StorageError, TypeConfig};
use crate::store::Codec;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// "vote", "committed", "purged"
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");

#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    /// Entries carry users' specs: sealed like the state.
    codec: Codec,
}

fn r(e: impl std::fmt::Display) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Read, e)
}
fn w(e: impl std::fmt::Display) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Write, e)
}

impl LogStore {
    pub fn open(path: &Path, codec: Codec) -> Result<LogStore, StorageError> {
        let db = crate::data_dir::open_redb(path).map_err(w)?;
        let tx = db.begin_write().map_err(w)?;
        tx.open_table(LOG).map_err(w)?;
        tx.open_table(STATE).map_err(w)?;
        tx.commit().map_err(w)?;
        Ok(LogStore {
            db: Arc::new(db),
            codec,
        })
    }

    fn get_state<T: crate::format::Versioned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let tx = self.db.begin_read().map_err(r)?;
        let t = tx.open_table(STATE).map_err(r)?;
        let v = t.get(key).map_err(r)?;
        v.map(|v| self.codec.decode(v.value()).map_err(r))
            .transpose()
    }

    fn put_state<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StorageError> {
        let tx = self.db.begin_write().map_err(w)?;
        tx.open_table(STATE)
            .map_err(w)?
            .insert(key, self.codec.encode(value).as_slice())
            .map_err(w)?;
        tx.commit().map_err(w)
    }

    /// The id of the last entry, or of the last purged one.
    pub fn last_log_id(&self) -> Result<Option<LogId<NodeId>>, StorageError> {
        let tx = self.db.begin_read().map_err(r)?;
        let t = tx.open_table(LOG).map_err(r)?;
        let last = t.last().map_err(r)?;
        match last {
            Some((_, v)) => Ok(Some(
                self.codec
                    .decode::<Entry<TypeConfig>>(v.value())
                    .map_err(r)?
                    .log_id,
            )),
            None => self.get_state("purged"),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(x) => Bound::Included(*x),
            Bound::Excluded(x) => Bound::Excluded(*x),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(x) => Bound::Included(*x),
            Bound::Excluded(x) => Bound::Excluded(*x),
            Bound::Unbounded => Bound::Unbounded,
        };
        let tx = self.db.begin_read().map_err(r)?;
        let t = tx.open_table(LOG).map_err(r)?;
        let mut out = Vec::new();
        for e in t.range::<u64>((start, end)).map_err(r)? {
            let (_, v) = e.map_err(r)?;
            out.push(self.codec.decode(v.value()).map_err(r)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.get_state("purged")?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id: self.last_log_id()?,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_state("vote", vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_state("vote")
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError> {
        self.put_state("committed", &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self
            .get_state::<Option<LogId<NodeId>>>("committed")?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let tx = self.db.begin_write().map_err(w)?;
        {
            let mut t = tx.open_table(LOG).map_err(w)?;
            for entry in entries {
                t.insert(entry.log_id.index, self.codec.encode(&entry).as_slice())
                    .map_err(w)?;
            }
        }
        // redb's default durability fsyncs on commit: only then is the
        // entry reported flushed.
        let result = tx
            .commit()
            .map_err(|e| std::io::Error::other(e.to_string()));
        let failed = result.as_ref().err().map(w);
        callback.log_io_completed(result);
        failed.map_or(Ok(()), Err)
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let tx = self.db.begin_write().map_err(w)?;
        tx.open_table(LOG)
            .map_err(w)?
            .retain_in(log_id.index.., |_, _| false)
            .map_err(w)?;
        tx.commit().map_err(w)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let tx = self.db.begin_write().map_err(w)?;
        tx.open_table(STATE)
            .map_err(w)?
            .insert("purged", self.codec.encode(&log_id).as_slice())
            .map_err(w)?;
        tx.open_table(LOG)
            .map_err(w)?
            .retain_in(..=log_id.index, |_, _| false)
            .map_err(w)?;
        tx.commit().map_err(w)
    }
}
