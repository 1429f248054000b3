//! The dispatcher service (managers), as transport: the caller is the node
//! named in its certificate; the protocol itself is `dispatcher::session`.
//! Heartbeats only touch memory.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::warn;

use super::messages::*;
use super::pb::v2::dispatcher_server::Dispatcher as DispatcherRpc;
use super::transport::peer;
use crate::dispatcher::{
    check_member, heartbeat_period, DispatchError, Dispatcher, SessionEnd, Sources, HOLD,
    WAIT_AGAIN,
};
use crate::store::Store;
use crate::types::Node;

pub struct DispatcherService {
    pub store: Store,
    /// The dispatcher while this manager leads; sessions go to the leader.
    pub dispatcher: watch::Receiver<Option<Dispatcher>>,
}

impl DispatcherService {
    fn current(&self) -> Result<Dispatcher, Status> {
        self.dispatcher.borrow().clone().ok_or_else(|| {
            Status::unavailable("this manager is not the leader: sessions go to the leader")
        })
    }

    /// The calling node, as the store knows it; refused if unknown or
    /// removed.
    fn caller<T>(&self, req: &Request<T>) -> Result<Node, Status> {
        let me = peer(req)?;
        check_member(&self.store, &me.node_id).map_err(session_status)
    }
}

fn session_status(e: SessionEnd) -> Status {
    match e {
        SessionEnd::NotMember(_) => Status::permission_denied(e.to_string()),
        SessionEnd::StoppedLeading => Status::unavailable(e.to_string()),
        SessionEnd::Store(e) => Status::internal(e.to_string()),
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<SessionMessage, Status>> + Send>>;

#[tonic::async_trait]
impl DispatcherRpc for DispatcherService {
    type SessionStream = SessionStream;

    async fn session(
        &self,
        req: Request<SessionRequest>,
    ) -> Result<Response<SessionStream>, Status> {
        let node = self.caller(&req)?;
        let messages = self
            .current()?
            .open_session(&self.store, node, req.into_inner())
            .await;
        let stream = ReceiverStream::new(messages).map(|m| m.map_err(session_status));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn heartbeat(&self, req: Request<Empty>) -> Result<Response<HeartbeatResponse>, Status> {
        let node = self.caller(&req)?;
        self.current()?.heartbeats.beat(&node.id);
        Ok(Response::new(HeartbeatResponse {
            period_ms: heartbeat_period(&self.store).as_millis() as u64,
        }))
    }

    async fn restarting(&self, req: Request<Empty>) -> Result<Response<Empty>, Status> {
        let node = self.caller(&req)?;
        self.current()?
            .restarting(&node.id)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(Empty {}))
    }

    async fn report_blobs(&self, req: Request<BlobReport>) -> Result<Response<Empty>, Status> {
        let node = self.caller(&req)?;
        let r = req.into_inner();
        self.current()?
            .report_blobs(&node.id, r.full, r.added, r.removed);
        Ok(Response::new(Empty {}))
    }

    async fn blob_sources(&self, req: Request<BlobQuery>) -> Result<Response<BlobSources>, Status> {
        let node = self.caller(&req)?;
        let q = req.get_ref();
        let answer = match self
            .current()?
            .blob_sources_held(&node.id, &q.digest, q.fetching, HOLD)
            .await
        {
            Sources::Peers(nodes) => BlobSources { nodes, wait_ms: 0 },
            Sources::Registry => BlobSources::default(),
            Sources::Wait => BlobSources {
                nodes: Vec::new(),
                wait_ms: WAIT_AGAIN.as_millis() as u64,
            },
        };
        Ok(Response::new(answer))
    }

    async fn update_status(&self, req: Request<StatusBatch>) -> Result<Response<Empty>, Status> {
        let node = self.caller(&req)?;
        match self
            .current()?
            .report(&node.id, req.into_inner().updates)
            .await
        {
            Ok(()) => Ok(Response::new(Empty {})),
            Err(e @ DispatchError::NotAssigned { .. }) => {
                warn!(node = %node.id, error = %e, "status refused");
                Err(Status::permission_denied(e.to_string()))
            }
            Err(e @ DispatchError::NotWritten) => Err(Status::unavailable(e.to_string())),
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }
}
