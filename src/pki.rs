//! A node's TLS material on disk, and how `init` makes it. Files live in
//! `<data dir>/tls/`: `ca.pem` (the cluster root), `node.key` (0600, never
//! leaves the node) and `node.pem` (this node's certificate).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::keyring::node_key_path;
use crate::tls::{write_file_atomic, JoinTokens, NodeKey, ReloadableCert, Role, RootCa, TlsError};

pub struct NodeTls {
    pub ca_pem: String,
    pub key: NodeKey,
    /// The current certificate; renewal swaps it in place.
    pub cert: Arc<ReloadableCert>,
    dir: PathBuf,
}

fn dir(data_dir: &Path) -> PathBuf {
    crate::data_dir::DataDir::at(data_dir).tls()
}

impl NodeTls {
    /// Load the material written by `init` or `join`; the key comes from
    /// the keyring, which knows whether it is sealed.
    pub fn load(data_dir: &Path, keys: &crate::keyring::Keyring) -> Result<NodeTls, TlsError> {
        let dir = dir(data_dir);
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).map_err(|e| {
                TlsError::BadCert(format!("cannot read {}: {e}", dir.join(name).display()))
            })
        };
        let ca_pem = read("ca.pem")?;
        let key = keys.node_key()?;
        let cert = ReloadableCert::new(&ca_pem, &read("node.pem")?, &key)?;
        Ok(NodeTls {
            ca_pem,
            key,
            cert,
            dir,
        })
    }

    /// Save a node's first material. The key is written first and the
    /// certificate last, so a crash in between leaves no usable half.
    pub fn save(
        data_dir: &Path,
        ca_pem: &str,
        key: &NodeKey,
        cert_pem: &str,
    ) -> Result<(), TlsError> {
        let dir = dir(data_dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| TlsError::BadCert(format!("cannot create {}: {e}", dir.display())))?;
        key.save(&node_key_path(data_dir))?;
        write_file_atomic(&dir.join("ca.pem"), ca_pem.as_bytes(), 0o644)?;
        write_file_atomic(&dir.join("node.pem"), cert_pem.as_bytes(), 0o644)
    }

    /// Swap in a renewed certificate (same key), on disk and in use.
    pub fn renewed(&self, cert_pem: &str) -> Result<(), TlsError> {
        self.cert.update(cert_pem, &self.key)?;
        write_file_atomic(&self.dir.join("node.pem"), cert_pem.as_bytes(), 0o644)
    }
}

/// What `init` creates: the root CA, the join tokens, and the first
/// manager's certificate (saved under `data_dir`).
pub struct Bootstrap {
    pub ca: RootCa,
    pub tokens: JoinTokens,
}

pub fn bootstrap_cluster(
    data_dir: &Path,
    cluster_id: &str,
    node_id: &str,
    sans: &[String],
    expiry: Duration,
) -> Result<Bootstrap, TlsError> {
    let ca = RootCa::generate(cluster_id)?;
    let tokens = JoinTokens::generate(&ca.digest())?;
    let key = NodeKey::generate()?;
    let cert = ca.issue(
        &key.csr_pem(node_id)?,
        node_id,
        Role::Manager,
        cluster_id,
        sans,
        expiry,
    )?;
    NodeTls::save(data_dir, ca.cert_pem(), &key, &cert)?;
    Ok(Bootstrap { ca, tokens })
}

/// Why the cluster's CA did not issue a certificate.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The CA in the store cannot be read: the cluster's fault.
    #[error("the cluster's CA cannot be read: {0}")]
    Ca(TlsError),
    /// The request cannot be signed: the caller's fault.
    #[error("{0}")]
    Request(TlsError),
}

/// Issue a node certificate from the cluster's CA, as the store holds it:
/// the one place a node's certificate is made, for joins and renewals
/// alike. The identity (node id, role, cluster) is the caller's decision,
/// never the CSR's; the names are the node's address and hostname.
pub fn issue(
    cluster: &crate::types::Cluster,
    csr_pem: &str,
    node_id: &str,
    role: crate::types::NodeRole,
    addr: &str,
    hostname: &str,
) -> Result<String, IssueError> {
    let ca = RootCa::from_pem(&cluster.ca_cert_pem, &cluster.ca_key_pem).map_err(IssueError::Ca)?;
    let role = match role {
        crate::types::NodeRole::Manager => Role::Manager,
        crate::types::NodeRole::Worker => Role::Worker,
    };
    ca.issue(
        csr_pem,
        node_id,
        role,
        &cluster.id,
        &sans_for(addr, hostname),
        Duration::from_millis(cluster.cert_expiry_ms),
    )
    .map_err(IssueError::Request)
}

/// SANs for a node: the host part of its advertise address and hostname.
pub fn sans_for(advertise: &str, hostname: &str) -> Vec<String> {
    let host = advertise
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']))
        .unwrap_or(advertise);
    let mut sans = vec![host.to_string()];
    if !hostname.is_empty() && hostname != host {
        sans.push(hostname.to_string());
    }
    sans
}

/// The digest of a root CA certificate (PEM), as join tokens carry it.
pub fn ca_digest(ca_pem: &str) -> Result<String, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| TlsError::BadCert(format!("root CA: {e}")))?;
    Ok(crate::tls::cert_digest(&der))
}
