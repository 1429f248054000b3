//! The node agent service (every node): what other nodes ask of a node
//! directly. The logs of its tasks, for `service logs` across the cluster
//! (managers only), and image blobs, for peers that pull the same image
//! (any node of the cluster: its certificate says so).

use std::path::PathBuf;
use std::pin::Pin;

use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::messages::*;
use super::pb::v2::node_agent_server::NodeAgent;
use super::transport::peer;
use crate::agent::images::{ImageKeeper, RemoveError};
use crate::agent::volumes::VolumeError;
use crate::executor::{ExecChunk, ExecError, ExecSpec, Executor, ImageStore};
use crate::tls::Role;

pub struct NodeAgentService {
    pub data_dir: PathBuf,
    /// The node's content store, for blobs its peers ask for.
    pub images: Arc<dyn ImageStore>,
    /// The node's images as a whole, for `image … --all-nodes`.
    pub keeper: Arc<ImageKeeper>,
    /// The node's runtime, for `shoal exec`.
    pub exec: Arc<dyn Executor>,
}

type LogStream = Pin<Box<dyn Stream<Item = Result<LogItem, Status>> + Send>>;
type BlobStream = Pin<Box<dyn Stream<Item = Result<BlobChunk, Status>> + Send>>;
type ExecOutStream = Pin<Box<dyn Stream<Item = Result<ExecOut, Status>> + Send>>;

/// The most an exec's command line may take.
const EXEC_ARGS_MAX: usize = 64 * 1024;

/// How long output may still come once the process exited.
const EXEC_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

#[tonic::async_trait]
impl NodeAgent for NodeAgentService {
    type LogsStream = LogStream;
    type ReadBlobStream = BlobStream;
    type ExecStream = ExecOutStream;

