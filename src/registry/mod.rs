//! Talking to OCI registries (oci-client): which address and scheme to
//! use for a host (its mirrors first; plain HTTP only on loopback or for
//! hosts an admin listed), its credentials and private CA, and the few
//! calls shoal makes: a manifest by tag or digest, and a blob as a stream
//! from an offset. Used by the manager (a tag resolved to its digest at
//! `service create`) and by the node (pulls into containerd).
//!
//! A leaf module: it knows `crate::types` only.

mod platform;

pub use platform::{manifest_platform, pick, platforms_of_index, ImagePlatform, IndexEntry};

use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use oci_client::client::ClientProtocol;
use oci_client::client::{BlobResponse, Certificate, CertificateEncoding, ClientConfig};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};

use crate::types::{is_loopback_host, registry_host, repository, tag, RegistryAccess};

/// Media types shoal reads as an image's root.
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const ACCEPT: &[&str] = &[
    MT_OCI_INDEX,
    MT_DOCKER_LIST,
    MT_OCI_MANIFEST,
    MT_DOCKER_MANIFEST,
];

/// Largest manifest, index or config read into memory.
pub const MAX_DOCUMENT: usize = 4 * 1024 * 1024;
/// How long connecting to a registry may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a registry may go silent in the middle of an answer.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a registry could not be used, in words for `service ps`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RegistryError(pub String);

/// A manifest or index, its exact bytes (the digest is over them) and
/// what they are.
#[derive(Debug, Clone)]
pub struct Document {
    pub digest: String,
    pub media_type: String,
    pub bytes: Bytes,
}

impl Document {
    pub fn is_index(&self) -> bool {
        self.media_type == MT_OCI_INDEX || self.media_type == MT_DOCKER_LIST
    }
}

/// A blob's bytes from `offset` on, as the registry sends them.
pub struct BlobStream {
    /// Where the stream starts: the offset asked for, or 0 when the
    /// registry ignored the range and sends the whole blob.
    pub offset: u64,
    pub stream: BoxStream<'static, Result<Bytes, std::io::Error>>,
}

/// One registry, reached at the address that answered (a mirror or the
/// host itself), for one repository.
pub struct Source {
    client: Client,
    auth: RegistryAuth,
    /// The address in use: `host[:port]`.
    pub addr: String,
    repository: String,
}

/// The address and scheme candidates for `host`: its mirrors, then itself.
fn candidates(host: &str, access: Option<&RegistryAccess>) -> Vec<String> {
    let mut out: Vec<String> = access.map(|a| a.mirrors.clone()).unwrap_or_default();
    out.push(host.to_string());
    out
}

/// Whether plain HTTP may be tried for `addr`: on loopback, or listed by
/// an admin as insecure. Nothing else ever falls back to HTTP.
fn http_allowed(addr: &str, access: Option<&RegistryAccess>) -> bool {
    is_loopback_host(addr) || access.is_some_and(|a| a.insecure)
}

/// Clients built so far, by what they were built with: building one loads
/// the system's root certificates (about 0.1 s), which every `service
/// create` would otherwise pay. The credentials are part of the key, as a
/// client keeps the first ones it was given.
fn client_for(
    addr: &str,
    access: Option<&RegistryAccess>,
    http: bool,
) -> Result<Client, RegistryError> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CLIENTS: OnceLock<Mutex<HashMap<String, Client>>> = OnceLock::new();
    let key = {
        let mut h = Sha256::new();
        h.update(addr.as_bytes());
        h.update([u8::from(http)]);
        if let Some(a) = access {
            for part in [&a.username, &a.password, &a.ca_pem] {
                h.update(part.as_deref().unwrap_or("").as_bytes());
                h.update([0]);
            }
        }
        hex::encode(h.finalize())
    };
    let cache = CLIENTS.get_or_init(Default::default);
    if let Some(c) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(c.clone());
    }
    let client = build_client(addr, access, http)?;
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    // A bound: keys change only with registries and credentials.
    if map.len() >= 256 {
        map.clear();
    }
    map.insert(key, client.clone());
    Ok(client)
}

fn build_client(
    addr: &str,
    access: Option<&RegistryAccess>,
    http: bool,
) -> Result<Client, RegistryError> {
    crate::tls::install_default_provider();
    let mut config = ClientConfig {
        protocol: if http {
            ClientProtocol::HttpsExcept(vec![addr.to_string()])
        } else {
            ClientProtocol::Https
        },
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        // Platforms are shoal's to pick (`platform.rs`), with variants.
        platform_resolver: None,
        user_agent: concat!("shoal/", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    };
    if let Some(pem) = access.and_then(|a| a.ca_pem.as_ref()) {
        config.extra_root_certificates.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data: pem.as_bytes().to_vec(),
        });
    }
    Client::try_from(config)
        .map_err(|e| RegistryError(format!("registry {addr}: cannot set up a client: {e}")))
}

