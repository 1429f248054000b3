//! Who gets a certificate from the cluster's CA (managers): a node that
//! joins with a valid token, and a member that renews. The CA service in
//! `rpc::ca` carries these; a manager's own renewals call them directly.

use tracing::info;

use crate::pki::{issue, IssueError};
use crate::rpc::messages::{JoinRequest, JoinResponse};
use crate::store::{Change, Object, Proposer, Store, StoreError};
use crate::tls::{JoinToken, Role, TlsError};
use crate::types::{Cluster, Node, NodeRole};

/// Why a node was not given a certificate.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// The token cannot be read: the caller's input.
    #[error("{0}")]
    BadToken(TlsError),
    /// A token of another cluster, or an old one.
    #[error("{0}")]
    Refused(TlsError),
    #[error("node {0} is not part of this cluster")]
    NotMember(String),
    #[error("this manager has no cluster")]
    NoCluster,
    #[error("{0}")]
    Issue(#[from] IssueError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

fn cluster(store: &Store) -> Result<Cluster, AdmitError> {
    store.read()?.cluster()?.ok_or(AdmitError::NoCluster)
}

/// A node asks to join: the token decides its role, the CA signs its key
/// (the node id is ours, never the CSR's), and the store gets the node.
pub async fn admit(
    store: &Store,
    proposer: &dyn Proposer,
    req: JoinRequest,
) -> Result<JoinResponse, AdmitError> {
    let token = JoinToken::parse(&req.token).map_err(AdmitError::BadToken)?;
    let cluster = cluster(store)?;
    let role = match cluster
        .join_tokens
        .check(&token)
        .map_err(AdmitError::Refused)?
    {
        Role::Manager => NodeRole::Manager,
        Role::Worker => NodeRole::Worker,
    };
    let node_id = crate::types::new_id();
    let cert_pem = issue(
        &cluster,
        &req.csr_pem,
        &node_id,
        role,
        &req.addr,
        &req.description.hostname,
    )?;
    let node = Node::joined(
        node_id.clone(),
        role,
        req.description,
        req.addr,
        req.version,
    );
    proposer
        .propose(vec![Change::Create(Object::Node(node))])
        .await?;
    info!(node = %node_id, role = role.as_str(), "node joined");
    Ok(JoinResponse {
        cluster_id: cluster.id,
        node_id,
        cert_pem,
        ca_pem: cluster.ca_cert_pem,
        managers: store.read()?.manager_addrs()?,
        role,
    })
}

/// A member's new certificate. The role comes from the store: a demoted
/// manager's renewed certificate says worker.
pub fn reissue(store: &Store, node_id: &str, csr_pem: &str) -> Result<String, AdmitError> {
    let view = store.read()?;
    let cluster = view.cluster()?.ok_or(AdmitError::NoCluster)?;
    let node = view
        .member(node_id)?
        .ok_or_else(|| AdmitError::NotMember(node_id.to_string()))?;
    Ok(issue(
        &cluster,
        csr_pem,
        &node.id,
        node.spec.role,
        &node.status.addr,
        &node.description.hostname,
    )?)
}
