//! The agent's own small redb: the last assignments it got. After a restart
//! with no manager reachable, the agent still knows its tasks and re-adopts
//! their containers instead of leaving them unmanaged.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::store::Codec;
use crate::types::Task;

const ASSIGNMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("assignments");

pub struct LocalState {
    db: Database,
    /// Assignments carry the services' specs: sealed like the store.
    codec: Codec,
}

impl LocalState {
    /// A damaged file is set aside and started afresh: it only caches what
    /// the managers assign, and they send the whole set at the next session.
    pub fn open(path: &Path, codec: Codec) -> Result<LocalState, redb::Error> {
        let db = match crate::data_dir::open_redb(path) {
            Err(e) if crate::data_dir::is_damaged(&e) => {
                let aside = path.with_extension("redb.damaged");
                tracing::warn!(
                    error = %e,
                    file = %path.display(),
                    aside = %aside.display(),
                    "the agent's state is damaged: set aside; the managers will send the assignments again"
                );
                std::fs::rename(path, &aside)
                    .map_err(|e| redb::Error::from(redb::StorageError::from(e)))?;
                crate::data_dir::open_redb(path)?
            }
            r => r?,
        };
        let tx = db.begin_write()?;
        tx.open_table(ASSIGNMENTS)?;
        tx.commit()?;
        Ok(LocalState { db, codec })
    }

    pub fn load(&self) -> Result<Vec<Task>, redb::Error> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(ASSIGNMENTS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            // A record this build cannot read is skipped: the manager will
            // send the set again.
            if let Ok(t) = self.codec.decode::<Task>(v.value()) {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Replace the stored set with `tasks`, in one transaction.
    pub fn save(&self, tasks: &[Task]) -> Result<(), redb::Error> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(ASSIGNMENTS)?;
            table.retain(|id, _| tasks.iter().any(|t| t.id == id))?;
            for t in tasks {
                // Sealed values differ on every write (fresh nonces), so
                // compare what they hold, to skip rewriting unchanged ones.
                let same = table
                    .get(t.id.as_str())?
                    .and_then(|v| self.codec.decode::<Task>(v.value()).ok())
                    .is_some_and(|old| old == *t);
                if !same {
                    table.insert(t.id.as_str(), self.codec.encode(t).as_slice())?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}
