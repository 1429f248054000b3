//! rustls configs for node-to-node mTLS (port 4290), built so that renewal
//! needs no restart and removed nodes are refused at the handshake.
//!
//! - `ReloadableCert` holds the current chain and key behind a lock and is
//!   both the server's and the client's certificate resolver: `update` swaps
//!   in a renewed cert, and the next handshake uses it.
//! - The server's client verifier checks the chain against the cluster root
//!   (rustls's `WebPkiClientVerifier` inside), then asks a `PeerFilter`
//!   whether this node is still a member. A client certificate is optional,
//!   so the CA/join endpoint works for a node that has none yet; every other
//!   handler must require a `PeerIdentity`.
//! - Clients check the server's chain against the root and its SANs (rustls's
//!   `WebPkiServerVerifier`): connect with the node id, an address in its
//!   SANs, or `MANAGER_SERVER_NAME` for "any manager of my cluster".
//! - A joining node has no root yet, only the digest in its token: the
//!   bootstrap config trusts the root the server presents if it has that
//!   digest (see `bootstrap_client_config`).
//!
//! TLS 1.3 only: every peer is shoal, and 1.3 also keeps client certificates
//! (node ids) off the wire in clear. ALPN is "h2" for tonic.
//!
//! Session resumption is off on both sides. A resumed session skips the
//! client verifier, so a removed node could come back on an old ticket, and
//! it skips the server's certificate, so a client would not see a renewal.
//! Node connections are few and long-lived (gRPC), so full handshakes cost
//! little.

use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, OtherError,
    RootCertStore, ServerConfig, SignatureScheme,
};

use super::{cert_der_to_pem, cert_digest, certs_from_pem, provider};
use super::{CertInfo, NodeKey, PeerIdentity, TlsError};

/// The ALPN protocol tonic (HTTP/2) needs.
pub const ALPN_H2: &[u8] = b"h2";

/// Decides at the handshake whether a verified peer may connect, e.g.
/// "is this node id still in the store, not removed". Called on every
/// handshake with a client certificate: keep it fast and non-blocking.
pub type PeerFilter = Arc<dyn Fn(&PeerIdentity) -> bool + Send + Sync>;

/// A `PeerFilter` that lets every verified node in.
pub fn allow_all() -> PeerFilter {
    Arc::new(|_| true)
}

/// This node's current certificate chain and key, swappable at run time.
#[derive(Debug)]
pub struct ReloadableCert {
    /// Appended to every chain we present, so that a joining node (which
    /// has only a digest) can hash it, and peers can build the path.
    root: CertificateDer<'static>,
    /// std RwLock: only held to clone or replace an `Arc`, never across an
    /// `.await`. Handshakes read it; renewal writes it every few weeks.
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    /// `cert_pem` is this node's certificate (its leaf first; the root is
    /// added if missing); `key` must be the key the cert was issued for.
    pub fn new(root_ca_pem: &str, cert_pem: &str, key: &NodeKey) -> Result<Arc<Self>, TlsError> {
        let root = first_cert(root_ca_pem)?;
        let current = RwLock::new(Arc::new(certified_key(&root, cert_pem, key)?));
        Ok(Arc::new(ReloadableCert { root, current }))
    }

