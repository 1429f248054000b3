//! Decoded objects kept in memory, so that the control loops, which read
//! every task and node on each pass, do not open (ChaCha20) and decode
//! (MessagePack) the same unchanged value again and again. A sealed value
//! starts with the random nonce it was sealed with, fresh on every write,
//! so the nonce names one write of one object: a value whose nonce is the
//! cached one is the cached object. A full scan of a table leaves exactly
//! the objects it saw, so deleted ones do not linger; the cache holds at
//! most one decoded copy of each stored object.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The nonce at the head of every sealed value (crate::seal).
const TAG_LEN: usize = 12;
pub(super) type Tag = [u8; TAG_LEN];

fn tag(sealed: &[u8]) -> Option<Tag> {
    sealed.get(..TAG_LEN)?.try_into().ok()
}

pub(super) type Object = Arc<dyn Any + Send + Sync>;
/// id → (the write's nonce, its decoded object).
type Table = HashMap<String, (Tag, Object)>;

#[derive(Default)]
pub(super) struct Cache {
    /// table name → id → (the write's nonce, its decoded object). A std
    /// Mutex: held for map operations only, never across a decode or an
    /// await.
    tables: Mutex<HashMap<String, Table>>,
}

impl Cache {
    /// The decoded object of this exact write of `id`, if cached.
    pub(super) fn get<T: Clone + 'static>(
        &self,
        table: &str,
        id: &str,
        sealed: &[u8],
    ) -> Option<T> {
        let tag = tag(sealed)?;
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let (cached, object) = tables.get(table)?.get(id)?;
        (*cached == tag).then(|| object.downcast_ref::<T>().cloned())?
    }

    pub(super) fn put<T: Clone + Send + Sync + 'static>(
        &self,
        table: &str,
        id: &str,
        sealed: &[u8],
        value: &T,
    ) {
        let Some(tag) = tag(sealed) else { return };
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        tables
            .entry(table.to_string())
            .or_default()
            .insert(id.to_string(), (tag, Arc::new(value.clone())));
    }

    /// Replaces what is cached of `table` with the result of a full scan:
    /// (id, nonce, decoded object) for every object it holds.
    pub(super) fn replace_table(&self, table: &str, scanned: Vec<(String, Tag, Object)>) {
        let map = scanned
            .into_iter()
            .map(|(id, tag, object)| (id, (tag, object)))
            .collect();
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        tables.insert(table.to_string(), map);
    }

    /// The cached objects of `table` whose writes match `entries` (id,
    /// nonce), by position; None where not cached.
    pub(super) fn lookup_all(&self, table: &str, entries: &[(String, Tag)]) -> Vec<Option<Object>> {
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let Some(cached) = tables.get(table) else {
            return vec![None; entries.len()];
        };
        entries
            .iter()
            .map(|(id, tag)| {
                let (t, object) = cached.get(id)?;
                (t == tag).then(|| object.clone())
            })
            .collect()
    }

    pub(super) fn tag_of(sealed: &[u8]) -> Option<Tag> {
        tag(sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_write_of_an_object_is_not_served_from_the_cache() {
        let c = Cache::default();
        let first = [1u8; 40];
        let second = [2u8; 40];
        c.put("tasks", "t1", &first, &"one".to_string());
        assert_eq!(
            c.get::<String>("tasks", "t1", &first).as_deref(),
            Some("one")
        );
        assert_eq!(c.get::<String>("tasks", "t1", &second), None);
        // A full scan drops what it did not see.
        let two: Object = Arc::new("two".to_string());
        c.replace_table("tasks", vec![("t2".into(), [3u8; 12], two)]);
        assert_eq!(
            c.get::<String>("tasks", "t2", &[3u8; 40]).as_deref(),
            Some("two")
        );
        assert_eq!(c.get::<String>("tasks", "t1", &first), None);
        // The wrong type is a miss, not a panic.
        assert_eq!(c.get::<u64>("tasks", "t2", &[3u8; 40]), None);
    }
}
