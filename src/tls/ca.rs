//! The cluster's root CA: generating it at `shoal init`, saving and loading
//! it as PEM, and issuing node certificates from CSRs.
//!
//! Identity is what the CA decides, never what the CSR asks for: the CSR only
//! contributes its public key (the private key stays on the node). Uses
//! rcgen for building and signing; reads nothing from the store.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::{cert_digest, Role, TlsError, MANAGER_SERVER_NAME, WORKER_SERVER_NAME};

/// The root's CN (its O is the cluster id).
pub const ROOT_CA_COMMON_NAME: &str = "shoal-root-ca";

/// Root CA lifetime, as Swarm's: 20 years.
pub const ROOT_CA_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);

/// The most a node cert's not-before is set back. Raspberry Pis have no
/// real-time clock, so a freshly booted node's clock may trail the CA's for a
/// while; a small backdate keeps a new cert from being "not yet valid".
const MAX_BACKDATE: Duration = Duration::from_secs(5 * 60);

/// The cluster's root CA: its certificate and its signing key.
pub struct RootCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    /// Also holds the signing key; `Issuer` is what rcgen signs with.
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for RootCa {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootCa")
            .field("digest", &self.digest())
            .finish_non_exhaustive()
    }
}

impl RootCa {
    /// A new root CA for `cluster_id`: ECDSA P-256, valid 20 years,
    /// CN "shoal-root-ca", O = cluster id.
    pub fn generate(cluster_id: &str) -> Result<RootCa, TlsError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, ROOT_CA_COMMON_NAME);
        dn.push(DnType::OrganizationName, cluster_id);
        params.distinguished_name = dn;
        // Path length 0: the root signs node certs directly, no intermediates.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + ROOT_CA_VALIDITY;
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        let cert_der = cert.der().clone();
        Ok(RootCa {
            cert_pem,
            cert_der,
            issuer: Issuer::new(params, key),
        })
    }

    /// (certificate PEM, private key PEM in PKCS#8). The key PEM is secret:
    /// write it with `write_file_atomic(.., 0o600)`.
    pub fn to_pem(&self) -> (String, String) {
        (self.cert_pem.clone(), self.issuer.key().serialize_pem())
    }

    /// Loads a root saved by `to_pem`.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<RootCa, TlsError> {
        let cert_der = super::certs_from_pem(cert_pem)?
            .into_iter()
            .next()
            .expect("certs_from_pem never returns an empty list");
        let key = KeyPair::from_pem(key_pem).map_err(|e| TlsError::BadPem {
            what: "root CA key",
            detail: e.to_string(),
        })?;
        // A key that does not belong to the cert would sign certs nobody can
        // verify: catch it at load rather than at the first join.
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| TlsError::BadCert(format!("root CA: {e}")))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(TlsError::BadCert(
                "root CA key does not match the root CA certificate".into(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(RootCa {
            cert_pem: super::cert_der_to_pem(&cert_der),
            cert_der,
            issuer,
        })
    }

    /// The root certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The root certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// SHA-256 of the root certificate's DER, lowercase hex. Join tokens pin
    /// it, and a joining node checks the CA it is shown against it.
    pub fn digest(&self) -> String {
        cert_digest(&self.cert_der)
    }

    /// Issues a node certificate for the key in `csr_pem`.
    ///
    /// CN = `node_id`, OU = role, O = `cluster_id`; SANs = `node_id` (DNS),
    /// the role's name (`shoal-manager`/`shoal-worker`, DNS: lets a node ask
    /// for "a manager" whatever its IP) and each of `sans` (IP if it parses
    /// as one, DNS otherwise); EKU serverAuth + clientAuth. The CSR's subject
    /// and extensions are ignored. Returns the certificate PEM (leaf only).
    pub fn issue(
        &self,
        csr_pem: &str,
        node_id: &str,
        role: Role,
        cluster_id: &str,
        sans: &[String],
        validity: Duration,
    ) -> Result<String, TlsError> {
        if node_id.is_empty() || cluster_id.is_empty() {
            return Err(TlsError::BadCsr(
                "node id and cluster id must not be empty".into(),
            ));
        }
        // from_pem also verifies the CSR's self-signature: proof that the
        // requester holds the private key.
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| TlsError::BadCsr(e.to_string()))?;
        // Node keys are P-256 (NodeKey makes nothing else). The signature OID
        // is the same for every ECDSA curve with SHA-256, so also check the
        // key's length: an uncompressed P-256 point is 65 bytes.
        use rcgen::PublicKeyData;
        if csr.public_key.algorithm() != &PKCS_ECDSA_P256_SHA256
            || csr.public_key.der_bytes().len() != 65
        {
            return Err(TlsError::BadCsr("the key must be ECDSA P-256".into()));
        }

        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_id);
        dn.push(DnType::OrganizationalUnitName, role.as_str());
        dn.push(DnType::OrganizationName, cluster_id);
        params.distinguished_name = dn;
        params.subject_alt_names = subject_alt_names(node_id, role, sans)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        // rcgen's default serial is a hash of the public key, which would
        // repeat when a renewal keeps the key: make every cert's unique.
        params.serial_number = Some(random_serial());
        let now = OffsetDateTime::now_utc();
        let backdate = MAX_BACKDATE.min(validity / 10);
        params.not_before = now - backdate;
        params.not_after = now + validity;

        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok(cert.pem())
    }
}

