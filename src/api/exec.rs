//! `shoal exec`: the CLI's connection is upgraded (`Upgrade: shoal-exec`)
//! to a stream of length-delimited frames, each an `ExecIn` (from the CLI:
//! the start, then input and resizes) or an `ExecOut` (to it: output, then
//! the exit code), encoded as the node messages are. This manager finds
//! the task, and relays both directions to the node that runs it over its
//! mTLS port (`NodeAgent.Exec`), where the process runs and is logged.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tracing::{info, warn};

use super::{ApiError, Ctx};
use crate::rpc::messages::{ExecIn, ExecOut};
use crate::store::ReadView;
use crate::types::Task;

/// The protocol name of the upgrade.
pub const PROTOCOL: &str = "shoal-exec";

/// The largest frame either side sends.
pub const MAX_FRAME: usize = 1 << 20;

/// The codec of an exec connection's frames.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

pub async fn exec(State(ctx): State<Arc<Ctx>>, mut req: Request) -> Result<Response, ApiError> {
    ctx.identity()?;
    let asked = req
        .headers()
        .get(hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        == Some(PROTOCOL);
    if !asked {
        return Err(ApiError::BadRequest(format!(
            "exec needs a connection upgraded to {PROTOCOL}"
        )));
    }
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => serve(ctx, Framed::new(TokioIo::new(io), codec())).await,
            Err(e) => warn!(error = %e, "exec: the upgrade failed"),
        }
    });
    Response::builder()
        .status(hyper::StatusCode::SWITCHING_PROTOCOLS)
        .header(hyper::header::CONNECTION, "upgrade")
        .header(hyper::header::UPGRADE, PROTOCOL)
        .body(Body::empty())
        .map_err(|e| ApiError::Internal(e.to_string()))
}

type Conn = Framed<TokioIo<hyper::upgrade::Upgraded>, LengthDelimitedCodec>;

async fn serve(ctx: Arc<Ctx>, conn: Conn) {
    let (mut sink, mut frames) = conn.split();
    let out = |o: &ExecOut| bytes::Bytes::from(crate::format::encode(o));
    if let Err(e) = relay(&ctx, &mut sink, &mut frames).await {
        let _ = sink.send(out(&ExecOut::Error(e))).await;
    }
    let _ = sink.close().await;
}

/// The task `name` names: its id, a unique prefix of one, or
/// `SERVICE.SLOT` (the slot's task that runs).
fn find_task(view: &ReadView, name: &str) -> Result<Task, String> {
    let tasks = view.tasks().map_err(|e| e.to_string())?;
    if let Some(t) = tasks.iter().find(|t| t.id == name) {
        return Ok(t.clone());
    }
    let live = |t: &&Task| t.is_live();
    if let Some((service, slot)) = name.rsplit_once('.') {
        if let Ok(slot) = slot.parse::<u64>() {
            let mut of_slot: Vec<&Task> = tasks
                .iter()
                .filter(|t| t.service_name == service && t.slot == slot)
                .filter(live)
                .collect();
            of_slot.sort_by_key(|t| std::cmp::Reverse(t.meta.created_ms));
            return of_slot
                .first()
                .map(|t| (*t).clone())
                .ok_or_else(|| format!("no task of {name} is running"));
        }
    }
    let by_prefix: Vec<&Task> = tasks
        .iter()
        .filter(|t| name.len() >= 4 && t.id.starts_with(name))
        .collect();
    match by_prefix.as_slice() {
        [t] => Ok((*t).clone()),
        [] => Err(format!("no such task: {name} (a task id, or SERVICE.SLOT)")),
        _ => Err(format!(
            "{name} names more than one task: give more of its id"
        )),
    }
}

async fn relay(
    ctx: &Arc<Ctx>,
    sink: &mut futures::stream::SplitSink<Conn, bytes::Bytes>,
    frames: &mut futures::stream::SplitStream<Conn>,
) -> Result<(), String> {
    let decode = |b: &[u8]| crate::format::decode::<ExecIn>(b).map_err(|e| e.to_string());
    let first = match frames.next().await {
        Some(Ok(f)) => decode(&f)?,
        _ => return Err("the exec connection closed before it said what to run".into()),
    };
    let ExecIn::Start(mut start) = first else {
        return Err("an exec starts with what to run".into());
    };
    let view = ctx.read_current().await.map_err(|e| e.to_string())?;
    let task = find_task(&view, &start.task)?;
    if task.status.state != crate::types::TaskState::Running {
        return Err(format!(
            "task {} is {}, not running",
            task.display_name(),
            task.status.state
        ));
    }
    let node = task
        .node_id
        .as_deref()
        .and_then(|n| view.node(n).ok().flatten())
        .ok_or_else(|| format!("task {} has no node", task.display_name()))?;
    start.task = task.id.clone();
    start.who = format!("cli of manager {}", crate::host::hostname());
    info!(task = %task.display_name(), node = %node.description.hostname, args = ?start.args, "exec");
    let channel = super::node_images::node_channel(ctx, &node).await?;
    let mut client = crate::rpc::limited!(
        crate::rpc::pb::v2::node_agent_client::NodeAgentClient::new(channel)
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<ExecIn>(64);
    tx.send(ExecIn::Start(start))
        .await
        .map_err(|e| e.to_string())?;
    let mut output = client
        .exec(ReceiverStream::new(rx))
        .await
        .map_err(|s| match s.code() {
            tonic::Code::Unimplemented => format!(
                "node {} runs an older shoal, without exec",
                node.description.hostname
            ),
            _ => s.message().to_string(),
        })?
        .into_inner();
    loop {
        tokio::select! {
            f = frames.next() => match f {
                Some(Ok(f)) => {
                    let msg = decode(&f)?;
                    if tx.send(msg).await.is_err() {
                        // The node's side ended: its last words follow.
                        continue;
                    }
                }
                // The CLI went: the node's process is killed when this
                // stream is dropped.
                _ => return Ok(()),
            },
            o = output.message() => match o {
                Ok(Some(o)) => {
                    let last = matches!(o, ExecOut::Exit(_) | ExecOut::Error(_));
                    sink.send(bytes::Bytes::from(crate::format::encode(&o)))
                        .await
                        .map_err(|e| e.to_string())?;
                    if last {
                        return Ok(());
                    }
                }
                Ok(None) => return Err("the node ended the exec without an exit code".into()),
                Err(s) => return Err(s.message().to_string()),
            },
        }
    }
}