fn auth_for(access: Option<&RegistryAccess>) -> RegistryAuth {
    match access {
        Some(RegistryAccess {
            username: Some(u),
            password: Some(p),
            ..
        }) => RegistryAuth::Basic(u.clone(), p.clone()),
        _ => RegistryAuth::Anonymous,
    }
}

/// An error with its causes: reqwest's own text is only "error sending
/// request".
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Whether an error happened before any HTTP answer: a scheme fallback
/// (HTTPS to HTTP) or the next mirror is worth a try.
fn is_transport(e: &oci_client::errors::OciDistributionError) -> bool {
    matches!(e, oci_client::errors::OciDistributionError::RequestError(r) if r.status().is_none())
}

impl Source {
    /// Finds an address for the image's registry that answers, and reads
    /// the image's root document there: by `digest` when given (and
    /// checked against it), else by the reference's tag.
    pub async fn open(
        normalized: &str,
        digest: Option<&str>,
        access: Option<&RegistryAccess>,
    ) -> Result<(Source, Document), RegistryError> {
        let host = registry_host(normalized);
        let repo = repository(normalized).to_string();
        let pinned = digest.or_else(|| normalized.split_once('@').map(|(_, d)| d));
        let mut errors = Vec::new();
        for addr in candidates(host, access) {
            let mut schemes = vec![false];
            if http_allowed(&addr, access) {
                schemes.push(true);
            }
            for http in schemes {
                let source = Source {
                    client: client_for(&addr, access, http)?,
                    auth: auth_for(access),
                    addr: addr.clone(),
                    repository: repo.clone(),
                };
                let reference = match pinned {
                    Some(d) => source.reference_digest(d),
                    None => source.reference_tag(tag(normalized).unwrap_or("latest")),
                };
                match source.document(&reference).await {
                    Ok(doc) => return Ok((source, doc)),
                    Err((e, transport)) => {
                        errors.push(e.0);
                        if !transport {
                            // The registry answered: a wrong scheme or a
                            // mirror would not change its answer.
                            return Err(RegistryError(errors.join("; ")));
                        }
                    }
                }
            }
        }
        Err(RegistryError(errors.join("; ")))
    }

    fn reference_tag(&self, tag: &str) -> Reference {
        Reference::with_tag(self.addr.clone(), self.repository.clone(), tag.to_string())
    }

    fn reference_digest(&self, digest: &str) -> Reference {
        Reference::with_digest(
            self.addr.clone(),
            self.repository.clone(),
            digest.to_string(),
        )
    }

    /// A manifest or index by digest, checked against it.
    pub async fn manifest(&self, digest: &str) -> Result<Document, RegistryError> {
        self.document(&self.reference_digest(digest))
            .await
            .map_err(|(e, _)| e)
    }

    /// Reads a root document; the error says whether the registry was
    /// reached at all.
    async fn document(&self, reference: &Reference) -> Result<Document, (RegistryError, bool)> {
        let what = format!("{}/{}", self.addr, self.repository);
        let (bytes, digest) = self
            .client
            .pull_manifest_raw(reference, &self.auth, ACCEPT)
            .await
            .map_err(|e| {
                let transport = is_transport(&e);
                (
                    RegistryError(format!("registry {}: {what}: {}", self.addr, chain(&e))),
                    transport,
                )
            })?;
        if bytes.len() > MAX_DOCUMENT {
            return Err((
                RegistryError(format!(
                    "registry {}: the manifest of {what} is larger than {MAX_DOCUMENT} bytes",
                    self.addr
                )),
                false,
            ));
        }
        // oci-client checks a digest it was given; the bytes are checked
        // here in every case, since the digest is what every node runs.
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if digest.starts_with("sha256:") && digest != actual {
            return Err((
                RegistryError(format!(
                    "registry {}: the manifest of {what} is {actual}, not {digest} as announced",
                    self.addr
                )),
                false,
            ));
        }
        let media_type = media_type_of(&bytes).map_err(|e| (e, false))?;
        Ok(Document {
            digest: actual,
            media_type,
            bytes,
        })
    }

    /// A blob from `offset` on. The caller checks the digest of the whole.
    pub async fn blob(&self, digest: &str, offset: u64) -> Result<BlobStream, RegistryError> {
        let reference = self.reference_digest(digest);
        self.client
            .store_auth_if_needed(reference.resolve_registry(), &self.auth)
            .await;
        let err = |e: oci_client::errors::OciDistributionError| {
            RegistryError(format!(
                "registry {}: blob {digest} of {}: {}",
                self.addr,
                self.repository,
                chain(&e)
            ))
        };
        if offset == 0 {
            let s = self
                .client
                .pull_blob_stream(&reference, digest)
                .await
                .map_err(err)?;
            return Ok(BlobStream {
                offset: 0,
                stream: s.stream,
            });
        }
        match self
            .client
            .pull_blob_stream_partial(&reference, digest, offset, None)
            .await
            .map_err(err)?
        {
            BlobResponse::Partial(s) => Ok(BlobStream {
                offset,
                stream: s.stream,
            }),
            BlobResponse::Full(s) => Ok(BlobStream {
                offset: 0,
                stream: s.stream,
            }),
        }
    }

