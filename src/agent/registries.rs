//! The registry access a node was sent with its tasks: credentials,
//! private CAs and mirrors for the registries its tasks' images come from.
//! Kept in memory only (never in `agent.redb`), so a node's disk holds no
//! registry password; after a restart the session's first message brings
//! them again.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::types::RegistryAccess;

/// Shared between the session (which fills it) and the task workers
/// (which pull with it). std RwLock: never held across .await.
#[derive(Clone, Default)]
pub struct Registries(Arc<RwLock<HashMap<String, RegistryAccess>>>);

impl Registries {
    /// Adds or replaces the access of each registry in `access`.
    pub fn update(&self, access: Vec<RegistryAccess>) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        for a in access {
            map.insert(a.host.clone(), a);
        }
    }

    /// Replaces everything: a full set of assignments carries every
    /// registry the node's tasks need, and no other.
    pub fn replace(&self, access: Vec<RegistryAccess>) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.clear();
        for a in access {
            map.insert(a.host.clone(), a);
        }
    }

    /// The access for `host`, if the managers sent one.
    pub fn get(&self, host: &str) -> Option<RegistryAccess> {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        map.get(host).cloned()
    }
}
