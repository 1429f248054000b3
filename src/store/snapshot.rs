//! The whole store as one value, for Raft snapshots: every object table,
//! the batch index and the proposer's marks.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use serde::{Deserialize, Serialize};

use super::apply::Kind;
use super::codec::Codec;
use super::{Changed, Commit, StoreError, Written, DATA_TABLES, MARKS, META};

/// (key, value) pairs of one table, or the marks.
pub type Entries = Vec<(String, Vec<u8>)>;

#[derive(Serialize, Deserialize)]
struct Dump {
    index: u64,
    /// (table name, [(key, stored value)])
    tables: Vec<(String, Entries)>,
    marks: Entries,
}

impl crate::format::Versioned for Dump {
    type V1 = crate::format::v1::Dump;
}

/// An export of this release, or one written by 254a909 (bare postcard,
/// with no format byte: in a format-1 snapshot file, or sent by a leader of
/// that release). A format-1 export that happens to start with the byte 2
/// does not decode as format 2 (a MessagePack map must follow), so trying
/// format 2 first is safe. Its values keep their own format bytes, which
/// the store reads as they are.
fn decode_export(data: &[u8]) -> Result<Dump, StoreError> {
    match crate::format::decode(data) {
        Ok(dump) => Ok(dump),
        Err(current) => {
            let old: crate::format::v1::Dump = postcard::from_bytes(data)
                .map_err(|_| StoreError::Decode(format!("a snapshot: {current}")))?;
            crate::format::transcode(&old).map_err(|e| StoreError::Decode(e.to_string()))
        }
    }
}

/// A table's entries with the values opened: a snapshot travels to other
/// managers, which seal it with keys of their own.
fn entries(
    tx: &redb::ReadTransaction,
    c: &Codec,
    table: TableDefinition<&str, &[u8]>,
) -> Result<Entries, StoreError> {
    let t = tx.open_table(table)?;
    let mut out = Vec::new();
    for entry in t.iter()? {
        let (k, v) = entry?;
        out.push((k.value().to_string(), c.open(v.value())?));
    }
    Ok(out)
}

/// The export and, for the caller's convenience, the marks it holds.
pub(super) fn export(db: &Database, c: &Codec) -> Result<(Vec<u8>, Entries), StoreError> {
    let tx = db.begin_read()?;
    let index = tx
        .open_table(META)?
        .get("index")?
        .map(|v| v.value())
        .unwrap_or(0);
    let mut tables = Vec::new();
    for table in DATA_TABLES {
        tables.push((table.name().to_string(), entries(&tx, c, table)?));
    }
    let marks = entries(&tx, c, MARKS)?;
    let dump = Dump {
        index,
        tables,
        marks,
    };
    Ok((crate::format::encode(&dump), dump.marks))
}

/// An export of an empty store.
pub(super) fn empty() -> Vec<u8> {
    crate::format::encode(&Dump {
        index: 0,
        tables: Vec::new(),
        marks: Vec::new(),
    })
}

fn kind_of(table: &str) -> Kind {
    match table {
        "cluster" => Kind::Cluster,
        "nodes" => Kind::Node,
        "services" => Kind::Service,
        "networks" => Kind::Network,
        "secrets" => Kind::Secret,
        "configs" => Kind::Config,
        _ => Kind::Task,
    }
}

pub(super) fn import(db: &Database, c: &Codec, data: &[u8]) -> Result<Commit, StoreError> {
    let dump = decode_export(data)?;
    let tx = db.begin_write()?;
    let mut changed = Vec::new();
    for table in DATA_TABLES {
        let name = table.name();
        let kind = kind_of(name);
        let new: Entries = dump
            .tables
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e.clone())
            .unwrap_or_default();
        let mut t = tx.open_table(table)?;
        let old: Vec<String> = t
            .iter()?
            .map(|e| e.map(|(k, _)| k.value().to_string()))
            .collect::<Result<_, _>>()?;
        for id in &old {
            t.remove(id.as_str())?;
            if !new.iter().any(|(k, _)| k == id) {
                changed.push(Changed {
                    kind,
                    id: id.clone(),
                    written: Written::Deleted,
                    created: false,
                });
            }
        }
        for (id, value) in new {
            t.insert(id.as_str(), c.seal(&value).as_slice())?;
            changed.push(Changed {
                kind,
                id,
                written: Written::Unread,
                created: false,
            });
        }
    }
    {
        let mut marks = tx.open_table(MARKS)?;
        marks.retain(|_, _| false)?;
        for (k, v) in &dump.marks {
            marks.insert(k.as_str(), c.seal(v).as_slice())?;
        }
        tx.open_table(META)?.insert("index", dump.index)?;
    }
    tx.commit()?;
    Ok(Commit {
        index: dump.index,
        changed,
    })
}
