//! The Raft state machine is the cluster store. Each entry is applied in
//! one redb transaction that also records the applied log id (and, for a
//! membership entry, the membership), so a crash never leaves the two
//! apart. Snapshots are the store's export, kept in one file.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::{io_err, Member, NodeId, Response, StorageError, TypeConfig};
use crate::store::codec::{decode_plain, encode_plain};
use crate::store::Store;

const APPLIED: &str = "raft.applied";
const MEMBERSHIP: &str = "raft.membership";

type Membership = StoredMembership<NodeId, Member>;

#[derive(Clone)]
pub struct StateMachine {
    store: Store,
    /// The last snapshot: (meta, export), one file replaced atomically.
    snapshot_path: PathBuf,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    pub(crate) meta: SnapshotMeta<NodeId, Member>,
    pub(crate) data: Vec<u8>,
}

impl crate::format::Versioned for StoredSnapshot {
    type V1 = crate::format::v1::SnapshotFile;
}

fn sm_r(e: impl std::fmt::Display) -> StorageError {
    io_err(ErrorSubject::StateMachine, ErrorVerb::Read, e)
}
fn sm_w(e: impl std::fmt::Display) -> StorageError {
    io_err(ErrorSubject::StateMachine, ErrorVerb::Write, e)
}

impl StateMachine {
    pub fn new(store: Store, data_dir: &Path) -> StateMachine {
        StateMachine {
            store,
            snapshot_path: crate::data_dir::DataDir::at(data_dir).raft_snapshot(),
        }
    }

    /// The marks that record `applied` (and a membership) in the store.
    pub(crate) fn marks(
        applied: Option<LogId<NodeId>>,
        membership: Option<&Membership>,
    ) -> Vec<(&'static str, Vec<u8>)> {
        let mut marks = vec![(APPLIED, encode_plain(&applied))];
        if let Some(m) = membership {
            marks.push((MEMBERSHIP, encode_plain(m)));
        }
        marks
    }

    fn read_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        match std::fs::read(&self.snapshot_path) {
            // A format-1 file holds a format-1 export, which the store's
            // import reads as it is.
            Ok(bytes) => Ok(Some(self.store.codec().decode(&bytes).map_err(sm_r)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(sm_r(e)),
        }
    }

    fn write_snapshot(&self, snap: &StoredSnapshot) -> Result<(), StorageError> {
        crate::tls::write_file_atomic(&self.snapshot_path, &self.store.codec().encode(snap), 0o600)
            .map_err(sm_w)
    }
}

/// Decode the applied id and membership from raw marks.
fn decode_marks(
    get: impl Fn(&str) -> Option<Vec<u8>>,
) -> Result<(Option<LogId<NodeId>>, Membership), StorageError> {
    let applied = get(APPLIED)
        .map(|v| decode_plain::<Option<LogId<NodeId>>>(&v).map_err(sm_r))
        .transpose()?
        .flatten();
    let membership = get(MEMBERSHIP)
        .map(|v| decode_plain::<Membership>(&v).map_err(sm_r))
        .transpose()?
        .unwrap_or_default();
    Ok((applied, membership))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, marks) = self.store.export().map_err(sm_r)?;
        // Applies are fsynced lazily (`Store::apply_marked`), and openraft
        // purges the log up to this snapshot once it is built: what the
        // export holds must be durable first, or a crash could lose
        // entries that no log holds any more. Flushing after the export
        // also covers entries applied while it was read.
        self.store.flush().map_err(sm_w)?;
        let (applied, membership) = decode_marks(|k| {
            marks
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
        })?;
        let snapshot_id = format!(
            "{}-{}",
            applied.map(|l| l.index).unwrap_or(0),
            crate::types::now_ms()
        );
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id,
        };
        self.write_snapshot(&StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        })?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, Membership), StorageError> {
        decode_marks(|k| self.store.mark(k).ok().flatten())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            match entry.payload {
                EntryPayload::Normal(req) => {
                    let marks = Self::marks(Some(log_id), None);
                    let result = self
                        .store
                        .apply_marked(req.batch, req.now_ms, &marks)
                        .map_err(sm_w)?;
                    out.push(Response(result));
                }
                EntryPayload::Membership(m) => {
                    let membership = StoredMembership::new(Some(log_id), m);
                    self.store
                        .set_marks(&Self::marks(Some(log_id), Some(&membership)))
                        .map_err(sm_w)?;
                    out.push(Response(Ok(0)));
                }
                EntryPayload::Blank => {
                    self.store
                        .set_marks(&Self::marks(Some(log_id), None))
                        .map_err(sm_w)?;
                    out.push(Response(Ok(0)));
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        self.write_snapshot(&StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        })?;
        self.store.import(&data).map_err(sm_w)?;
        tracing::info!(
            up_to = meta.last_log_id.map_or(0, |l| l.index),
            "installed a snapshot from the leader"
        );
        // The export carries the leader's marks; make them exactly the
        // snapshot's, whatever the sender's store held.
        self.store
            .set_marks(&Self::marks(meta.last_log_id, Some(&meta.last_membership)))
            .map_err(sm_w)?;
        // openraft purges the log behind the snapshot next.
        self.store.flush().map_err(sm_w)?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.read_snapshot()?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
