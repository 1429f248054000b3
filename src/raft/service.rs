//! The `Raft` gRPC service: peer messages from other managers, and the
//! operations followers forward to the leader. Only manager certificates
//! may call it; the caller's identity comes from its certificate.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::node::{NotHere, RaftNode};
use super::proposer::Slot;
use super::wire::{self, Forward, ForwardResult};
use crate::rpc::messages::RaftBytes;
use crate::rpc::pb::raft_server::Raft as RaftRpc;
use crate::rpc::transport::peer;
use crate::store::StoreError;
use crate::tls::Role;

pub struct RaftService {
    pub slot: Slot,
}

impl RaftService {
    fn node<T>(&self, req: &Request<T>) -> Result<Arc<RaftNode>, Status> {
        let caller = peer(req)?;
        if caller.role != Role::Manager {
            return Err(Status::permission_denied(
                "only managers may call the Raft service",
            ));
        }
        self.slot
            .borrow()
            .clone()
            .ok_or_else(|| Status::unavailable("this manager's replicated store is not running"))
    }
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append(&self, req: Request<RaftBytes>) -> Result<Response<RaftBytes>, Status> {
        let node = self.node(&req)?;
        let rpc = wire::decode(req.get_ref())?;
        Ok(Response::new(wire::encode(
            &node.raft.append_entries(rpc).await,
        )))
    }

    async fn vote(&self, req: Request<RaftBytes>) -> Result<Response<RaftBytes>, Status> {
        let node = self.node(&req)?;
        let rpc = wire::decode(req.get_ref())?;
        Ok(Response::new(wire::encode(&node.raft.vote(rpc).await)))
    }

    async fn snapshot(&self, req: Request<RaftBytes>) -> Result<Response<RaftBytes>, Status> {
        let node = self.node(&req)?;
        let rpc = wire::decode(req.get_ref())?;
        Ok(Response::new(wire::encode(
            &node.raft.install_snapshot(rpc).await,
        )))
    }

    async fn forward(&self, req: Request<RaftBytes>) -> Result<Response<RaftBytes>, Status> {
        let node = self.node(&req)?;
        let caller = peer(&req)?;
        let op: Forward = wire::decode(req.get_ref())?;
        // A manager adds only itself.
        if matches!(&op, Forward::AddMe(m) if m.node_id != caller.node_id) {
            return Err(Status::permission_denied(
                "a manager can only add itself to the membership",
            ));
        }
        let result: ForwardResult = match node.perform(&op).await {
            Ok(r) => r,
            Err(NotHere::Failed(e)) => Err(e),
            // The caller retries, and finds the leader itself.
            Err(NotHere::Leader(_) | NotHere::NoLeader) => Err(StoreError::Unavailable(
                "this manager is not the leader".into(),
            )),
        };
        Ok(Response::new(wire::encode(&result)))
    }
}