    /// Swaps in a renewed certificate (and key, if it changed). Connections
    /// already open keep theirs; new handshakes use the new one.
    pub fn update(&self, cert_pem: &str, key: &NodeKey) -> Result<(), TlsError> {
        let fresh = Arc::new(certified_key(&self.root, cert_pem, key)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// The chain and key handshakes use now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        // A writer cannot panic half-way (it only assigns an Arc), so a
        // poisoned lock still holds a whole value.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Identity, serial and validity of the current leaf.
    pub fn info(&self) -> CertInfo {
        CertInfo::from_der(&self.current().cert[0])
            .expect("ReloadableCert only holds certs that parsed as node certs")
    }
}

/// Leaf (+ root) and key → a rustls `CertifiedKey`, refusing a key that is
/// not the cert's and a cert that carries no shoal identity.
fn certified_key(
    root: &CertificateDer<'static>,
    cert_pem: &str,
    key: &NodeKey,
) -> Result<CertifiedKey, TlsError> {
    let mut chain = certs_from_pem(cert_pem)?;
    CertInfo::from_der(&chain[0])?;
    if chain.last() != Some(root) {
        chain.push(root.clone());
    }
    Ok(CertifiedKey::from_der(
        chain,
        key.private_key_der(),
        &provider(),
    )?)
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for ReloadableCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The server's client verifier: the cluster root first, then the filter.
struct ClusterClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allow: PeerFilter,
}

impl std::fmt::Debug for ClusterClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClientVerifier")
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for ClusterClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // The CA/join endpoint must work for a node with no cert yet.
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        // Chain to our root, validity period, clientAuth EKU.
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let id = PeerIdentity::from_der(end_entity).map_err(other_cert_error)?;
        if !(self.allow)(&id) {
            tracing::warn!(node = %id.node_id, role = id.role.as_str(), "refused a node that is no longer a member at handshake");
            // Sent as the access_denied alert.
            return Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The config every node's port 4290 serves with. `allow` refuses removed
/// nodes at the handshake (their certs stay valid until they expire).
pub fn server_config(
    root_ca_pem: &str,
    cert: Arc<ReloadableCert>,
    allow: PeerFilter,
) -> Result<Arc<ServerConfig>, TlsError> {
    let inner = WebPkiClientVerifier::builder_with_provider(root_store(root_ca_pem)?, provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::BadCert(format!("root CA: {e}")))?;
    let verifier = Arc::new(ClusterClientVerifier { inner, allow });
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    // No resumption (see the module doc): no tickets, no session cache.
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// The config a node dials other nodes with. `cert` is `None` only for a
/// caller that has no cert (it can then reach only the CA/join endpoint).
pub fn client_config(
    root_ca_pem: &str,
    cert: Option<Arc<ReloadableCert>>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let verifier =
        WebPkiServerVerifier::builder_with_provider(root_store(root_ca_pem)?, provider())
            .build()
            .map_err(|e| TlsError::BadCert(format!("root CA: {e}")))?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_webpki_verifier(verifier);
    let mut config = match cert {
        Some(cert) => builder.with_client_cert_resolver(cert),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The config a joining node dials a manager with, before it has the root.
///
/// How the pin works: every shoal server presents its full chain, leaf
/// first and the root last (`ReloadableCert` appends it). This verifier
/// takes the last certificate the server sent, checks that its SHA-256 is
/// `expected_ca_digest` (hex, from the join token), and only then verifies
/// the leaf against that root exactly as `client_config` would: chain,
/// validity, serverAuth and the server name. A server that does not send
/// the root, or sends another, is refused before anything is trusted.
///
/// Dial with `MANAGER_SERVER_NAME` as the server name: only manager
/// certificates carry it, so a worker of the same cluster cannot pose as a
/// manager and collect the join token's secret, and the check holds however
/// the manager's IP changes. Afterwards, `root_pem_from_chain` gives the
/// root to store.
pub fn bootstrap_client_config(expected_ca_digest: &str) -> Result<Arc<ClientConfig>, TlsError> {
    let expected = expected_ca_digest.trim().to_ascii_lowercase();
    if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TlsError::BadCert(format!(
            "CA digest must be 64 hex characters, got {expected_ca_digest:?}"
        )));
    }
    let verifier = Arc::new(PinnedRootVerifier {
        expected,
        provider: provider(),
    });
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// After a bootstrap handshake: the root the server presented (the last
/// cert of its chain, e.g. `conn.peer_certificates()`), as PEM, checked
/// again against the token's digest.
pub fn root_pem_from_chain(
    chain: &[CertificateDer<'_>],
    expected_ca_digest: &str,
) -> Result<String, TlsError> {
    let root = chain
        .last()
        .ok_or_else(|| TlsError::BadCert("the server sent no certificates".into()))?;
    check_digest(root, expected_ca_digest)?;
    Ok(cert_der_to_pem(root))
}

/// Checks that a root CA PEM (e.g. one returned by the join RPC) has the
/// digest the join token names.
pub fn check_root_digest(root_ca_pem: &str, expected_ca_digest: &str) -> Result<(), TlsError> {
    check_digest(&first_cert(root_ca_pem)?, expected_ca_digest)
}

fn check_digest(der: &[u8], expected: &str) -> Result<(), TlsError> {
    let actual = cert_digest(der);
    let expected = expected.trim().to_ascii_lowercase();
    if actual != expected {
        return Err(TlsError::DigestMismatch { expected, actual });
    }
    Ok(())
}

/// Trusts the server's own root if its digest is the pinned one.
#[derive(Debug)]
struct PinnedRootVerifier {
    /// Lowercase hex SHA-256 of the root's DER.
    expected: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedRootVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(root) = intermediates.last() else {
            return Err(other_cert_error(TlsError::BadCert(
                "the server did not send its root CA".into(),
            )));
        };
        check_digest(root, &self.expected).map_err(other_cert_error)?;
        let mut roots = RootCertStore::empty();
        roots.add(root.clone().into_owned())?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| other_cert_error(TlsError::BadCert(e.to_string())))?;
        verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Our error inside rustls's. rustls prints the inner error with `{:?}`,
/// so it is wrapped in `Reason`, whose Debug is the readable message; a
/// caller finds the error itself with `Reason::of`.
fn other_cert_error(e: TlsError) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Reason(e)))))
}

/// Our check's error, as rustls carries it.
pub struct Reason(pub TlsError);

impl Reason {
    /// Our error, if rustls refused a certificate with one.
    pub fn of(e: &Error) -> Option<&TlsError> {
        match e {
            Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
                inner.downcast_ref::<Reason>().map(|r| &r.0)
            }
            _ => None,
        }
    }
}

