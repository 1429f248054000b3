//! A manager writes its own node's description and readiness to the store:
//! at start, every 30 s, and when its images change.

use std::time::Duration;

use tracing::warn;

use super::Parts;
use crate::shutdown::Shutdown;
use crate::store::{Change, Object};
use crate::types::NodeState;

const PERIOD: Duration = Duration::from_secs(30);

pub(super) async fn periodically(parts: &Parts, node_id: &str, mut shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(PERIOD) => refresh(parts, node_id).await,
        }
    }
}

/// Write this node's description and readiness to the store, if they
/// changed. Writes are skipped when nothing changed: on an SD card every
/// write counts.
pub(super) async fn refresh(parts: &Parts, node_id: &str) {
    let mut description = crate::host::describe(parts.images.as_ref(), &parts.data_dir).await;
    description.overlay = parts.overlay.get().cloned();
    for _ in 0..5 {
        let node = match parts.store.read().and_then(|v| v.node(node_id)) {
            Ok(Some(n)) => n,
            Ok(None) => return warn!(node = %node_id, "this node is not in the store"),
            Err(e) => return warn!(error = %e, "cannot read node"),
        };
        let mut updated = node.clone();
        updated.description = description.clone();
        updated.status.state = NodeState::Ready;
        updated.version = crate::VERSION.to_string();
        // A manager restarted on a new address (a Pi that changed IP) must
        // not keep handing out the old one to its workers.
        let addr = parts
            .advertise
            .clone()
            .or_else(|| crate::netaddr::detect_advertise(&parts.listen).ok());
        if let Some(addr) = addr {
            updated.status.addr = addr;
        }
        if updated == node {
            return;
        }
        match parts
            .proposer
            .propose(vec![Change::Update(Object::Node(updated))])
            .await
        {
            Ok(_) => return,
            Err(e) => warn!(error = %e, "node update failed; retrying"),
        }
    }
}
