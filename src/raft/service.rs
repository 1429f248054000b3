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

fn here_or_not(r: Result<ForwardResult, NotHere>) -> ForwardResult {
    match r {
        Ok(r) => r,
        Err(NotHere::Failed(e)) => Err(e),
        // The follower retries, and finds the leader itself.
        Err(NotHere::Leader(_) | NotHere::NoLeader) => Err(StoreError::Unavailable(
            "this manager is not the leader".into(),
        )),
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
        let result: ForwardResult = match op {
            Forward::Write(w) => here_or_not(node.write(w).await),
            Forward::ReadIndex => here_or_not(node.read_index().await.map(|i| Ok((0, i)))),
            Forward::AddMe(member) => {
                // A manager adds only itself.
                if member.node_id != caller.node_id {
                    return Err(Status::permission_denied(
                        "a manager can only add itself to the membership",
                    ));
                }
                here_or_not(node.add_manager(member).await.map(|_| Ok((0, 0))))
            }
            Forward::Remove(id) => here_or_not(node.remove_manager(&id).await.map(|_| Ok((0, 0)))),
        };
        Ok(Response::new(wire::encode(&result)))
    }

    async fn read_index(&self, req: Request<RaftBytes>) -> Result<Response<RaftBytes>, Status> {
        let node = self.node(&req)?;
        let result = here_or_not(node.read_index().await.map(|i| Ok((0, i))));
        Ok(Response::new(wire::encode(&result)))
    }
}
