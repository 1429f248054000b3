//! The `Raft` gRPC service: peer messages from other managers, and the
//! operations followers forward to the leader. Only manager certificates
//! may call it; the caller's identity comes from its certificate.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::node::{NotHere, RaftNode};
use super::proposer::Slot;
use super::wire::{self, Forward, ForwardResult};
use crate::rpc::codec::Proto;
use crate::rpc::messages::RaftBytes;
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

// The same service in both formats: `shoal.v1` for managers of 254a909.
impl RaftService {
    async fn append(&self, proto: Proto, req: Request<RaftBytes>) -> RpcResult {
        let node = self.node(&req)?;
        let rpc = wire::decode(proto, req.get_ref())?;
        reply(proto, &node.raft.append_entries(rpc).await)
    }

    async fn vote(&self, proto: Proto, req: Request<RaftBytes>) -> RpcResult {
        let node = self.node(&req)?;
        let rpc = wire::decode(proto, req.get_ref())?;
        reply(proto, &node.raft.vote(rpc).await)
    }

    async fn snapshot(&self, proto: Proto, req: Request<RaftBytes>) -> RpcResult {
        let node = self.node(&req)?;
        let rpc = wire::decode(proto, req.get_ref())?;
        reply(proto, &node.raft.install_snapshot(rpc).await)
    }

    async fn forward(&self, proto: Proto, req: Request<RaftBytes>) -> RpcResult {
        let node = self.node(&req)?;
        let caller = peer(&req)?;
        let op: Forward = wire::decode(proto, req.get_ref())?;
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
        reply(proto, &result)
    }
}

type RpcResult = Result<Response<RaftBytes>, Status>;

fn reply<T: serde::Serialize + crate::format::Versioned>(proto: Proto, value: &T) -> RpcResult {
    Ok(Response::new(wire::encode(proto, value)?))
}

macro_rules! raft_rpc {
    ($trait:path, $proto:expr) => {
        #[tonic::async_trait]
        impl $trait for RaftService {
            async fn append(&self, req: Request<RaftBytes>) -> RpcResult {
                RaftService::append(self, $proto, req).await
            }
            async fn vote(&self, req: Request<RaftBytes>) -> RpcResult {
                RaftService::vote(self, $proto, req).await
            }
            async fn snapshot(&self, req: Request<RaftBytes>) -> RpcResult {
                RaftService::snapshot(self, $proto, req).await
            }
            async fn forward(&self, req: Request<RaftBytes>) -> RpcResult {
                RaftService::forward(self, $proto, req).await
            }
        }
    };
}
raft_rpc!(crate::rpc::pb::v2::raft_server::Raft, Proto::V2);
raft_rpc!(crate::rpc::pb::v1::raft_server::Raft, Proto::V1);
