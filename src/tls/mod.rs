//! The cluster's TLS: the root CA, node keys and certificates, join tokens,
//! the peer's identity from its certificate, and the rustls configs that
//! every node-to-node connection uses (mTLS on port 4290).
//!
//! Pure library: nothing here opens a socket or touches the store. The
//! daemon decides when to issue, renew and rotate, and where PEMs live.
//!
//! - `ca`: the root CA (ECDSA P-256, 20 years) and issuing from a CSR.
//! - `node_key`: a node's private key, its CSR, and 0600 atomic files.
//! - `token`: `SHOAL-1-…` join tokens and the constant-time secret check.
//! - `identity`: `PeerIdentity` (CN = node id, OU = role, O = cluster id).
//! - `config`: reloadable certs, verifiers, server/client/bootstrap configs.
//! - `renew`: when to renew (random point in 50–80% of a cert's life).
//!
//! Crypto is rustls with *ring* only, passed explicitly to every builder, so
//! nothing depends on a process-wide default provider (with aws-lc-rs also
//! compiled in, `ServerConfig::builder()` panics; `cargo tree -i aws-lc-rs`
//! must stay empty).

mod ca;
mod config;
mod identity;
mod node_key;
mod renew;
mod token;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

pub use ca::{RootCa, ROOT_CA_COMMON_NAME, ROOT_CA_VALIDITY};
pub use config::{
    allow_all, bootstrap_client_config, check_root_digest, client_config, root_pem_from_chain,
    server_config, PeerFilter, Reason, ReloadableCert, ALPN_H2,
};
pub use identity::{CertInfo, PeerIdentity};
pub use node_key::{write_file_atomic, NodeKey};
pub use renew::renew_at;
pub use token::{JoinToken, JoinTokens, TOKEN_PREFIX};

/// A node's role as written in its certificate's OU. The same type as the
/// store's, so a handler can compare the certificate's role with the store's.
pub use crate::types::NodeRole as Role;

/// The DNS name in every manager certificate's SANs. A node that wants "any
/// manager of my cluster" connects with this server name, so the check holds
/// however the manager's IP changes, and a worker cannot pose as a manager.
pub const MANAGER_SERVER_NAME: &str = "shoal-manager";

/// The DNS name in every worker certificate's SANs (symmetry with
/// `MANAGER_SERVER_NAME`; managers reach a given worker by its node id).
pub const WORKER_SERVER_NAME: &str = "shoal-worker";

/// The one error type of this module's boundary.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The token does not have the `SHOAL-1-<digest>-<secret>` shape.
    #[error("malformed join token: expected SHOAL-1-<50 base-36 characters of CA digest>-<25 base-36 characters of secret>: {0}")]
    MalformedToken(&'static str),
    /// The token was made for a cluster with another root CA.
    #[error(
        "join token is for another cluster: its CA digest does not match this cluster's root CA"
    )]
    TokenWrongCluster,
    /// The secret matches neither current token: wrong, or rotated away.
    #[error("join token is not valid for this cluster: it is wrong or has been rotated")]
    TokenRefused,
    /// A CSR that cannot be parsed, has a bad signature, or a key we refuse.
    #[error("invalid certificate signing request: {0}")]
    BadCsr(String),
    /// A certificate we cannot parse, or that is not a shoal node cert.
    #[error("invalid certificate: {0}")]
    BadCert(String),
    /// A PEM input with nothing usable in it.
    #[error("invalid PEM ({what}): {detail}")]
    BadPem { what: &'static str, detail: String },
    /// A root CA whose digest is not the one the join token names.
    #[error("root CA digest {actual} does not match the join token's {expected}")]
    DigestMismatch { expected: String, actual: String },
    /// Certificate generation failed inside rcgen.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls refused a key, a cert or a config.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// Reading or writing a key or certificate file.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The ring crypto provider, built once and handed to every rustls builder
/// explicitly (never installed as the process default).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Installs ring as rustls' process-wide provider, once. shoal's own
/// configs name their provider; the registry client (reqwest, built with
/// no provider of its own) takes the process default, and without one it
/// would fail to build.
pub fn install_default_provider() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // Err: one is installed already, which can only be ring.
        let _ = rustls::crypto::CryptoProvider::install_default(
            rustls::crypto::ring::default_provider(),
        );
    });
}

/// SHA-256 of a certificate's DER, lowercase hex: what a join token pins.
pub fn cert_digest(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

/// All certificates in a PEM string, in order.
pub(crate) fn certs_from_pem(
    pem: &str,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, TlsError> {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            what: "certificate",
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::BadPem {
            what: "certificate",
            detail: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// One certificate's DER as PEM, with LF line ends like rcgen's (the `pem`
/// crate rcgen uses; same bytes as the PEM the CA wrote).
pub fn cert_der_to_pem(der: &[u8]) -> String {
    let lf = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der.to_vec()), lf)
}
