//! `leave`: a worker leaves its cluster cleanly. Its components stop, its
//! containers are stopped and removed, and its identity, certificate, key
//! and local assignments are deleted, so the node can join again. The
//! manager sees it go down; `node rm` then removes it from the list.
//! A manager holds the cluster's only store (until the replicated store
//! exists), so it cannot leave.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::Json;

use super::{ApiError, Ctx};
use crate::types::NodeRole;

#[derive(serde::Deserialize)]
pub struct LeaveQuery {
    #[serde(default)]
    force: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Left {
    pub node_id: String,
    pub removed_containers: usize,
}

pub async fn leave(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<LeaveQuery>,
) -> Result<Json<Left>, ApiError> {
    let identity = ctx
        .identity
        .borrow()
        .clone()
        .ok_or_else(|| ApiError::NotInCluster("this node is not part of a cluster".into()))?;
    if identity.role == NodeRole::Manager {
        return Err(ApiError::BadRequest(
            "this node is the cluster's only manager: it holds the cluster's state and cannot leave".into(),
        ));
    }
    ctx.identity.send_replace(None);
    let mut running = ctx.components_running.subscribe();
    tokio::time::timeout(Duration::from_secs(60), running.wait_for(|r| !*r))
        .await
        .map_err(|_| ApiError::Internal("the cluster components did not stop within 60 s".into()))?
        .map_err(|_| ApiError::Internal("the daemon is stopping".into()))?;

    // --force: do not wait for containers to stop gracefully.
    let grace = if q.force {
        Duration::ZERO
    } else {
        Duration::from_secs(10)
    };
    let ids = ctx.exec.list().await?;
    for id in &ids {
        ctx.exec.stop(id, "SIGTERM", grace).await?;
        ctx.exec.remove(id).await?;
    }
    let dir = crate::data_dir::DataDir::at(&ctx.data_dir);
    for path in [dir.identity(), dir.managers(), dir.agent()] {
        remove_if_there(&path)?;
    }
    match std::fs::remove_dir_all(dir.tls()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(ApiError::Internal(format!(
                "cannot remove TLS material: {e}"
            )))
        }
        _ => {}
    }
    Ok(Json(Left {
        node_id: identity.node_id,
        removed_containers: ids.len(),
    }))
}

fn remove_if_there(path: &std::path::Path) -> Result<(), ApiError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ApiError::Internal(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
        _ => Ok(()),
    }
}