    /// A small blob (an image config) in memory, checked against `digest`.
    pub async fn small_blob(&self, digest: &str) -> Result<Bytes, RegistryError> {
        let mut s = self.blob(digest, 0).await?.stream;
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            let chunk = chunk.map_err(|e| {
                RegistryError(format!("registry {}: blob {digest}: {e}", self.addr))
            })?;
            out.extend_from_slice(&chunk);
            if out.len() > MAX_DOCUMENT {
                return Err(RegistryError(format!(
                    "registry {}: blob {digest} is larger than {MAX_DOCUMENT} bytes",
                    self.addr
                )));
            }
        }
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&out)));
        if actual != digest {
            return Err(RegistryError(format!(
                "registry {}: blob {digest} arrived as {actual}",
                self.addr
            )));
        }
        Ok(out.into())
    }
}

/// The media type a document says it is; an OCI document may leave it
/// out, and then an index is told by its `manifests`.
fn media_type_of(bytes: &[u8]) -> Result<String, RegistryError> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    let head: Head = serde_json::from_slice(bytes)
        .map_err(|e| RegistryError(format!("the registry sent an unreadable manifest: {e}")))?;
    let mt = match head.media_type {
        Some(m) => m,
        None if head.manifests.is_some() => MT_OCI_INDEX.into(),
        None => MT_OCI_MANIFEST.into(),
    };
    if !ACCEPT.contains(&mt.as_str()) {
        return Err(RegistryError(format!(
            "unsupported manifest type {mt:?} (shoal runs OCI and Docker v2 images)"
        )));
    }
    Ok(mt)
}

/// What a tag points at now, for `service create` to pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub digest: String,
    /// `os/arch[/variant]` of each image it holds; empty when unknown.
    pub platforms: Vec<String>,
}

/// Asks the registry what `normalized` names now: its digest and
/// platforms. Bounded in time by the caller.
pub async fn resolve(
    normalized: &str,
    access: Option<&RegistryAccess>,
) -> Result<Resolved, RegistryError> {
    let (source, doc) = Source::open(normalized, None, access).await?;
    let platforms = if doc.is_index() {
        platforms_of_index(&doc.bytes)?
            .iter()
            .map(|e| e.platform.to_string())
            .collect()
    } else {
        let config = config_digest(&doc.bytes)?;
        let bytes = source.small_blob(&config).await?;
        vec![manifest_platform(&bytes)?.to_string()]
    };
    Ok(Resolved {
        digest: doc.digest,
        platforms,
    })
}

/// The config digest of an image manifest.
pub fn config_digest(manifest: &[u8]) -> Result<String, RegistryError> {
    #[derive(serde::Deserialize)]
    struct M {
        config: C,
    }
    #[derive(serde::Deserialize)]
    struct C {
        digest: String,
    }
    let m: M = serde_json::from_slice(manifest)
        .map_err(|e| RegistryError(format!("unreadable image manifest: {e}")))?;
    Ok(m.config.digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_only_for_loopback_or_listed_hosts() {
        assert!(http_allowed("127.0.0.1:5000", None));
        assert!(!http_allowed("registry.example:5000", None));
        let listed = RegistryAccess {
            host: "registry.example:5000".into(),
            insecure: true,
            ..Default::default()
        };
        assert!(http_allowed("registry.example:5000", Some(&listed)));
    }

    #[test]
    fn mirrors_come_first() {
        let a = RegistryAccess {
            host: "docker.io".into(),
            mirrors: vec!["mirror.lan:5000".into()],
            ..Default::default()
        };
        assert_eq!(
            candidates("docker.io", Some(&a)),
            vec!["mirror.lan:5000".to_string(), "docker.io".to_string()]
        );
    }

    #[test]
    fn media_types_are_read_or_inferred() {
        assert_eq!(media_type_of(br#"{"manifests":[]}"#).unwrap(), MT_OCI_INDEX);
        assert_eq!(
            media_type_of(br#"{"config":{},"layers":[]}"#).unwrap(),
            MT_OCI_MANIFEST
        );
        assert!(media_type_of(br#"{"mediaType":"text/html"}"#).is_err());
        assert!(media_type_of(b"<html>").is_err());
    }
}
