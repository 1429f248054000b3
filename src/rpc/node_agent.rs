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
use crate::executor::{ExecError, ImageStore};
use crate::tls::Role;

pub struct NodeAgentService {
    pub data_dir: PathBuf,
    /// The node's content store, for blobs its peers ask for.
    pub images: Arc<dyn ImageStore>,
    /// The node's images as a whole, for `image … --all-nodes`.
    pub keeper: Arc<ImageKeeper>,
}

type LogStream = Pin<Box<dyn Stream<Item = Result<LogItem, Status>> + Send>>;
type BlobStream = Pin<Box<dyn Stream<Item = Result<BlobChunk, Status>> + Send>>;

#[tonic::async_trait]
impl NodeAgent for NodeAgentService {
    type LogsStream = LogStream;
    type ReadBlobStream = BlobStream;

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
