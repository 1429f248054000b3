//! A node's private key: generated on the node, never sent anywhere. The
//! node sends only a CSR, and keeps the key in a 0600 file written
//! atomically (temp file + fsync + rename), so a crash mid-write never
//! leaves a half key or a world-readable one behind.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::TlsError;

/// A node's ECDSA P-256 key pair.
pub struct NodeKey {
    key: KeyPair,
}

impl std::fmt::Debug for NodeKey {
    // Never print the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey").finish_non_exhaustive()
    }
}

impl NodeKey {
    /// A fresh P-256 key from ring's system RNG.
    pub fn generate() -> Result<NodeKey, TlsError> {
        Ok(NodeKey {
            key: KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
        })
    }

    /// A CSR for this key. The CN is a hint only: the CA ignores the
    /// subject and names the node itself.
    pub fn csr_pem(&self, node_id: &str) -> Result<String, TlsError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_id);
        params.distinguished_name = dn;
        Ok(params.serialize_request(&self.key)?.pem()?)
    }

    /// The key as PKCS#8 PEM ("PRIVATE KEY"). Secret.
    pub fn to_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Loads a key written by `to_pem`/`save`. Only P-256 keys are accepted,
    /// as the CA issues certificates for nothing else.
    pub fn from_pem(pem: &str) -> Result<NodeKey, TlsError> {
        let key = KeyPair::from_pem(pem).map_err(|e| TlsError::BadPem {
            what: "node key",
            detail: e.to_string(),
        })?;
        if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(TlsError::BadPem {
                what: "node key",
                detail: "not an ECDSA P-256 key".into(),
            });
        }
        Ok(NodeKey { key })
    }

    /// The key in the form rustls loads.
    pub fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }

    /// The SubjectPublicKeyInfo's key bits (the uncompressed point), to
    /// check that a certificate belongs to this key.
    pub fn public_key_raw(&self) -> &[u8] {
        self.key.public_key_raw()
    }

    /// Writes the key to `path` with mode 0600, atomically.
    pub fn save(&self, path: &Path) -> Result<(), TlsError> {
        write_file_atomic(path, self.to_pem().as_bytes(), 0o600)
    }

    /// Reads a key saved by `save`.
    pub fn load(path: &Path) -> Result<NodeKey, TlsError> {
        let pem = fs::read_to_string(path).map_err(|source| TlsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        NodeKey::from_pem(&pem)
    }
}

/// Writes `data` to `path` atomically with the given mode: a temp file in
/// the same directory (created with `mode` from the start, so a secret is
/// never readable by others even for a moment), fsync, rename over `path`,
/// then fsync the directory so the rename itself survives a power cut (SD
/// cards on Pis lose power often).
pub fn write_file_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    let io_err = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io_err(std::io::Error::other("path has no file name")))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    // A temp file left by a crash of a process with the same pid would make
    // create_new fail forever; it is ours to remove.
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn save_load_round_trip_with_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let key = NodeKey::generate().unwrap();
        key.save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = NodeKey::load(&path).unwrap();
        assert_eq!(back.public_key_raw(), key.public_key_raw());
        // Overwrite keeps the mode and leaves no temp file behind.
        NodeKey::generate().unwrap().save(&path).unwrap();
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("node.key")]);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn load_missing_file_names_the_path() {
        let err = NodeKey::load(Path::new("/nonexistent/shoal/node.key")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/shoal/node.key"),
            "{err}"
        );
    }

    #[test]
    fn csr_is_parseable_and_signed_by_the_key() {
        let key = NodeKey::generate().unwrap();
        let csr = key.csr_pem("n1").unwrap();
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&csr).unwrap();
        use rcgen::PublicKeyData;
        assert_eq!(parsed.public_key.der_bytes(), key.public_key_raw());
    }

    #[test]
    fn rustls_accepts_the_key() {
        let key = NodeKey::generate().unwrap();
        crate::tls::provider()
            .key_provider
            .load_private_key(key.private_key_der())
            .unwrap();
    }

    #[test]
    fn non_p256_key_is_refused() {
        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        assert!(NodeKey::from_pem(&p384.serialize_pem()).is_err());
    }
}
