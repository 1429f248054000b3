//! `init`, node listing and cluster info.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;

use super::types::{InitRequest, InitResponse, NodeRow};
use super::{ApiError, Ctx, Identity};
use crate::store::{Change, Object};
use crate::types::*;

/// Node certificates last 90 days unless `init --cert-expiry` says.
const DEFAULT_CERT_EXPIRY_MS: u64 = 90 * 24 * 3600 * 1000;

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
        role: NodeRole::Manager,
    };
    let expiry = req.cert_expiry_ms.unwrap_or(DEFAULT_CERT_EXPIRY_MS);
    if expiry < 60_000 {
        return Err(ApiError::BadRequest(
            "--cert-expiry must be at least 1m".into(),
        ));
    }
    let hostname = crate::daemon::hostname();
    let pki = crate::pki::bootstrap_cluster(
        &ctx.data_dir,
        &identity.cluster_id,
        &identity.node_id,
        &crate::pki::sans_for(&advertise, &hostname),
        std::time::Duration::from_millis(expiry),
    )
    .map_err(|e| ApiError::Internal(format!("cannot create the cluster's CA: {e}")))?;
    let (ca_cert_pem, ca_key_pem) = pki.ca.to_pem();
    let cluster = Cluster {
        id: identity.cluster_id.clone(),
        meta: Meta::default(),
        heartbeat_period_ms: 1_000,
        task_history_limit: 5,
        cert_expiry_ms: expiry,
        ca_cert_pem,
        ca_key_pem,
        join_tokens: pki.tokens,
        removed_nodes: Vec::new(),
    };
    let worker_token = cluster.join_tokens.worker.to_string();
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
        worker_token,
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

#[derive(serde::Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    rotate: bool,
}

/// The join token of a role; with `rotate`, a new secret first (the old
/// token is refused from then on).
pub async fn join_token(
    State(ctx): State<Arc<Ctx>>,
    Path(role): Path<String>,
    axum::extract::Query(q): axum::extract::Query<TokenQuery>,
) -> Result<Json<String>, ApiError> {
    ctx.identity()?;
    let role = match role.as_str() {
        "worker" => NodeRole::Worker,
        "manager" => NodeRole::Manager,
        other => {
            return Err(ApiError::BadRequest(format!(
                "unknown role {other:?}: expected worker or manager"
            )))
        }
    };
    let mut cluster = ctx
        .store
        .read()?
        .cluster()?
        .ok_or_else(|| ApiError::Internal("no cluster object".into()))?;
    if q.rotate {
        cluster.join_tokens.rotate(role);
        let token = cluster.join_tokens.get(role).to_string();
        ctx.proposer
            .propose(vec![Change::Update(Object::Cluster(cluster))])
            .await?;
        return Ok(Json(token));
    }
    Ok(Json(cluster.join_tokens.get(role).to_string()))
}
