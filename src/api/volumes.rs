//! `volume create|ls|inspect|rm|prune`: a node's named volumes, asked of
//! the node over mTLS (`NodeAgent.Volumes`), this manager's own of itself.
//! What uses a volume is the cluster's to say: a volume that a task on
//! its node still has (not ended) is never removed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{ApiError, Ctx};
use crate::rpc::messages::{VolumesOp, VolumesReply};
use crate::store::ReadView;
use crate::types::{check_volume_name, Node, VolumeInfo};

/// How long one node may take (a size count of a large volume).
const NODE_TIMEOUT: Duration = Duration::from_secs(60);

/// A volume on a node, and the tasks there that use it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeRow {
    pub node_id: String,
    pub node: String,
    #[serde(flatten)]
    pub info: VolumeInfo,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
}

/// One node's answer: its volumes (and what it removed), or why none.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeVolumes {
    pub node_id: String,
    pub hostname: String,
    #[serde(default)]
    pub volumes: Vec<VolumeRow>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct NodeQuery {
    /// A node id or hostname; absent: every node (this one, for create).
    #[serde(default)]
    node: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct VolumeCreate {
    pub name: String,
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The tasks on `node` that use volume `name` and have not ended.
fn users(view: &ReadView, node: &str, name: &str) -> Result<Vec<String>, ApiError> {
    Ok(view
        .tasks()?
        .iter()
        .filter(|t| t.node_id.as_deref() == Some(node) && !t.status.state.is_terminal())
        .filter(|t| t.spec.volume_names().any(|v| v == name))
        .map(|t| t.display_name())
        .collect())
}

/// The nodes `q` names: one, or all.
fn chosen(view: &ReadView, q: &NodeQuery) -> Result<Vec<Node>, ApiError> {
    let nodes = view.nodes()?;
    match &q.node {
        Some(n) => Ok(vec![super::cluster::find_node(&nodes, n)?]),
        None => Ok(nodes),
    }
}

/// Asks `node` to do `op`: itself when it is this manager's node.
async fn ask(ctx: &Ctx, me: &str, node: &Node, op: VolumesOp) -> Result<VolumesReply, ApiError> {
    let err = |e: String| ApiError::Unavailable(format!("node {}: {e}", node.description.hostname));
    if node.id == me {
        let v = crate::agent::volumes::Volumes::at(&ctx.data_dir);
        let r = tokio::task::spawn_blocking(move || v.apply(&op))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        return r.map_err(|e| match e {
            crate::agent::volumes::VolumeError::NotFound(_) => ApiError::NotFound(e.to_string()),
            crate::agent::volumes::VolumeError::Invalid(_) => ApiError::BadRequest(e.to_string()),
            e => ApiError::Unavailable(e.to_string()),
        });
    }
    let call = async {
        let mut client = super::node_images::node_client(ctx, node)
            .await
            .map_err(err)?;
        client.volumes(op).await.map_err(|s| match s.code() {
            tonic::Code::NotFound => ApiError::NotFound(s.message().to_string()),
            tonic::Code::InvalidArgument => ApiError::BadRequest(s.message().to_string()),
            tonic::Code::Unimplemented => err("it runs an older shoal, without volumes".into()),
            _ => err(s.message().to_string()),
        })
    };
    match tokio::time::timeout(NODE_TIMEOUT, call).await {
        Ok(r) => Ok(r?.into_inner()),
        Err(_) => Err(err("no answer in time".into())),
    }
}

fn rows(view: &ReadView, node: &Node, r: VolumesReply) -> Result<NodeVolumes, ApiError> {
    let volumes = r
        .volumes
        .into_iter()
        .map(|info| {
            Ok(VolumeRow {
                node_id: node.id.clone(),
                node: node.description.hostname.clone(),
                used_by: users(view, &node.id, &info.name)?,
                info,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(NodeVolumes {
        node_id: node.id.clone(),
        hostname: node.description.hostname.clone(),
        volumes,
        removed: r.removed,
        error: None,
    })
}

/// `op` on every node `nodes`, concurrently; a node that cannot answer is
/// named with why.
async fn on_nodes(
    ctx: &Arc<Ctx>,
    nodes: Vec<Node>,
    op: impl Fn(&Node) -> VolumesOp,
) -> Result<Vec<NodeVolumes>, ApiError> {
    let me = ctx.identity()?.node_id;
    let asks = nodes.into_iter().map(|n| {
        let (ctx, me, op) = (ctx.clone(), me.clone(), op(&n));
        async move {
            let r = ask(&ctx, &me, &n, op).await;
            (n, r)
        }
    });
    let view = ctx.read_current().await?;
    let mut out = Vec::new();
    for (n, r) in futures::future::join_all(asks).await {
        out.push(match r {
            Ok(r) => rows(&view, &n, r)?,
            Err(e) => NodeVolumes {
                node_id: n.id.clone(),
                hostname: n.description.hostname.clone(),
                error: Some(e.to_string()),
                ..Default::default()
            },
        });
    }
    out.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.node_id.cmp(&b.node_id)));
    Ok(out)
}

/// `volume ls [--node N]`.
pub async fn list(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<NodeQuery>,
) -> Result<Json<Vec<NodeVolumes>>, ApiError> {
    let nodes = chosen(&ctx.read_current().await?, &q)?;
    Ok(Json(on_nodes(&ctx, nodes, |_| VolumesOp::default()).await?))
}

/// `volume create [--node N] NAME`: on that node, else this one.
pub async fn create(
    State(ctx): State<Arc<Ctx>>,
    Json(req): Json<VolumeCreate>,
) -> Result<Json<VolumeRow>, ApiError> {
    check_volume_name(&req.name).map_err(ApiError::BadRequest)?;
    let view = ctx.read_current().await?;
    let me = ctx.identity()?.node_id;
    let node = match &req.node {
        Some(n) => super::cluster::find_node(&view.nodes()?, n)?,
        None => view
            .node(&me)?
            .ok_or_else(|| ApiError::NotFound("this node is not in the store yet".into()))?,
    };
    let op = VolumesOp {
        create: Some(req.name.clone()),
        labels: req.labels,
        ..Default::default()
    };
    let r = ask(&ctx, &me, &node, op).await?;
    if node.id == me {
        ctx.node.refresh().await;
    }
    rows(&view, &node, r)?
        .volumes
        .into_iter()
        .find(|v| v.info.name == req.name)
        .map(Json)
        .ok_or_else(|| ApiError::Internal(format!("volume {} was not made", req.name)))
}

/// `volume inspect [--node N] NAME`: where it is, one row per node.
pub async fn inspect(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    Query(q): Query<NodeQuery>,
) -> Result<Json<Vec<VolumeRow>>, ApiError> {
    check_volume_name(&name).map_err(ApiError::BadRequest)?;
    let nodes = chosen(&ctx.read_current().await?, &q)?;
    let found: Vec<VolumeRow> = on_nodes(&ctx, nodes, |_| VolumesOp::default())
        .await?
        .into_iter()
        .flat_map(|n| n.volumes)
        .filter(|v| v.info.name == name)
        .collect();
    if found.is_empty() {
        return Err(ApiError::NotFound(format!("volume {name} not found")));
    }
    Ok(Json(found))
}

/// `volume rm [--node N] NAME`: refused while a task uses it; without
/// `--node`, from the one node that has it (several: name one).
pub async fn remove(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    Query(q): Query<NodeQuery>,
) -> Result<Json<NodeVolumes>, ApiError> {
    check_volume_name(&name).map_err(ApiError::BadRequest)?;
    let view = ctx.read_current().await?;
    let node = match &q.node {
        Some(n) => super::cluster::find_node(&view.nodes()?, n)?,
        None => {
            let mut has: Vec<Node> = view
                .nodes()?
                .into_iter()
                .filter(|n| n.description.volumes.contains(&name))
                .collect();
            match has.len() {
                0 => return Err(ApiError::NotFound(format!("volume {name} not found"))),
                1 => has.remove(0),
                _ => {
                    let names: Vec<String> =
                        has.iter().map(|n| n.description.hostname.clone()).collect();
                    return Err(ApiError::BadRequest(format!(
                        "volume {name} is on several nodes ({}): name one with --node",
                        names.join(", ")
                    )));
                }
            }
        }
    };
    let used = users(&view, &node.id, &name)?;
    if !used.is_empty() {
        return Err(ApiError::Conflict(format!(
            "volume {name} is in use on {} by {}: remove or update them first",
            node.description.hostname,
            used.join(", ")
        )));
    }
    let me = ctx.identity()?.node_id;
    let op = VolumesOp {
        remove: Some(name),
        ..Default::default()
    };
    let r = ask(&ctx, &me, &node, op).await?;
    if node.id == me {
        ctx.node.refresh().await;
    }
    Ok(Json(rows(&view, &node, r)?))
}

/// `volume prune [--node N]`: every volume no task of its node uses.
pub async fn prune(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<NodeQuery>,
) -> Result<Json<Vec<NodeVolumes>>, ApiError> {
    let view = ctx.read_current().await?;
    let nodes = chosen(&view, &q)?;
    // What each node's tasks use, as the cluster knows it now.
    let tasks = view.tasks()?;
    let keep = move |n: &Node| VolumesOp {
        prune: true,
        keep: tasks
            .iter()
            .filter(|t| {
                t.node_id.as_deref() == Some(n.id.as_str()) && !t.status.state.is_terminal()
            })
            .flat_map(|t| t.spec.volume_names().map(String::from).collect::<Vec<_>>())
            .collect(),
        ..Default::default()
    };
    let out = on_nodes(&ctx, nodes, keep).await?;
    if out.iter().any(|n| !n.removed.is_empty()) {
        ctx.node.refresh().await;
    }
    Ok(Json(out))
}
