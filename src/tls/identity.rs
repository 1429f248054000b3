//! Who a peer is, read from its verified end-entity certificate:
//! CN = node id, OU = role, O = cluster id.
//!
//! RPC handlers take the caller's identity from here and never from a
//! request field (house habit 7). `CertInfo` adds what renewal needs (the
//! serial and the validity window). Parsing uses x509-parser; nothing here
//! verifies signatures: the rustls verifiers in `config` do that first.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;
use x509_parser::x509::AttributeTypeAndValue;

use super::{Role, TlsError};

/// The authenticated identity of the node at the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub node_id: String,
    pub role: Role,
    pub cluster_id: String,
}

impl PeerIdentity {
    /// Parses the identity out of a node certificate (DER).
    pub fn from_der(der: &[u8]) -> Result<PeerIdentity, TlsError> {
        Ok(CertInfo::from_der(der)?.identity)
    }

    /// The identity of a connection's peer, from the certificates rustls
    /// verified during the handshake (`conn.peer_certificates()`; for a
    /// tokio-rustls stream, `stream.get_ref().1.peer_certificates()`).
    ///
    /// `None` when the peer sent no certificate, which the server allows so
    /// that the CA/join endpoint works: every other handler must then
    /// refuse the call.
    pub fn from_peer_certs(certs: Option<&[CertificateDer<'_>]>) -> Option<PeerIdentity> {
        let leaf = certs?.first()?;
        // The client verifier already parsed this same cert before
        // accepting it, so a failure here is a bug, not an attack: log it
        // and treat the caller as anonymous (which handlers refuse).
        match PeerIdentity::from_der(leaf) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(error = %e, "verified peer certificate has no shoal identity");
                None
            }
        }
    }
}

/// What shoal reads from a node certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub identity: PeerIdentity,
    /// Serial number, lowercase hex, as the CA wrote it.
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl CertInfo {
    /// Reads a node certificate (DER).
    pub fn from_der(der: &[u8]) -> Result<CertInfo, TlsError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| TlsError::BadCert(e.to_string()))?;
        let subject = cert.subject();
        let node_id = single_attr("CN", subject.iter_common_name())?;
        let role = match single_attr("OU", subject.iter_organizational_unit())?.as_str() {
            "manager" => Role::Manager,
            "worker" => Role::Worker,
            other => {
                return Err(TlsError::BadCert(format!(
                    "unknown role {other:?} in the certificate's OU"
                )))
            }
        };
        let cluster_id = single_attr("O", subject.iter_organization())?;
        let validity = cert.validity();
        Ok(CertInfo {
            identity: PeerIdentity {
                node_id,
                role,
                cluster_id,
            },
            serial: hex::encode(cert.raw_serial()),
            not_before: to_system_time(validity.not_before.timestamp()),
            not_after: to_system_time(validity.not_after.timestamp()),
        })
    }

    /// Reads the first certificate of a PEM (a node's cert file holds its
    /// leaf first).
    pub fn from_pem(pem: &str) -> Result<CertInfo, TlsError> {
        let certs = super::certs_from_pem(pem)?;
        CertInfo::from_der(&certs[0])
    }
}

/// Exactly one attribute of this kind, as UTF-8: a cert with two CNs would
/// be ambiguous about who it names, so it names nobody.
fn single_attr<'a, 'b: 'a>(
    what: &str,
    mut iter: impl Iterator<Item = &'a AttributeTypeAndValue<'b>>,
) -> Result<String, TlsError> {
    let first = iter
        .next()
        .ok_or_else(|| TlsError::BadCert(format!("the certificate has no {what}")))?;
    if iter.next().is_some() {
        return Err(TlsError::BadCert(format!(
            "the certificate has more than one {what}"
        )));
    }
    let value = first
        .as_str()
        .map_err(|_| TlsError::BadCert(format!("the certificate's {what} is not a string")))?;
    if value.is_empty() {
        return Err(TlsError::BadCert(format!(
            "the certificate's {what} is empty"
        )));
    }
    Ok(value.to_string())
}

fn to_system_time(unix_secs: i64) -> SystemTime {
    if unix_secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix_secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(unix_secs.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{NodeKey, RootCa};

    fn issue(role: Role) -> String {
        let ca = RootCa::generate("cl").unwrap();
        let key = NodeKey::generate().unwrap();
        ca.issue(
            &key.csr_pem("x").unwrap(),
            "node-a",
            role,
            "cl",
            &[],
            Duration::from_secs(600),
        )
        .unwrap()
    }

    #[test]
    fn reads_cn_ou_o() {
        for role in [Role::Worker, Role::Manager] {
            let info = CertInfo::from_pem(&issue(role)).unwrap();
            assert_eq!(
                info.identity,
                PeerIdentity {
                    node_id: "node-a".into(),
                    role,
                    cluster_id: "cl".into()
                }
            );
            assert_eq!(info.serial.len(), 32);
            assert!(info.not_before < SystemTime::now() && SystemTime::now() < info.not_after);
        }
    }

    #[test]
    fn a_cert_without_a_role_is_not_a_node() {
        // The root has CN and O but no OU.
        let ca = RootCa::generate("cl").unwrap();
        let err = PeerIdentity::from_der(ca.cert_der()).unwrap_err();
        assert!(err.to_string().contains("no OU"), "{err}");
    }

    #[test]
    fn an_unknown_role_is_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationalUnitName, "admin");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "cl");
        let cert = params.self_signed(&key).unwrap();
        let err = PeerIdentity::from_der(cert.der()).unwrap_err();
        assert!(err.to_string().contains("unknown role \"admin\""), "{err}");
    }

    #[test]
    fn no_certs_means_anonymous() {
        assert_eq!(PeerIdentity::from_peer_certs(None), None);
        assert_eq!(PeerIdentity::from_peer_certs(Some(&[])), None);
        let der = crate::tls::certs_from_pem(&issue(Role::Worker)).unwrap();
        let id = PeerIdentity::from_peer_certs(Some(&der)).unwrap();
        assert_eq!(id.role, Role::Worker);
    }
}
