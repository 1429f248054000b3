//! `shoal image load`: importing an OCI-layout or `docker save` tarball
//! through containerd's API only.
//!
//! Everything happens under one lease: the blobs are stored
//! (`archive.rs`), GC labels are set so the image keeps what it references
//! (`gc.ref.content.*` on index and manifest, `gc.ref.snapshot.overlayfs`
//! on the config), the layers for this machine are unpacked, and the image
//! records are created or updated. Then the lease ends and the image
//! records alone keep it all. Loading the same archive again redoes only
//! the cheap parts.

use std::collections::HashMap;
use std::path::Path;

use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{CreateImageRequest, Image, UpdateImageRequest};
use serde::Deserialize;
use tokio::sync::mpsc;
use tonic::Code;

use super::archive::{read_archive, Archive};
use super::image::{Desc, Index, Manifest, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_MANIFEST};
use super::{Containerd, Lease};
use crate::executor::ExecError;
use crate::types::normalize_image;

const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const MT_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const MT_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const ANN_CONTAINERD_NAME: &str = "io.containerd.image.name";
const ANN_OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One entry of a `docker save` manifest.json.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

impl Containerd {
    pub(super) async fn load_archive(&self, path: &Path) -> Result<Vec<String>, ExecError> {
        let lease = self.lease().await?;
        let r = self.load_leased(path, &lease).await;
        self.end_lease(lease).await;
        r
    }

    async fn load_leased(&self, path: &Path, lease: &Lease) -> Result<Vec<String>, ExecError> {
        let (tx, mut rx) = mpsc::channel(8);
        let p = path.to_path_buf();
        let reader = tokio::task::spawn_blocking(move || read_archive(&p, &tx));
        let stored = self.store_items(&mut rx, lease).await;
        // Unblocks the reader if we stopped early.
        drop(rx);
        let read = reader
            .await
            .map_err(|e| ExecError::Other(format!("archive reader: {e}")))?;
        // Our own failure explains the reader's "cancelled"; report it first.
        let archive = stored?;
        read.map_err(ExecError::BadArchive)?;

        let mut names = if archive.meta.contains_key("index.json") {
            self.import_oci(&archive, lease).await?
        } else if archive.meta.contains_key("manifest.json") {
            self.import_docker(&archive, lease).await?
        } else {
            return Err(ExecError::BadArchive(
                "neither index.json nor manifest.json found: not an OCI layout or docker save archive"
                    .into(),
            ));
        };
        if names.is_empty() {
            return Err(ExecError::BadArchive(
                "no image in the archive has a name (io.containerd.image.name, \
                 org.opencontainers.image.ref.name or RepoTags)"
                    .into(),
            ));
        }
        names.dedup();
        Ok(names)
    }

    async fn import_oci(&self, archive: &Archive, lease: &Lease) -> Result<Vec<String>, ExecError> {
        let index: Index = serde_json::from_slice(&archive.meta["index.json"])
            .map_err(|e| ExecError::BadArchive(format!("index.json: {e}")))?;
        let mut names = Vec::new();
        for mut desc in index.manifests {
            let name = desc
                .annotations
                .get(ANN_CONTAINERD_NAME)
                .or_else(|| desc.annotations.get(ANN_OCI_REF_NAME))
                .cloned();
            let Some(name) = name else {
                tracing::warn!(digest = %desc.digest, "skipping an unnamed image in the archive");
                continue;
            };
            let name = normalize_image(&name)
                .map_err(|e| ExecError::BadArchive(format!("image name {name:?}: {e}")))?;
            if !self.content_exists(&desc.digest).await? {
                return Err(ExecError::BadArchive(format!(
                    "{name}: blob {} is not in the archive",
                    desc.digest
                )));
            }
            if desc.media_type.is_empty() {
                desc.media_type = self.sniff_media_type(&desc.digest).await?;
            }
            self.label_and_unpack(&desc, lease).await?;
            self.put_image(&name, &desc).await?;
            names.push(name);
        }
        Ok(names)
    }

