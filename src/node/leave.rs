//! `leave`: a worker leaves its cluster cleanly. Its containers are stopped
//! and removed, its task networks, bridge and overlay too, and its
//! identity, certificate, key and local assignments are deleted, so the
//! node can join again. The managers see it go down;
//! `node rm` then removes it from the list.

use std::time::Duration;

use super::{Identity, NodeError, Parts};

/// What `shoal leave` reports.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Left {
    pub node_id: String,
    pub removed_containers: usize,
}

/// How long each container has to stop, unless `--force`.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Remove what the cluster gave this node; its components are stopped.
pub(super) async fn forget(
    parts: &Parts,
    identity: Identity,
    force: bool,
) -> Result<Left, NodeError> {
    let failed = |e: &dyn std::fmt::Display| NodeError::Failed(e.to_string());
    let grace = if force { Duration::ZERO } else { STOP_GRACE };
    let ids = parts.exec.list().await.map_err(|e| failed(&e))?;
    for id in &ids {
        parts
            .exec
            .stop(id, "SIGTERM", grace)
            .await
            .map_err(|e| failed(&e))?;
        parts.exec.remove(id).await.map_err(|e| failed(&e))?;
    }
    crate::agent::nets::remove_all(
        &parts.data_dir,
        &crate::tasknet::overlay_name(&identity.node_id),
    )
    .await
    .map_err(|e| NodeError::Failed(format!("cannot remove the node's networks: {e}")))?;
    let dir = crate::data_dir::DataDir::at(&parts.data_dir);
    for path in [dir.identity(), dir.managers(), dir.agent()] {
        remove_if_there(&path)?;
    }
    match std::fs::remove_dir_all(dir.tls()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(NodeError::Failed(format!(
            "cannot remove TLS material: {e}"
        ))),
        _ => Ok(Left {
            node_id: identity.node_id,
            removed_containers: ids.len(),
        }),
    }
}

fn remove_if_there(path: &std::path::Path) -> Result<(), NodeError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(NodeError::Failed(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
        _ => Ok(()),
    }
}