    /// `shoal exec`, from a manager: a process in one of this node's
    /// tasks, logged here with who asked.
    async fn exec(
        &self,
        req: Request<tonic::Streaming<ExecIn>>,
    ) -> Result<Response<ExecOutStream>, Status> {
        let caller = peer(&req)?;
        if caller.role != Role::Manager {
            return Err(Status::permission_denied(
                "only managers may run a process in a node's task",
            ));
        }
        let mut input = req.into_inner();
        let start = match input.message().await? {
            Some(ExecIn::Start(s)) => s,
            _ => return Err(Status::invalid_argument("an exec starts with what to run")),
        };
        let id_ok = !start.task.is_empty() && start.task.chars().all(|c| c.is_ascii_alphanumeric());
        let size: usize = start.args.iter().chain(&start.env).map(String::len).sum();
        if !id_ok || start.args.is_empty() || size > EXEC_ARGS_MAX {
            return Err(Status::invalid_argument(
                "an exec needs a task id and a command of at most 64 KiB",
            ));
        }
        tracing::info!(
            task = %start.task,
            args = ?start.args,
            tty = start.tty,
            manager = %caller.node_id,
            who = %start.who,
            "exec into a task"
        );
        let spec = ExecSpec {
            args: start.args,
            tty: start.tty,
            stdin: start.stdin,
            user: start.user,
            workdir: start.workdir,
            env: start.env,
            cols: start.cols,
            rows: start.rows,
        };
        let session = self
            .exec
            .exec_session(&start.task, spec)
            .await
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(relay_exec(session, input, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    /// Serves only committed blobs, by digest: a tag means nothing here,
    /// and a blob being written is not there yet.
    async fn read_blob(&self, req: Request<BlobRead>) -> Result<Response<BlobStream>, Status> {
        peer(&req)?;
        let r = req.into_inner();
        if !crate::types::is_digest(&r.digest) {
            return Err(Status::invalid_argument(format!(
                "bad digest {:?}",
                r.digest
            )));
        }
        let stream = self
            .images
            .read_blob(&r.digest, r.offset)
            .await
            .map_err(|e| match e {
                ExecError::ImageNotFound(_) => {
                    Status::not_found(format!("blob {} is not here", r.digest))
                }
                e => Status::unavailable(e.to_string()),
            })?;
        Ok(Response::new(Box::pin(stream.map(|r| {
            r.map(|data| BlobChunk { data })
                .map_err(Status::unavailable)
        }))))
    }

    /// `image ls|rm|prune --all-nodes`, from a manager.
    async fn images(&self, req: Request<ImagesOp>) -> Result<Response<ImagesReply>, Status> {
        if peer(&req)?.role != Role::Manager {
            return Err(Status::permission_denied(
                "only managers may manage a node's images",
            ));
        }
        let op = req.into_inner();
        let r = self
            .keeper
            .apply(op.remove.as_deref(), op.prune)
            .await
            .map_err(|e| match e {
                RemoveError::NotFound(_) => Status::not_found(e.to_string()),
                RemoveError::InUse(_) => Status::failed_precondition(e.to_string()),
                RemoveError::Bad(_) => Status::invalid_argument(e.to_string()),
                RemoveError::Exec(e) => Status::unavailable(e.to_string()),
            })?;
        Ok(Response::new(r))
    }

    /// `volume …`, from a manager (which has checked that no task uses
    /// what it removes).
    async fn volumes(&self, req: Request<VolumesOp>) -> Result<Response<VolumesReply>, Status> {
        if peer(&req)?.role != Role::Manager {
            return Err(Status::permission_denied(
                "only managers may manage a node's volumes",
            ));
        }
        let volumes = crate::agent::volumes::Volumes::at(&self.data_dir);
        let op = req.into_inner();
        let r = tokio::task::spawn_blocking(move || volumes.apply(&op))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        r.map(Response::new).map_err(|e| match e {
            VolumeError::NotFound(_) => Status::not_found(e.to_string()),
            VolumeError::Invalid(_) => Status::invalid_argument(e.to_string()),
            VolumeError::Io { .. } => Status::unavailable(e.to_string()),
        })
    }

    async fn logs(&self, req: Request<LogsRequest>) -> Result<Response<LogStream>, Status> {
        if peer(&req)?.role != Role::Manager {
            return Err(Status::permission_denied(
                "only managers may read a node's logs",
            ));
        }
        let r = req.into_inner();
        let (tx, rx) = mpsc::channel(256);
        for task_id in r.task_ids {
            // Task ids become paths: refuse anything but an id.
            if task_id.is_empty() || !task_id.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(Status::invalid_argument(format!("bad task id {task_id:?}")));
            }
            let data_dir = self.data_dir.clone();
            let tx = tx.clone();
            let (follow, tail) = (r.follow, r.tail);
            tokio::spawn(async move {
                let (ltx, mut lrx) = mpsc::channel(256);
                let id = task_id.clone();
                let read = tokio::spawn(async move {
                    let _ = crate::logs::read(&data_dir, &id, tail, follow, ltx).await;
                });
                while let Some(line) = lrx.recv().await {
                    let item = LogItem {
                        task_id: task_id.clone(),
                        line,
                    };
                    if tx.send(Ok(item)).await.is_err() {
                        break;
                    }
                }
                read.abort();
            });
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Input from the client to the process; its output, then its exit code,
/// to the client. The client gone (its stream closed), the session is
/// dropped, which kills the process.
async fn relay_exec(
    session: crate::executor::ExecSession,
    mut input: tonic::Streaming<ExecIn>,
    tx: mpsc::Sender<Result<ExecOut, Status>>,
) {
    let crate::executor::ExecSession {
        stdin,
        mut output,
        resize,
        mut exit,
        cancel,
    } = session;
    let feed = tokio::spawn(async move {
        let mut stdin = stdin;
        while let Ok(Some(msg)) = input.message().await {
            match msg {
                ExecIn::Stdin(data) => {
                    if let Some(s) = &stdin {
                        let _ = s.send(data).await;
                    }
                }
                ExecIn::StdinEnd => stdin = None,
                ExecIn::Resize { cols, rows } => {
                    let _ = resize.send((cols, rows)).await;
                }
                ExecIn::Start(_) => {}
            }
        }
    });
    let mut code = None;
    let mut deadline = None::<tokio::time::Instant>;
    loop {
        let out = tokio::select! {
            chunk = output.recv() => match chunk {
                Some(ExecChunk::Stdout(b)) => ExecOut::Stdout(b),
                Some(ExecChunk::Stderr(b)) => ExecOut::Stderr(b),
                None => break,
            },
            r = &mut exit, if code.is_none() => {
                code = Some(r.unwrap_or_else(|_| Err("the exec ended without a code".into())));
                deadline = Some(tokio::time::Instant::now() + EXEC_DRAIN);
                continue;
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if deadline.is_some() => break,
            _ = tx.closed() => break,
        };
        if tx.send(Ok(out)).await.is_err() {
            break;
        }
    }
    let code = match code {
        Some(c) => Some(c),
        None if !tx.is_closed() => Some(
            exit.await
                .unwrap_or_else(|_| Err("the exec ended without a code".into())),
        ),
        None => None,
    };
    feed.abort();
    if let Some(code) = code {
        let last = match code {
            Ok(c) => ExecOut::Exit(c),
            Err(e) => ExecOut::Error(e),
        };
        let _ = tx.send(Ok(last)).await;
    }
    drop(cancel);
}
