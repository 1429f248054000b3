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

fn tasks_of(ctx: &Ctx, service_id: &str) -> Vec<(Task, String)> {
    let Ok(view) = ctx.store.read() else {
        return Vec::new();
    };
    let nodes = view.nodes().unwrap_or_default();
    let mut tasks = view.tasks_of_service(service_id).unwrap_or_default();
    tasks.retain(|t| t.status.container_id.is_some());
    tasks.sort_by_key(|t| (t.slot, t.meta.created_ms));
    tasks
        .into_iter()
        .map(|t| {
            let host = nodes
                .iter()
                .find(|n| Some(&n.id) == t.node_id.as_ref())
                .map(|n| n.description.hostname.clone())
                .unwrap_or_default();
            let source = format!(
                "{}.{}@{}",
                t.display_name(),
                &t.id[..12.min(t.id.len())],
                host
            );
            (t, source)
        })
        .collect()
}

/// Spawn a reader of one task's log that forwards into `out`.
fn reader(
    ctx: &Ctx,
    task: &Task,
    source: String,
    tail: Option<usize>,
    follow: bool,
    out: mpsc::Sender<LogEntry>,
) -> tokio::task::JoinHandle<()> {
    let data_dir = ctx.data_dir.clone();
    let id = task.id.clone();
    tokio::spawn(async move {
        let (tx, mut rx) = mpsc::channel(256);
        let read =
            tokio::spawn(async move { crate::logs::read(&data_dir, &id, tail, follow, tx).await });
        while let Some(l) = rx.recv().await {
            let entry = LogEntry {
                source: source.clone(),
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
        read.abort();
    })
}

async fn read_all(
    ctx: Arc<Ctx>,
    service_id: String,
    tail: Option<usize>,
    out: mpsc::Sender<LogEntry>,
) {
    let (tx, mut rx) = mpsc::channel(1024);
    for (task, source) in tasks_of(&ctx, &service_id) {
        reader(&ctx, &task, source, tail, false, tx.clone());
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
        for (task, source) in tasks_of(&ctx, &service_id) {
            if seen.insert(task.id.clone()) {
                readers.push(reader(&ctx, &task, source, tail, true, out.clone()));
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for r in readers {
        r.abort();
    }
}
