//! `init`, node listing and cluster info.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;

use super::types::{InitRequest, InitResponse, NodeRow};
use super::{ApiError, Ctx, Identity};
use crate::node::{Launch, NodeError};
use crate::store::{Change, Object};
use crate::types::*;

/// Node certificates last 90 days unless `init --cert-expiry` says.
const DEFAULT_CERT_EXPIRY_MS: u64 = 90 * 24 * 3600 * 1000;

pub async fn init(
    State(ctx): State<Arc<Ctx>>,
    Json(req): Json<InitRequest>,
) -> Result<Json<InitResponse>, ApiError> {
    if req.force_new_cluster {
        return super::force::force_new_cluster(&ctx).await.map(Json);
    }
    if let Some(id) = ctx.node.identity() {
        return Err(NodeError::AlreadyInCluster {
            cluster_id: id.cluster_id,
            node_id: id.node_id,
        }
        .into());
    }
    let advertise = match req.advertise.or_else(|| ctx.advertise.clone()) {
        Some(a) => a,
        None => crate::netaddr::detect_advertise(&ctx.listen)
            .map_err(|e| ApiError::BadRequest(format!("{e}; give the address to advertise")))?,
    };
    let identity = Identity {
        cluster_id: new_id(),
        node_id: new_id(),
        role: NodeRole::Manager,
    };
    let expiry = req.cert_expiry_ms.unwrap_or(DEFAULT_CERT_EXPIRY_MS);
    if expiry < 60_000 {
        return Err(ApiError::BadRequest(
            "the certificate expiry must be at least 1m".into(),
        ));
    }
    let addr_pool = match &req.addr_pool {
        Some(p) => crate::ipam::parse_pool(p).map_err(ApiError::BadRequest)?,
        None => crate::ipam::parse_pool(crate::ipam::DEFAULT_POOL).map_err(ApiError::Internal)?,
    };
    let hostname = crate::host::hostname();
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
        bind_prefixes: Vec::new(),
        allow_privileged: false,
        id: identity.cluster_id.clone(),
        meta: Meta::default(),
        heartbeat_period_ms: 1_000,
        task_history_limit: 5,
        cert_expiry_ms: expiry,
        ca_cert_pem,
        ca_key_pem,
        join_tokens: pki.tokens,
        removed_nodes: Vec::new(),
        snapshot_interval: DEFAULT_SNAPSHOT_INTERVAL,
        unlock_key: None,
        restart_grace_ms: crate::types::DEFAULT_RESTART_GRACE_MS,
        registries: Vec::new(),
        image_gc: Default::default(),
        addr_pool: addr_pool.to_string(),
    };
    let worker_token = cluster.join_tokens.worker.to_string();
    let mut node = Node::joined(
        identity.node_id.clone(),
        NodeRole::Manager,
        crate::host::describe(ctx.images.as_ref(), &ctx.data_dir).await,
        advertise.clone(),
        crate::VERSION.to_string(),
    );
    node.status.state = NodeState::Ready;
    node.status.message = String::new();
    node.bridge_subnet = crate::ipam::next_subnet(&addr_pool, crate::ipam::SUBNET_PREFIX, &[])
        .map(|s| s.to_string());
    // The manager's components start a one-member Raft; the cluster's
    // first objects are its first entries.
    ctx.node.start(identity.clone(), Launch::Bootstrap).await?;
    ctx.proposer
        .propose(vec![
            Change::Create(Object::Cluster(cluster)),
            Change::Create(Object::Node(node)),
        ])
        .await?;
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
    ctx.proposer.barrier().await?;
    let mut nodes = ctx.store.read()?.nodes()?;
    nodes.sort_by(|a, b| a.description.hostname.cmp(&b.description.hostname));
    let raft = ctx.raft_view();
    Ok(Json(nodes.iter().map(|n| NodeRow::new(n, &raft)).collect()))
}

