//! `shoal init --force-new-cluster`: recover from the permanent loss of a
//! quorum of managers. This manager restarts its components as the only
//! member of the Raft, keeping its copy of the cluster state (see
//! `raft::force_new_cluster` for what happens to the storage). Workers keep
//! their certificates and sessions: they reconnect to it as to any leader.

use std::sync::Arc;
use std::time::Duration;

use super::types::InitResponse;
use super::{ApiError, Ctx};
use crate::node::Launch;

/// How long the restarted manager may take to lead its new cluster.
const LEAD_WITHIN: Duration = Duration::from_secs(30);

pub async fn force_new_cluster(ctx: &Arc<Ctx>) -> Result<InitResponse, ApiError> {
    let identity = ctx.identity()?;
    // With a quorum, forcing would split the cluster in two.
    if ctx.proposer.barrier().await.is_ok() {
        return Err(ApiError::Conflict(
            "this cluster has a quorum of managers: forcing a new cluster is only for a cluster that lost it for good".into(),
        ));
    }
    ctx.node.relaunch(Launch::ForceNewCluster).await?;
    if !ctx.membership().leads_within(LEAD_WITHIN).await {
        return Err(ApiError::Internal(
            "the manager did not become the leader of its new cluster; see the daemon's log".into(),
        ));
    }
    let cluster = ctx
        .store
        .read()?
        .cluster()?
        .ok_or_else(|| ApiError::Internal("no cluster object".into()))?;
    Ok(InitResponse {
        cluster_id: identity.cluster_id,
        node_id: identity.node_id,
        advertise: ctx.advertise_addr(),
        worker_token: cluster.join_tokens.worker.to_string(),
    })
}
