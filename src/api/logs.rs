//! `service logs`: the lines of every task of a service, streamed as
//! newline-delimited JSON. Without `follow`, the lines of each task are
//! read, merged by timestamp and sent; with it, new lines (and the lines of
//! tasks that start later) keep coming until the client hangs up.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use tokio::sync::mpsc;

use super::types::LogEntry;
use super::{ApiError, Ctx};
use crate::types::Task;

#[derive(serde::Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    follow: bool,
    tail: Option<usize>,
}

pub async fn service_logs(
    State(ctx): State<Arc<Ctx>>,
    Path(name): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    ctx.identity()?;
    let service = ctx
        .store
        .read()?
        .find_service(&name)?
        .ok_or_else(|| ApiError::NotFound(format!("service {name} not found")))?;
    let (tx, rx) = mpsc::channel::<LogEntry>(256);
    if q.follow {
        tokio::spawn(follow(ctx.clone(), service.id.clone(), q.tail, tx));
    } else {
        tokio::spawn(read_all(ctx.clone(), service.id.clone(), q.tail, tx));
    }
    let body = futures::stream::unfold(rx, |mut rx| async move {
        let entry = rx.recv().await?;
        let mut line = serde_json::to_vec(&entry).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(line), rx))
    });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// A task with its display source and where it ran.
struct Source {
    task: Task,
    label: String,
    /// The node's address, when the task ran on another node.
    remote: Option<(String, String)>,
}

fn tasks_of(ctx: &Ctx, service_id: &str) -> Vec<Source> {
    let Ok(view) = ctx.store.read() else {
        return Vec::new();
    };
    let me = ctx.identity().map(|i| i.node_id).unwrap_or_default();
    let nodes = view.nodes().unwrap_or_default();
    let mut tasks = view.tasks_of_service(service_id).unwrap_or_default();
    tasks.retain(|t| t.status.container_id.is_some());
    tasks.sort_by_key(|t| (t.slot, t.meta.created_ms));
    tasks
        .into_iter()
        .map(|t| {
            let node = nodes.iter().find(|n| Some(&n.id) == t.node_id.as_ref());
            let host = node
                .map(|n| n.description.hostname.clone())
                .unwrap_or_default();
            let label = format!(
                "{}.{}@{}",
                t.display_name(),
                &t.id[..12.min(t.id.len())],
                host
            );
            let remote = node
                .filter(|n| n.id != me)
                .map(|n| (n.id.clone(), n.status.addr.clone()));
            Source {
                task: t,
                label,
                remote,
            }
        })
        .collect()
}

/// Spawn a reader of one task's log that forwards into `out`: from the
/// local disk, or from the node that ran it. A node that cannot be reached
/// is named in one line; the reader never hangs on it.
fn reader(
    ctx: &Ctx,
    src: Source,
    tail: Option<usize>,
    follow: bool,
    out: mpsc::Sender<LogEntry>,
) -> tokio::task::JoinHandle<()> {
    let data_dir = ctx.data_dir.clone();
    let keys = ctx.keys.clone();
    tokio::spawn(async move {
        let (tx, mut rx) = mpsc::channel::<crate::logs::LogLine>(256);
        let id = src.task.id.clone();
        let read = match src.remote.clone() {
            None => tokio::spawn(async move {
                let _ = crate::logs::read(&data_dir, &id, tail, follow, tx).await;
            }),
            Some((node_id, addr)) => {
                let out = out.clone();
                tokio::spawn(async move {
                    if let Err(e) = remote(
                        crate::pki::NodeTls::load(&data_dir, &keys),
                        &node_id,
                        &addr,
                        &id,
                        tail,
                        follow,
                        tx,
                    )
                    .await
                    {
                        let _ = out
                            .send(LogEntry {
                                source: "shoal".into(),
                                ts: String::new(),
                                stream: "stderr".into(),
                                line: format!("cannot read the logs of task {id} from node {node_id} at {addr}: {e}"),
                            })
                            .await;
                    }
                })
            }
        };
        while let Some(l) = rx.recv().await {
            let entry = LogEntry {
                source: src.label.clone(),
                ts: l.ts,
                stream: match l.stream {
                    crate::logs::Stream::Stdout => "stdout".into(),
                    crate::logs::Stream::Stderr => "stderr".into(),
                },
                line: l.line,
            };
            if out.send(entry).await.is_err() {
                break;
            }
        }
        let _ = read.await;
    })
}

/// Read one task's log from the node that ran it, over mTLS.
async fn remote(
    tls: Result<crate::pki::NodeTls, crate::tls::TlsError>,
    node_id: &str,
    addr: &str,
    task_id: &str,
    tail: Option<usize>,
    follow: bool,
    tx: mpsc::Sender<crate::logs::LogLine>,
) -> Result<(), String> {
    let tls = tls.map_err(|e| e.to_string())?;
    let cfg = crate::tls::client_config(&tls.ca_pem, Some(tls.cert.clone()))
        .map_err(|e| e.to_string())?;
    let channel = tokio::time::timeout(
        Duration::from_secs(5),
        crate::rpc::transport::connect(addr, cfg, node_id),
    )
    .await
    .map_err(|_| "timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let mut client = crate::rpc::compat::NodeAgentClient::new(channel);
    let req = crate::rpc::messages::LogsRequest {
        task_ids: vec![task_id.to_string()],
        tail,
        follow,
    };
    let mut stream = client
        .logs(req)
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    while let Some(item) = stream
        .message()
        .await
        .map_err(|s| s.message().to_string())?
    {
        if tx.send(item.line).await.is_err() {
            break;
        }
    }
    Ok(())
}

async fn read_all(
    ctx: Arc<Ctx>,
    service_id: String,
    tail: Option<usize>,
    out: mpsc::Sender<LogEntry>,
) {
    let (tx, mut rx) = mpsc::channel(1024);
    for src in tasks_of(&ctx, &service_id) {
        reader(&ctx, src, tail, false, tx.clone());
    }
    drop(tx);
    let mut lines = Vec::new();
    while let Some(e) = rx.recv().await {
        lines.push(e);
    }
    // RFC 3339 timestamps of one width sort as text.
    lines.sort_by(|a, b| a.ts.cmp(&b.ts));
    for e in lines {
        if out.send(e).await.is_err() {
            return;
        }
    }
}

async fn follow(
    ctx: Arc<Ctx>,
    service_id: String,
    tail: Option<usize>,
    out: mpsc::Sender<LogEntry>,
) {
    let mut seen = HashSet::new();
    let mut readers = Vec::new();
    while !out.is_closed() {
        for src in tasks_of(&ctx, &service_id) {
            if seen.insert(src.task.id.clone()) {
                readers.push(reader(&ctx, src, tail, true, out.clone()));
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for r in readers {
        r.abort();
    }
}
