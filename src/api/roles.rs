//! `node promote` and `node demote`. The store says what a node is; the
//! node learns it on its session, gets a certificate for its new role and
//! restarts its components as that role. A promoted node then asks the
//! leader to make it a Raft voter; a demoted one is taken out of the
//! membership here.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::cluster::find_node;
use super::{ApiError, Ctx};
use crate::store::{Change, Object};
use crate::types::NodeRole;

#[derive(Debug, Serialize, Deserialize)]
pub struct RoleChange {
    pub node_id: String,
    pub role: NodeRole,
    /// False when the node already had the role.
    pub changed: bool,
    /// Managers the quorum counts after the change (Raft voters; a node
    /// the store calls a manager but that never became a voter, such as
    /// one whose join failed, is not counted).
    pub managers: usize,
}

pub async fn promote(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> Result<Json<RoleChange>, ApiError> {
    set_role(&ctx, &id, NodeRole::Manager).await.map(Json)
}

pub async fn demote(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> Result<Json<RoleChange>, ApiError> {
    set_role(&ctx, &id, NodeRole::Worker).await.map(Json)
}

async fn set_role(ctx: &Ctx, id: &str, role: NodeRole) -> Result<RoleChange, ApiError> {
    let view = ctx.read_current().await?;
    let nodes = view.nodes()?;
    drop(view);
    let node = find_node(&nodes, id)?;
    let voters = ctx.membership().members().voters;
    let is_voter = voters.contains(&node.id);
    if node.spec.role == role {
        return Ok(RoleChange {
            node_id: node.id,
            role,
            changed: false,
            managers: voters.len(),
        });
    }
    let stored_managers = nodes
        .iter()
        .filter(|n| n.spec.role == NodeRole::Manager)
        .count();
    if role == NodeRole::Worker && stored_managers <= 1 {
        return Err(ApiError::BadRequest(format!(
            "node {} is the last manager: promote another node before demoting it",
            node.id
        )));
    }
    let mut updated = node.clone();
    updated.spec.role = role;
    ctx.proposer
        .propose(vec![Change::Update(Object::Node(updated))])
        .await?;
    if role == NodeRole::Worker {
        // The store already calls it a worker; now the quorum stops
        // counting it.
        ctx.membership().remove(&node.id).await?;
    }
    Ok(RoleChange {
        node_id: node.id,
        role,
        changed: true,
        // The promoted node becomes a voter once it asks the leader; the
        // demoted one was just taken out.
        managers: match role {
            NodeRole::Manager => voters.len() + usize::from(!is_voter),
            NodeRole::Worker => voters.len() - usize::from(is_voter),
        },
    })
}
