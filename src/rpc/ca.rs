//! The CA service (managers): the cluster root, joining, and renewal. Root
//! and join are the only calls allowed without a client certificate; a
//! joiner proves itself with the join token's secret instead.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::info;

use super::messages::*;
use super::pb::v2::ca_server::Ca;
use super::transport::peer;
use crate::pki::{issue, IssueError};
use crate::store::{Change, Object, Proposer, Store};
use crate::tls::{JoinToken, Role};
use crate::types::*;

pub struct CaService {
    pub store: Store,
    pub proposer: Arc<dyn Proposer>,
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

fn issue_status(e: IssueError) -> Status {
    match e {
        IssueError::Ca(_) => internal(e),
        IssueError::Request(_) => Status::invalid_argument(e.to_string()),
    }
}

impl CaService {
    fn cluster(&self) -> Result<Cluster, Status> {
        self.store
            .read()
            .and_then(|v| v.cluster())
            .map_err(internal)?
            .ok_or_else(|| Status::failed_precondition("this manager has no cluster"))
    }
}

/// Addresses of every manager, for a node's reconnect list.
pub fn manager_addrs(store: &Store) -> Vec<String> {
    store
        .read()
        .and_then(|v| v.nodes())
        .map(|ns| {
            ns.into_iter()
                .filter(|n| n.is_manager())
                .map(|n| n.status.addr)
                .collect()
        })
        .unwrap_or_default()
}

#[tonic::async_trait]
impl Ca for CaService {
    async fn root(&self, _req: Request<Empty>) -> Result<Response<RootInfo>, Status> {
        let c = self.cluster()?;
        Ok(Response::new(RootInfo {
            cluster_id: c.id,
            ca_pem: c.ca_cert_pem,
        }))
    }

    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let r = req.into_inner();
        let token =
            JoinToken::parse(&r.token).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let cluster = self.cluster()?;
        let role = cluster
            .join_tokens
            .check(&token)
            .map_err(|e| Status::permission_denied(e.to_string()))?;
        let node_role = match role {
            Role::Manager => NodeRole::Manager,
            Role::Worker => NodeRole::Worker,
        };
        let node_id = new_id();
        let cert_pem = issue(
            &cluster,
            &r.csr_pem,
            &node_id,
            node_role,
            &r.addr,
            &r.description.hostname,
        )
        .map_err(issue_status)?;
        let node = Node::joined(node_id.clone(), node_role, r.description, r.addr, r.version);
        self.proposer
            .propose(vec![Change::Create(Object::Node(node))])
            .await
            .map_err(internal)?;
        info!(node = %node_id, role = node_role.as_str(), "node joined");
        Ok(Response::new(JoinResponse {
            cluster_id: cluster.id,
            node_id,
            cert_pem,
            ca_pem: cluster.ca_cert_pem,
            managers: manager_addrs(&self.store),
            role: node_role,
        }))
    }

    async fn renew(&self, req: Request<RenewRequest>) -> Result<Response<RenewResponse>, Status> {
        let me = peer(&req)?;
        let cluster = self.cluster()?;
        let node = self
            .store
            .read()
            .and_then(|v| v.member(&me.node_id))
            .map_err(internal)?
            .ok_or_else(|| Status::permission_denied("this node is not part of the cluster"))?;
        // The role comes from the store: a demoted manager's renewed
        // certificate says worker.
        let cert_pem = issue(
            &cluster,
            &req.get_ref().csr_pem,
            &node.id,
            node.spec.role,
            &node.status.addr,
            &node.description.hostname,
        )
        .map_err(issue_status)?;
        Ok(Response::new(RenewResponse { cert_pem }))
    }
}
