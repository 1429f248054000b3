//! `init`, node listing and cluster info.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;

use super::types::{InitRequest, InitResponse, NodeRow};
use super::{ApiError, Ctx, Identity};
use crate::store::{Change, Object};
use crate::types::*;

pub async fn init(
    State(ctx): State<Arc<Ctx>>,
    Json(req): Json<InitRequest>,
) -> Result<Json<InitResponse>, ApiError> {
    if let Some(id) = ctx.identity.borrow().clone() {
        return Err(ApiError::Conflict(format!(
            "this node is already part of cluster {} (node {})",
            id.cluster_id, id.node_id
        )));
    }
    let advertise = match req.advertise.or_else(|| ctx.advertise.clone()) {
        Some(a) => a,
        None => crate::netaddr::detect_advertise(&ctx.listen)
            .map_err(|e| ApiError::BadRequest(format!("{e}; pass --advertise ADDR")))?,
    };
    let identity = Identity {
        cluster_id: new_id(),
        node_id: new_id(),
    };
    let cluster = Cluster {
        id: identity.cluster_id.clone(),
        meta: Meta::default(),
        heartbeat_period_ms: 1_000,
        task_history_limit: 5,
    };
    let node = Node {
        id: identity.node_id.clone(),
        meta: Meta::default(),
        spec: NodeSpec {
            role: NodeRole::Manager,
            availability: Availability::Active,
            labels: Default::default(),
        },
        description: crate::daemon::describe_node(&ctx.exec).await,
        status: NodeStatus {
            state: NodeState::Ready,
            message: String::new(),
            addr: advertise.clone(),
        },
        manager: Some(ManagerStatus {
            leader: true,
            addr: advertise.clone(),
        }),
        version: crate::VERSION.to_string(),
    };
    ctx.proposer
        .propose(vec![
            Change::Create(Object::Cluster(cluster)),
            Change::Create(Object::Node(node)),
        ])
        .await?;
    crate::daemon::save_identity(&ctx.data_dir, &identity)
        .map_err(|e| ApiError::Internal(format!("cannot save node identity: {e}")))?;
    ctx.identity.send_replace(Some(identity.clone()));
    Ok(Json(InitResponse {
        cluster_id: identity.cluster_id,
        node_id: identity.node_id,
        advertise,
    }))
}

pub async fn info(State(ctx): State<Arc<Ctx>>) -> Result<Json<Identity>, ApiError> {
    Ok(Json(ctx.identity()?))
}

pub async fn nodes(State(ctx): State<Arc<Ctx>>) -> Result<Json<Vec<NodeRow>>, ApiError> {
    ctx.identity()?;
    let mut nodes = ctx.store.read()?.nodes()?;
    nodes.sort_by(|a, b| a.description.hostname.cmp(&b.description.hostname));
    Ok(Json(nodes.iter().map(NodeRow::new).collect()))
}

pub async fn node(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> Result<Json<NodeRow>, ApiError> {
    let me = ctx.identity()?;
    let id = if id == "self" { me.node_id } else { id };
    let nodes = ctx.store.read()?.nodes()?;
    let matches: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.id == id || n.description.hostname == id)
        .collect();
    let found = match matches.as_slice() {
        [n] => *n,
        [] => {
            let mut by_prefix = nodes.iter().filter(|n| n.id.starts_with(&id));
            match (by_prefix.next(), by_prefix.next()) {
                (Some(n), None) => n,
                _ => return Err(ApiError::NotFound(format!("node {id} not found"))),
            }
        }
        _ => {
            return Err(ApiError::BadRequest(format!(
                "{id} names more than one node; use the node id"
            )))
        }
    };
    Ok(Json(NodeRow::new(found)))
}