impl std::fmt::Debug for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Reason {}

fn first_cert(pem: &str) -> Result<CertificateDer<'static>, TlsError> {
    Ok(certs_from_pem(pem)?.swap_remove(0))
}

fn root_store(root_ca_pem: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for der in certs_from_pem(root_ca_pem)? {
        roots.add(der)?;
    }
    Ok(Arc::new(roots))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{Role, RootCa};
    use std::time::Duration;

    fn issued(ca: &RootCa) -> (NodeKey, String) {
        let key = NodeKey::generate().unwrap();
        let csr = key.csr_pem("n").unwrap();
        let cert = ca
            .issue(&csr, "n", Role::Worker, "c", &[], Duration::from_secs(600))
            .unwrap();
        (key, cert)
    }

    #[test]
    fn the_presented_chain_ends_with_the_root() {
        let ca = RootCa::generate("c").unwrap();
        let (key, cert) = issued(&ca);
        let reloadable = ReloadableCert::new(ca.cert_pem(), &cert, &key).unwrap();
        let chain = reloadable.current().cert.clone();
        assert_eq!(chain.len(), 2);
        assert_eq!(&chain[1], ca.cert_der());
        // A chain that already ends with the root is not extended.
        let with_root = format!("{cert}{}", ca.cert_pem());
        reloadable.update(&with_root, &key).unwrap();
        assert_eq!(reloadable.current().cert.len(), 2);
        assert_eq!(
            root_pem_from_chain(&chain, &ca.digest()).unwrap(),
            ca.cert_pem()
        );
    }

    #[test]
    fn a_cert_with_a_key_not_its_own_is_refused() {
        let ca = RootCa::generate("c").unwrap();
        let (_, cert) = issued(&ca);
        let other = NodeKey::generate().unwrap();
        let err = ReloadableCert::new(ca.cert_pem(), &cert, &other).unwrap_err();
        assert!(matches!(err, TlsError::Rustls(_)), "{err}");
    }

    #[test]
    fn the_root_is_not_a_node_cert() {
        let ca = RootCa::generate("c").unwrap();
        let key = NodeKey::generate().unwrap();
        assert!(ReloadableCert::new(ca.cert_pem(), ca.cert_pem(), &key).is_err());
    }

    #[test]
    fn bootstrap_wants_a_sha256_hex_digest() {
        assert!(bootstrap_client_config("abc").is_err());
        assert!(bootstrap_client_config(&"zz".repeat(32)).is_err());
        let ca = RootCa::generate("c").unwrap();
        bootstrap_client_config(&ca.digest().to_uppercase()).unwrap();
    }

    #[test]
    fn configs_speak_h2_and_never_resume() {
        let ca = RootCa::generate("c").unwrap();
        let (key, cert) = issued(&ca);
        let reloadable = ReloadableCert::new(ca.cert_pem(), &cert, &key).unwrap();
        let server = server_config(ca.cert_pem(), reloadable.clone(), allow_all()).unwrap();
        assert_eq!(server.alpn_protocols, [ALPN_H2.to_vec()]);
        assert_eq!(server.send_tls13_tickets, 0);
        let client = client_config(ca.cert_pem(), Some(reloadable)).unwrap();
        assert_eq!(client.alpn_protocols, [ALPN_H2.to_vec()]);
        assert!(client.client_auth_cert_resolver.has_certs());
    }
}
