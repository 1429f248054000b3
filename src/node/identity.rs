//! Who this node is (`identity.json`) and which managers it knows
//! (`managers.json`): the two small files that say, at start, whether the
//! node is in a cluster and how to reach it.

use std::path::Path;

use anyhow::Context;

use crate::data_dir::DataDir;
use crate::types::NodeRole;

/// Who this node is, once `init` (or later `join`) has run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub cluster_id: String,
    pub node_id: String,
    /// The role this node joined with. A manager's current role is in the
    /// store; a worker has no store and goes by this.
    pub role: NodeRole,
}

/// The saved identity; None for a node in no cluster.
pub fn load(data_dir: &Path) -> anyhow::Result<Option<Identity>> {
    let path = DataDir::at(data_dir).identity();
    match std::fs::read(&path) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("cannot read {}", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Written atomically (temp file + rename): a crash leaves the old file or
/// the new one, never half of one.
pub fn save(data_dir: &Path, identity: &Identity) -> std::io::Result<()> {
    let path = DataDir::at(data_dir).identity();
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(identity)?)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// The managers this node knows, as last saved.
pub fn load_managers(data_dir: &Path) -> Vec<String> {
    std::fs::read(DataDir::at(data_dir).managers())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Best effort: a node that cannot save the list still has the one it
/// started with.
pub fn save_managers(data_dir: &Path, managers: &[String]) {
    let bytes = serde_json::to_vec(managers).unwrap_or_default();
    let path = DataDir::at(data_dir).managers();
    if let Err(e) = crate::tls::write_file_atomic(&path, &bytes, 0o644) {
        tracing::warn!(error = %e, "cannot save the list of managers");
    }
}