    async fn import_docker(
        &self,
        archive: &Archive,
        lease: &Lease,
    ) -> Result<Vec<String>, ExecError> {
        let entries: Vec<DockerEntry> = serde_json::from_slice(&archive.meta["manifest.json"])
            .map_err(|e| ExecError::BadArchive(format!("manifest.json: {e}")))?;
        let blob = |path: &str| {
            archive.blobs.get(path).cloned().ok_or_else(|| {
                ExecError::BadArchive(format!("manifest.json names {path}, not in the archive"))
            })
        };
        let mut names = Vec::new();
        for entry in entries {
            let config = blob(&entry.config)?;
            let mut layers = Vec::new();
            for l in &entry.layers {
                let b = blob(l)?;
                layers.push(serde_json::json!({
                    "mediaType": if b.gzip { MT_DOCKER_LAYER_GZIP } else { MT_DOCKER_LAYER },
                    "digest": b.digest,
                    "size": b.size,
                }));
            }
            // docker save has no manifest blob: write the one a registry
            // would have served.
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": MT_DOCKER_MANIFEST,
                "config": {
                    "mediaType": MT_DOCKER_CONFIG,
                    "digest": config.digest,
                    "size": config.size,
                },
                "layers": layers,
            });
            let bytes =
                serde_json::to_vec(&manifest).map_err(|e| ExecError::Other(e.to_string()))?;
            let size = bytes.len() as i64;
            let desc = Desc {
                media_type: MT_DOCKER_MANIFEST.into(),
                digest: self.put_blob(bytes, lease).await?,
                size,
                ..Default::default()
            };
            let tags = entry.repo_tags.unwrap_or_default();
            if tags.is_empty() {
                tracing::warn!(config = %entry.config, "skipping an untagged image in the archive");
                continue;
            }
            self.label_and_unpack(&desc, lease).await?;
            for tag in tags {
                let name = normalize_image(&tag)
                    .map_err(|e| ExecError::BadArchive(format!("RepoTag {tag:?}: {e}")))?;
                self.put_image(&name, &desc).await?;
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Sets the GC labels from `target` down and unpacks this machine's
    /// manifest. An index with no manifest for this machine is kept (it is
    /// listed, and may serve other nodes later) but not unpacked.
    async fn label_and_unpack(&self, target: &Desc, lease: &Lease) -> Result<(), ExecError> {
        if target.is_index() {
            let index: Index = self.read_json_bad(&target.digest).await?;
            let refs = index
                .manifests
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    (
                        format!("containerd.io/gc.ref.content.m.{i}"),
                        m.digest.clone(),
                    )
                })
                .collect();
            self.set_labels(&target.digest, refs).await?;
            for m in &index.manifests {
                if !m.is_index() && self.content_exists(&m.digest).await? {
                    self.label_manifest(&m.digest).await?;
                }
            }
        } else {
            self.label_manifest(&target.digest).await?;
        }
        match self.resolve_target(target).await {
            Ok(resolved) => self.unpack(&resolved, lease).await,
            Err(e) if target.is_index() => {
                tracing::warn!(digest = %target.digest, error = %e, "image not unpacked here");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn label_manifest(&self, digest: &str) -> Result<(), ExecError> {
        let m: Manifest = self.read_json_bad(digest).await?;
        let mut labels = HashMap::from([(
            "containerd.io/gc.ref.content.config".to_string(),
            m.config.digest.clone(),
        )]);
        for (i, l) in m.layers.iter().enumerate() {
            labels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                l.digest.clone(),
            );
        }
        self.set_labels(digest, labels).await
    }

    /// A JSON blob of the archive; unparsable means a bad archive.
    async fn read_json_bad<T: serde::de::DeserializeOwned>(
        &self,
        digest: &str,
    ) -> Result<T, ExecError> {
        let bytes = self.read_blob(digest).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ExecError::BadArchive(format!("blob {digest}: {e}")))
    }

    /// The media type of a descriptor that lacks one, from the blob itself.
    async fn sniff_media_type(&self, digest: &str) -> Result<String, ExecError> {
        let v: serde_json::Value = self.read_json_bad(digest).await?;
        Ok(match v.get("mediaType").and_then(|m| m.as_str()) {
            Some(m) => m.to_string(),
            None if v.get("manifests").is_some() => MT_OCI_INDEX.into(),
            None => MT_OCI_MANIFEST.into(),
        })
    }

    /// Creates the image record, or points an existing one at `target`.
    pub(super) async fn put_image(&self, name: &str, target: &Desc) -> Result<(), ExecError> {
        let image = Image {
            name: name.to_string(),
            labels: HashMap::new(),
            target: Some(target.to_proto()),
            created_at: None,
            updated_at: None,
        };
        let mut images = ImagesClient::new(self.channel.clone());
        let r = images
            .create(self.req(CreateImageRequest {
                image: Some(image.clone()),
                source_date_epoch: None,
            }))
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => images
                .update(self.req(UpdateImageRequest {
                    image: Some(image),
                    update_mask: None,
                    source_date_epoch: None,
                }))
                .await
                .map(|_| ())
                .map_err(|s| self.err("update image", s)),
            Err(s) => Err(self.err("create image", s)),
        }
    }
}