/// The SAN list: node id, role name, then the given addresses, deduplicated.
fn subject_alt_names(node_id: &str, role: Role, sans: &[String]) -> Result<Vec<SanType>, TlsError> {
    let role_name = match role {
        Role::Manager => MANAGER_SERVER_NAME,
        Role::Worker => WORKER_SERVER_NAME,
    };
    let mut out: Vec<SanType> = Vec::new();
    for name in [node_id, role_name]
        .into_iter()
        .chain(sans.iter().map(String::as_str))
    {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                name.try_into()
                    .map_err(|_| TlsError::BadCsr(format!("not a valid DNS name: {name:?}")))?,
            ),
        };
        if !out.contains(&san) {
            out.push(san);
        }
    }
    Ok(out)
}

/// 128 random bits, top bit clear so the DER integer stays positive and
/// 16 bytes long (RFC 5280 allows up to 20).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{CertInfo, NodeKey};

    #[test]
    fn root_is_a_p256_ca_with_the_cluster_as_o() {
        let ca = RootCa::generate("cluster1").unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
        assert!(cert.is_ca());
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), ROOT_CA_COMMON_NAME);
        let o = cert.subject().iter_organization().next().unwrap();
        assert_eq!(o.as_str().unwrap(), "cluster1");
        let years = cert.validity().time_to_expiration().unwrap().whole_days() / 365;
        assert!((19..=20).contains(&years), "{years}");
        assert_eq!(ca.digest().len(), 64);
    }

    #[test]
    fn pem_round_trip_keeps_the_digest_and_can_issue() {
        let ca = RootCa::generate("c").unwrap();
        let (cert, key) = ca.to_pem();
        let back = RootCa::from_pem(&cert, &key).unwrap();
        assert_eq!(back.digest(), ca.digest());
        let node = NodeKey::generate().unwrap();
        let pem = back
            .issue(
                &node.csr_pem("n1").unwrap(),
                "n1",
                Role::Worker,
                "c",
                &[],
                Duration::from_secs(60),
            )
            .unwrap();
        let info = CertInfo::from_pem(&pem).unwrap();
        assert_eq!(info.identity.node_id, "n1");
    }

    #[test]
    fn from_pem_refuses_a_key_of_another_ca() {
        let a = RootCa::generate("c").unwrap();
        let b = RootCa::generate("c").unwrap();
        let err = RootCa::from_pem(&a.to_pem().0, &b.to_pem().1).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn issued_cert_has_the_identity_the_ca_decides() {
        let ca = RootCa::generate("cluster1").unwrap();
        let node = NodeKey::generate().unwrap();
        // The CSR asks to be "evil"; the CA names it n1.
        let csr = node.csr_pem("evil").unwrap();
        let sans = vec![
            "192.168.1.10".to_string(),
            "pi1.local".to_string(),
            "n1".to_string(),
        ];
        let pem = ca
            .issue(
                &csr,
                "n1",
                Role::Manager,
                "cluster1",
                &sans,
                Duration::from_secs(3600),
            )
            .unwrap();
        let der = crate::tls::certs_from_pem(&pem).unwrap().remove(0);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let info = CertInfo::from_der(&der).unwrap();
        assert_eq!(info.identity.node_id, "n1");
        assert_eq!(info.identity.role, Role::Manager);
        assert_eq!(info.identity.cluster_id, "cluster1");
        assert!(!cert.is_ca());
        // The public key is the node's.
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            KeyPair::from_pem(&node.to_pem()).unwrap().public_key_raw()
        );
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        let names: Vec<String> = san.general_names.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            names,
            [
                "DNSName(n1)",
                "DNSName(shoal-manager)",
                "IPAddress(c0:a8:01:0a)",
                "DNSName(pi1.local)"
            ]
        );
        // (x509-parser prints IP SANs as hex: c0:a8:01:0a is 192.168.1.10.)
        // Validity: an hour, backdated by at most six minutes.
        let life = info.not_after.duration_since(info.not_before).unwrap();
        assert!(life >= Duration::from_secs(3600) && life <= Duration::from_secs(3600 + 360));
    }

    #[test]
    fn serials_differ_even_with_the_same_key() {
        let ca = RootCa::generate("c").unwrap();
        let node = NodeKey::generate().unwrap();
        let csr = node.csr_pem("n").unwrap();
        let a = ca
            .issue(&csr, "n", Role::Worker, "c", &[], Duration::from_secs(60))
            .unwrap();
        let b = ca
            .issue(&csr, "n", Role::Worker, "c", &[], Duration::from_secs(60))
            .unwrap();
        assert_ne!(
            CertInfo::from_pem(&a).unwrap().serial,
            CertInfo::from_pem(&b).unwrap().serial
        );
    }

    #[test]
    fn garbage_csr_is_refused() {
        let ca = RootCa::generate("c").unwrap();
        let err = ca
            .issue(
                "not a csr",
                "n",
                Role::Worker,
                "c",
                &[],
                Duration::from_secs(60),
            )
            .unwrap_err();
        assert!(matches!(err, TlsError::BadCsr(_)), "{err}");
    }

    #[test]
    fn non_p256_key_is_refused() {
        let ca = RootCa::generate("c").unwrap();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let err = ca
            .issue(&csr, "n", Role::Worker, "c", &[], Duration::from_secs(60))
            .unwrap_err();
        assert!(err.to_string().contains("P-256"), "{err}");
    }
}
