//! The agent's own small redb: the last assignments it got. After a restart
//! with no manager reachable, the agent still knows its tasks and re-adopts
//! their containers instead of leaving them unmanaged.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::types::Task;

const ASSIGNMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("assignments");

pub struct LocalState {
    db: Database,
}

impl LocalState {
    pub fn open(path: &Path) -> Result<LocalState, redb::Error> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(ASSIGNMENTS)?;
        tx.commit()?;
        Ok(LocalState { db })
    }

    pub fn load(&self) -> Result<Vec<Task>, redb::Error> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(ASSIGNMENTS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            // A record this build cannot read is skipped: the manager will
            // send the set again.
            if let Ok(t) = postcard::from_bytes::<Task>(v.value()) {
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
                let bytes = postcard::to_allocvec(t).expect("postcard into a Vec");
                let same = table
                    .get(t.id.as_str())?
                    .is_some_and(|v| v.value() == bytes);
                if !same {
                    table.insert(t.id.as_str(), bytes.as_slice())?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}
