//! Automatic certificate renewal, on every node. A certificate is renewed
//! at a random point between 50% and 80% of its life (so a cluster's nodes
//! do not all renew at once), with the node's own key: a manager issues it
//! from the cluster's CA in its store, a worker asks a manager over mTLS.
//! The new certificate is used for new connections at once (the TLS configs
//! read it through `ReloadableCert`) and saved to disk.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use crate::pki::NodeTls;
use crate::rpc::compat::CaClient;
use crate::rpc::messages::RenewRequest;
use crate::shutdown::Shutdown;
use crate::store::Store;

/// Where a renewed certificate comes from.
pub enum Issuer {
    /// A manager: the CA is in its store.
    Local(Store),
    /// A worker: one of these managers.
    Remote(Arc<dyn Fn() -> Vec<String> + Send + Sync>),
}

pub async fn run(node_tls: Arc<NodeTls>, issuer: Issuer, mut shutdown: Shutdown) {
    loop {
        let info = node_tls.cert.info();
        let at = crate::tls::renew_at(info.not_before, info.not_after, &mut rand::rng());
        let wait = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match renew(&node_tls, &issuer).await {
            Ok(()) => {
                let info = node_tls.cert.info();
                info!(serial = %info.serial, "node certificate renewed");
            }
            Err(e) => {
                warn!(error = %e, "certificate renewal failed; retrying");
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    }
}

/// Why a renewal failed; the loop above retries.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0}")]
    Local(#[from] crate::admission::AdmitError),
    #[error("{0}")]
    Managers(#[from] crate::rpc::transport::NoManagerAnswered),
}

/// Renew now; the role in the new certificate is the store's.
pub async fn renew(node_tls: &NodeTls, issuer: &Issuer) -> Result<(), RenewError> {
    let id = node_tls.cert.info().identity;
    let csr = node_tls.key.csr_pem(&id.node_id)?;
    let cert_pem = match issuer {
        Issuer::Local(store) => crate::admission::reissue(store, &id.node_id, &csr)?,
        Issuer::Remote(managers) => {
            let tls = crate::tls::client_config(&node_tls.ca_pem, Some(node_tls.cert.clone()))?;
            crate::rpc::transport::ask_managers(&managers(), &tls, |channel| {
                let csr_pem = csr.clone();
                async move {
                    CaClient::new(channel)
                        .renew(RenewRequest { csr_pem })
                        .await
                        .map(|r| r.into_inner().cert_pem)
                        .map_err(|s| s.message().to_string())
                }
            })
            .await?
        }
    };
    Ok(node_tls.renewed(&cert_pem)?)
}
