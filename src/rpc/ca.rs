//! The CA service (managers), as transport: the cluster root, joining and
//! renewal (decided in `admission`). Root and join are the only calls
//! allowed without a client certificate; a joiner proves itself with the
//! join token's secret instead.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::messages::*;
use super::pb::v2::ca_server::Ca;
use super::transport::peer;
use crate::admission::{admit, reissue, AdmitError};
use crate::pki::IssueError;
use crate::store::{Proposer, Store};

pub struct CaService {
    pub store: Store,
    pub proposer: Arc<dyn Proposer>,
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

fn admit_status(e: AdmitError) -> Status {
    match e {
        AdmitError::BadToken(_) | AdmitError::Issue(IssueError::Request(_)) => {
            Status::invalid_argument(e.to_string())
        }
        AdmitError::Refused(_) | AdmitError::NotMember(_) => {
            Status::permission_denied(e.to_string())
        }
        AdmitError::NoCluster => Status::failed_precondition(e.to_string()),
        AdmitError::Issue(IssueError::Ca(_)) | AdmitError::Store(_) => internal(e),
    }
}

#[tonic::async_trait]
impl Ca for CaService {
    async fn root(&self, _req: Request<Empty>) -> Result<Response<RootInfo>, Status> {
        let c = self
            .store
            .read()
            .and_then(|v| v.cluster())
            .map_err(internal)?
            .ok_or_else(|| admit_status(AdmitError::NoCluster))?;
        Ok(Response::new(RootInfo {
            cluster_id: c.id,
            ca_pem: c.ca_cert_pem,
        }))
    }

    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        admit(&self.store, self.proposer.as_ref(), req.into_inner())
            .await
            .map(Response::new)
            .map_err(admit_status)
    }

    async fn renew(&self, req: Request<RenewRequest>) -> Result<Response<RenewResponse>, Status> {
        let me = peer(&req)?;
        reissue(&self.store, &me.node_id, &req.get_ref().csr_pem)
            .map(|cert_pem| Response::new(RenewResponse { cert_pem }))
            .map_err(admit_status)
    }
}