pub async fn node(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> Result<Json<NodeRow>, ApiError> {
    let me = ctx.identity()?;
    let id = if id == "self" { me.node_id } else { id };
    ctx.proposer.barrier().await?;
    let found = find_node(&ctx.store.read()?.nodes()?, &id)?;
    Ok(Json(NodeRow::new(&found, &ctx.raft_view())))
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

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct NodeUpdate {
    pub availability: Option<Availability>,
    pub label_add: Vec<(String, String)>,
    pub label_rm: Vec<String>,
}

pub(super) fn find_node(nodes: &[Node], id: &str) -> Result<Node, ApiError> {
    let exact: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.id == id || n.description.hostname == id)
        .collect();
    match exact.as_slice() {
        [n] => return Ok((*n).clone()),
        [] => {}
        _ => {
            return Err(ApiError::BadRequest(format!(
                "{id} names more than one node; use the node id"
            )))
        }
    }
    let mut by_prefix = nodes.iter().filter(|n| n.id.starts_with(id));
    match (by_prefix.next(), by_prefix.next()) {
        (Some(n), None) if !id.is_empty() => Ok(n.clone()),
        _ => Err(ApiError::NotFound(format!("node {id} not found"))),
    }
}

pub async fn update_node(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    Json(req): Json<NodeUpdate>,
) -> Result<Json<NodeRow>, ApiError> {
    let me = ctx.identity()?;
    let id = if id == "self" { me.node_id } else { id };
    let mut node = find_node(&ctx.store.read()?.nodes()?, &id)?;
    if let Some(a) = req.availability {
        node.spec.availability = a;
    }
    for k in &req.label_rm {
        if node.spec.labels.remove(k).is_none() {
            return Err(ApiError::BadRequest(format!("node {id} has no label {k}")));
        }
    }
    for (k, v) in req.label_add {
        node.spec.labels.insert(k, v);
    }
    ctx.proposer
        .propose(vec![Change::Update(Object::Node(node.clone()))])
        .await?;
    let node = ctx.store.read()?.node(&node.id)?.unwrap_or(node);
    Ok(Json(NodeRow::new(&node, &ctx.raft_view())))
}

#[derive(serde::Deserialize)]
pub struct ForceQuery {
    #[serde(default)]
    force: bool,
}

/// Remove a node. A ready node is refused unless forced: its tasks would
/// be lost from view while it runs them. Its certificate is refused from
/// now on, and its open session ends within a heartbeat period.
pub async fn remove_node(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<ForceQuery>,
) -> Result<Json<NodeRow>, ApiError> {
    let me = ctx.identity()?;
    let view = ctx.store.read()?;
    let node = find_node(&view.nodes()?, &id)?;
    if node.id == me.node_id {
        return Err(ApiError::BadRequest(format!(
            "node {} is this manager: run `shoal node rm` on another manager",
            node.id
        )));
    }
    if node.status.state == NodeState::Ready && !q.force {
        return Err(ApiError::Conflict(format!(
            "node {} is ready: make it leave first (`shoal leave` on it), or force its removal",
            node.id
        )));
    }
    let is_manager = node.spec.role == NodeRole::Manager;
    let mut cluster = view
        .cluster()?
        .ok_or_else(|| ApiError::Internal("no cluster object".into()))?;
    drop(view);
    if is_manager {
        // Out of the Raft membership first, so the quorum no longer counts
        // it; then its certificate is refused.
        ctx.membership().remove(&node.id).await?;
    }
    cluster.removed_nodes.push(node.id.clone());
    ctx.proposer
        .propose(vec![
            Change::Update(Object::Cluster(cluster)),
            Change::Delete {
                kind: crate::store::Kind::Node,
                id: node.id.clone(),
                expected_version: Some(node.meta.version),
            },
        ])
        .await?;
    Ok(Json(NodeRow::new(&node, &ctx.raft_view())))
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ClusterUpdate {
    pub cert_expiry_ms: Option<u64>,
    pub heartbeat_period_ms: Option<u64>,
    /// Raft log entries between snapshots.
    #[serde(default)]
    pub snapshot_interval: Option<u64>,
    #[serde(default)]
    pub autolock: Option<bool>,
    /// How long the tasks of a node that said it is restarting are held.
    #[serde(default)]
    pub restart_grace_ms: Option<u64>,
    /// Image GC: start past this share of the image disk (percent)…
    #[serde(default)]
    pub image_gc_high_percent: Option<u8>,
    /// … and stop below this one.
    #[serde(default)]
    pub image_gc_low_percent: Option<u8>,
    /// Images younger than this on a node are kept.
    #[serde(default)]
    pub image_gc_min_age_ms: Option<u64>,
    /// In the reply, when autolock is on: the key to unlock managers with.
    #[serde(default)]
    pub unlock_key: Option<String>,
    /// Node paths that services may bind-mount (and under): to add, to
    /// remove; the reply lists them all in `bind_allow`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bind_allow_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bind_allow_rm: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_allow: Option<Vec<String>>,
    /// Whether services may be `--privileged`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privileged: Option<bool>,
}

/// Cluster-wide settings. New certificate lengths apply from each node's
/// next renewal; a new heartbeat period reaches nodes on their next session
/// message and the managers' liveness checks at once.
pub async fn update_cluster(
    State(ctx): State<Arc<Ctx>>,
    Json(req): Json<ClusterUpdate>,
) -> Result<Json<ClusterUpdate>, ApiError> {
    ctx.identity()?;
    let mut cluster = ctx
        .store
        .read()?
        .cluster()?
        .ok_or_else(|| ApiError::Internal("no cluster object".into()))?;
    if let Some(ms) = req.cert_expiry_ms {
        if ms < 60_000 {
            return Err(ApiError::BadRequest(
                "the certificate expiry must be at least 1m".into(),
            ));
        }
        cluster.cert_expiry_ms = ms;
    }
    if let Some(ms) = req.heartbeat_period_ms {
        if !(100..=60_000).contains(&ms) {
            return Err(ApiError::BadRequest(
                "the heartbeat period must be between 100ms and 1m".into(),
            ));
        }
        cluster.heartbeat_period_ms = ms;
    }
    if let Some(n) = req.snapshot_interval {
        if !(10..=1_000_000).contains(&n) {
            return Err(ApiError::BadRequest(
                "the snapshot interval must be between 10 and 1000000 log entries".into(),
            ));
        }
        cluster.snapshot_interval = n;
    }
    if let Some(ms) = req.restart_grace_ms {
        if ms > crate::types::MAX_RESTART_GRACE_MS {
            return Err(ApiError::BadRequest(
                "the restart grace period must be at most 24h".into(),
            ));
        }
        cluster.restart_grace_ms = ms;
    }
    let mut gc = cluster.image_gc;
    gc.high_percent = req.image_gc_high_percent.unwrap_or(gc.high_percent);
    gc.low_percent = req.image_gc_low_percent.unwrap_or(gc.low_percent);
    gc.min_age_ms = req.image_gc_min_age_ms.unwrap_or(gc.min_age_ms);
    gc.check().map_err(ApiError::BadRequest)?;
    cluster.image_gc = gc;
    if let Some(on) = req.autolock {
        super::lock::set_autolock(&mut cluster, on)?;
    }
    for p in &req.bind_allow_rm {
        let p = clean_path(p).map_err(ApiError::BadRequest)?;
        if !cluster.bind_prefixes.contains(&p) {
            return Err(ApiError::BadRequest(format!(
                "{p} is not an allowed bind prefix"
            )));
        }
        cluster.bind_prefixes.retain(|x| *x != p);
    }
    for p in &req.bind_allow_add {
        let p = clean_path(p).map_err(ApiError::BadRequest)?;
        if !cluster.bind_prefixes.contains(&p) {
            cluster.bind_prefixes.push(p);
        }
    }
    if let Some(on) = req.allow_privileged {
        cluster.allow_privileged = on;
    }
    let out = ClusterUpdate {
        cert_expiry_ms: Some(cluster.cert_expiry_ms),
        heartbeat_period_ms: Some(cluster.heartbeat_period_ms),
        snapshot_interval: Some(cluster.snapshot_interval),
        autolock: Some(cluster.unlock_key.is_some()),
        restart_grace_ms: Some(cluster.restart_grace_ms),
        image_gc_high_percent: Some(gc.high_percent),
        image_gc_low_percent: Some(gc.low_percent),
        image_gc_min_age_ms: Some(gc.min_age_ms),
        unlock_key: req
            .autolock
            .filter(|on| *on)
            .and(cluster.unlock_key.clone()),
        bind_allow_add: Vec::new(),
        bind_allow_rm: Vec::new(),
        bind_allow: Some(cluster.bind_prefixes.clone()),
        allow_privileged: Some(cluster.allow_privileged),
    };
    ctx.proposer
        .propose(vec![Change::Update(Object::Cluster(cluster))])
        .await?;
    Ok(Json(out))
}
