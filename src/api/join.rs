//! `join`: make this node a worker of an existing cluster. The node finds
//! a manager (the given address, or mDNS), checks the manager's CA against
//! the token's digest before it trusts anything, sends a CSR (its key never
//! leaves it) with the token, and saves what it gets. Nothing is written
//! locally unless the manager accepted.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{ApiError, Ctx, Identity};
use crate::node::{Launch, NodeError};
use crate::pki::NodeTls;
use crate::rpc::compat::CaClient;
use crate::rpc::messages::JoinRequest as RpcJoin;
use crate::rpc::transport::connect;
use crate::tls::{JoinToken, NodeKey, MANAGER_SERVER_NAME};
use crate::types::NodeRole;

#[derive(Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub token: String,
    /// A manager's address; found over mDNS when absent.
    pub addr: Option<String>,
    pub advertise: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JoinResponse {
    pub cluster_id: String,
    pub node_id: String,
    pub manager: String,
    /// "address" or "mDNS"
    pub found_by: String,
    pub role: NodeRole,
    /// For a manager: the managers the quorum counts, this node included,
    /// once the leader made it a voter; 0 if it did not in time (see
    /// `warnings`).
    pub managers: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// How long a joining manager waits to be made a voter before it answers
/// with a warning (it keeps asking afterwards).
const VOTER_WAIT: Duration = Duration::from_secs(15);

pub async fn join(
    State(ctx): State<Arc<Ctx>>,
    Json(req): Json<JoinRequest>,
) -> Result<Json<JoinResponse>, ApiError> {
    if let Some(id) = ctx.node.identity() {
        return Err(NodeError::AlreadyInCluster {
            cluster_id: id.cluster_id,
            node_id: id.node_id,
        }
        .into());
    }
    let token =
        JoinToken::parse(req.token.trim()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let digest = token.ca_digest();
    let (candidates, found_by) = match req.addr {
        Some(a) => (vec![a], "address"),
        None => {
            let found = crate::discovery::find_managers(&digest, Duration::from_secs(5))
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
            if found.is_empty() {
                return Err(ApiError::NotFound(
                    "no manager of this token's cluster answered over mDNS on this LAN; give a manager's address".into(),
                ));
            }
            (found.iter().map(|a| a.to_string()).collect(), "mDNS")
        }
    };
    let advertise = match req.advertise.or_else(|| ctx.advertise.clone()) {
        Some(a) => a,
        None => crate::netaddr::detect_advertise(&ctx.listen)
            .map_err(|e| ApiError::BadRequest(format!("{e}; give the address to advertise")))?,
    };
    let key = NodeKey::generate().map_err(|e| ApiError::Internal(e.to_string()))?;
    let csr = key
        .csr_pem("joining")
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let bootstrap = crate::tls::bootstrap_client_config(&digest)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let description = crate::host::describe(ctx.images.as_ref(), &ctx.data_dir).await;

    let mut errors = Vec::new();
    // A manager answered with a CA that is not the token's.
    let mut foreign_ca = false;
    for addr in &candidates {
        let channel = match connect(addr, bootstrap.clone(), MANAGER_SERVER_NAME).await {
            Ok(c) => c,
            Err(e) => {
                let (why, foreign) = describe_connect_error(&e);
                foreign_ca |= foreign;
                errors.push(format!("{addr}: {why}"));
                continue;
            }
        };
        let rpc = RpcJoin {
            token: token.to_string(),
            csr_pem: csr.clone(),
            description: description.clone(),
            addr: advertise.clone(),
            version: crate::VERSION.to_string(),
        };
        let resp = match CaClient::new(channel).join(rpc).await {
            Ok(r) => r.into_inner(),
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::PermissionDenied
                        | tonic::Code::InvalidArgument
                        | tonic::Code::FailedPrecondition
                ) =>
            {
                return Err(ApiError::BadRequest(format!(
                    "join refused by {addr}: {}",
                    s.message()
                )));
            }
            Err(s) => {
                errors.push(format!("{addr}: {}", s.message()));
                continue;
            }
        };
        // The connection was pinned to the token's CA; check the PEM we
        // store against it too.
        crate::tls::check_root_digest(&resp.ca_pem, &digest)
            .map_err(|e| ApiError::BadRequest(format!("manager {addr} sent another CA: {e}")))?;
        NodeTls::save(&ctx.data_dir, &resp.ca_pem, &key, &resp.cert_pem)
            .map_err(|e| ApiError::Internal(format!("cannot save TLS material: {e}")))?;
        let mut managers = resp.managers.clone();
        if !managers.contains(addr) {
            managers.push(addr.clone());
        }
        crate::node::save_managers(&ctx.data_dir, &managers);
        let identity = Identity {
            cluster_id: resp.cluster_id.clone(),
            node_id: resp.node_id.clone(),
            role: resp.role,
        };
        ctx.node.start(identity, Launch::Resume).await?;
        let mut warnings = Vec::new();
        let mut managers = 0;
        if resp.role == NodeRole::Manager {
            // Counted from the Raft, not the store: a manager is one the
            // quorum counts only once the leader could reach it.
            match ctx.membership().voter_within(&resp.node_id, VOTER_WAIT).await {
                Some(n) => managers = n,
                None => warnings.push(format!(
                    "this node is not a voting manager yet: the leader did not add it within {}s. \
                     Can the managers reach it at {}? It keeps asking; `shoal node ls` shows the managers.",
                    VOTER_WAIT.as_secs(),
                    advertise
                )),
            }
        }
        return Ok(Json(JoinResponse {
            cluster_id: resp.cluster_id,
            node_id: resp.node_id,
            manager: addr.clone(),
            found_by: found_by.into(),
            role: resp.role,
            managers,
            warnings,
        }));
    }
    if foreign_ca {
        return Err(ApiError::BadRequest(format!(
            "join refused: {}",
            errors.join("; ")
        )));
    }
    Err(ApiError::Unavailable(format!(
        "no manager could be reached: {}",
        errors.join("; ")
    )))
}

/// tonic's connect errors hide the cause (e.g. a CA that does not match
/// the token) a few sources down, and rustls prints our own check's error
/// as a debug dump: find our error and say it in words, or else give each
/// cause once. True when the peer's CA is not the token's.
fn describe_connect_error(e: &tonic::transport::Error) -> (String, bool) {
    let mut causes: Vec<String> = Vec::new();
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(ours) = tls_error_in(s) {
            return match ours {
                crate::tls::TlsError::DigestMismatch { .. } => (
                    format!("not a manager of the join token's cluster: {ours} (the token is of another cluster, or the address is another cluster's manager)"),
                    true,
                ),
                other => (other.to_string(), false),
            };
        }
        let text = s.to_string();
        if !causes.iter().any(|c| c.contains(&text)) {
            causes.push(text);
        }
        src = s.source();
    }
    (causes.join(": "), false)
}

/// Our certificate check's error, when rustls refused a peer with it.
fn tls_error_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a crate::tls::TlsError> {
    if let Some(t) = e.downcast_ref::<crate::tls::TlsError>() {
        return Some(t);
    }
    let rustls = match e.downcast_ref::<rustls::Error>() {
        Some(r) => r,
        None => e
            .downcast_ref::<std::io::Error>()?
            .get_ref()?
            .downcast_ref::<rustls::Error>()?,
    };
    crate::tls::Reason::of(rustls)
}
