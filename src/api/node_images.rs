//! `image ls|rm|prune --all-nodes`: the request goes to every node of the
//! cluster (over mTLS, `NodeAgent.Images`), this manager's own images are
//! asked of its own node, and each node's answer, or why there is none,
//! comes back in one list. A node that is down is named, never waited on
//! past a bound.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::Json;

use super::types::NodeImages;
use super::{ApiError, Ctx};
use crate::agent::images::RemoveError;
use crate::rpc::messages::ImagesOp;
use crate::types::Node;

/// How long one node may take: a prune of many images takes a while.
const NODE_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(serde::Deserialize)]
pub struct RemoveQuery {
    name: String,
}

#[derive(serde::Deserialize)]
pub struct PruneQuery {
    #[serde(default)]
    all_nodes: bool,
}

/// `image ls --all-nodes`.
pub async fn list(State(ctx): State<Arc<Ctx>>) -> Result<Json<Vec<NodeImages>>, ApiError> {
    Ok(Json(on_nodes(&ctx, ImagesOp::default(), true).await?))
}

/// `image rm --all-nodes NAME`: on every node that has it; a node where it
/// is in use keeps it and says so.
pub async fn remove(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<RemoveQuery>,
) -> Result<Json<Vec<NodeImages>>, ApiError> {
    crate::types::normalize_image(&q.name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let op = ImagesOp {
        remove: Some(q.name),
        prune: false,
    };
    Ok(Json(on_nodes(&ctx, op, true).await?))
}

/// `image prune [--all-nodes]`: removes every image nothing uses.
pub async fn prune(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<PruneQuery>,
) -> Result<Json<Vec<NodeImages>>, ApiError> {
    let op = ImagesOp {
        remove: None,
        prune: true,
    };
    Ok(Json(on_nodes(&ctx, op, q.all_nodes).await?))
}

/// Applies `op` on every node (or on this one only), concurrently.
async fn on_nodes(ctx: &Arc<Ctx>, op: ImagesOp, all: bool) -> Result<Vec<NodeImages>, ApiError> {
    if !all {
        let mut here = NodeImages {
            hostname: crate::host::hostname(),
            ..Default::default()
        };
        if let Some(id) = ctx.node.identity() {
            here.node_id = id.node_id;
        }
        local(ctx, &op, &mut here).await;
        return Ok(vec![here]);
    }
    let me = ctx.identity()?.node_id;
    let nodes = ctx.read_current().await?.nodes()?;
    let asks = nodes.into_iter().map(|n| {
        let ctx = ctx.clone();
        let op = op.clone();
        let me = me.clone();
        async move {
            let mut out = NodeImages {
                node_id: n.id.clone(),
                hostname: n.description.hostname.clone(),
                ..Default::default()
            };
            if n.id == me {
                local(&ctx, &op, &mut out).await;
            } else {
                match tokio::time::timeout(NODE_TIMEOUT, remote(&ctx, &n, op)).await {
                    Ok(Ok(r)) => out.on = r,
                    Ok(Err(Failed { not_found, why })) => {
                        out.error = Some(why);
                        out.not_found = not_found;
                    }
                    Err(_) => out.error = Some("the node did not answer in time".into()),
                }
            }
            out
        }
    });
    let mut all = futures::future::join_all(asks).await;
    all.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.node_id.cmp(&b.node_id)));
    Ok(all)
}

async fn local(ctx: &Ctx, op: &ImagesOp, out: &mut NodeImages) {
    match ctx.image_keeper.apply(op.remove.as_deref(), op.prune).await {
        Ok(r) => {
            let changed = !r.removed.is_empty();
            out.on = r;
            if changed {
                ctx.node.refresh().await;
            }
        }
        Err(e) => {
            out.error = Some(e.to_string());
            out.not_found = matches!(e, RemoveError::NotFound(_));
        }
    }
}

/// Why a node gave no list: `not_found` when it lacks the image to remove.
struct Failed {
    not_found: bool,
    why: String,
}

impl From<String> for Failed {
    fn from(why: String) -> Self {
        Failed {
            not_found: false,
            why,
        }
    }
}

/// A client of `node`'s agent service, over mTLS with this manager's
/// certificate; or why it cannot be reached.
pub(super) async fn node_client(
    ctx: &Ctx,
    node: &Node,
) -> Result<crate::rpc::compat::NodeAgentClient, String> {
    Ok(crate::rpc::compat::NodeAgentClient::new(
        node_channel(ctx, node).await?,
    ))
}

/// An mTLS channel to `node`'s port, with this manager's certificate.
pub(super) async fn node_channel(
    ctx: &Ctx,
    node: &Node,
) -> Result<tonic::transport::Channel, String> {
    let addr = &node.status.addr;
    if addr.is_empty() {
        return Err("the node has no known address".into());
    }
    let tls = crate::pki::NodeTls::load(&ctx.data_dir, &ctx.keys).map_err(|e| e.to_string())?;
    let cfg = crate::tls::client_config(&tls.ca_pem, Some(tls.cert.clone()))
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(
        Duration::from_secs(5),
        crate::rpc::transport::connect(addr, cfg, &node.id),
    )
    .await
    .map_err(|_| format!("cannot reach {addr}: timed out"))?
    .map_err(|e| format!("cannot reach {addr}: {e}"))
}

async fn remote(
    ctx: &Ctx,
    node: &Node,
    op: ImagesOp,
) -> Result<crate::rpc::messages::ImagesReply, Failed> {
    let mut client = node_client(ctx, node).await?;
    match client.images(op).await {
        Ok(r) => Ok(r.into_inner()),
        // A node of an older release has no such route.
        Err(s) if s.code() == tonic::Code::Unimplemented => {
            Err(String::from("the node runs an older shoal, which cannot do this").into())
        }
        Err(s) => Err(Failed {
            not_found: s.code() == tonic::Code::NotFound,
            why: s.message().to_string(),
        }),
    }
}
