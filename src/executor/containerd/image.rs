//! Images in containerd: resolve a name to this machine's manifest and
//! config, unpack its layers into overlayfs snapshots keyed by chain id,
//! list and delete image records, and set the GC labels that keep content
//! and snapshots alive for as long as an image references them.
//!
//! The JSON documents (index, manifest, config) are read from the content
//! store and parsed with serde; only the fields shoal uses are declared.

use std::collections::HashMap;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    ApplyRequest, DeleteImageRequest, GetImageRequest, Info, InfoRequest, ListImagesRequest,
    ReadContentRequest, UpdateRequest,
};
use containerd_client::types::Descriptor;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::spec::ImageConfigFile;
use super::{found, random_hex, Containerd, Lease};
use crate::executor::ExecError;
use crate::types::{normalize_arch, normalize_image, ImageInfo};

/// The snapshotter shoal unpacks into and runs containers from.
pub(super) const SNAPSHOTTER: &str = "overlayfs";

pub(super) const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(super) const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(super) const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(super) const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Largest index, manifest or config we read into memory.
const MAX_JSON: usize = 16 * 1024 * 1024;

/// An OCI descriptor as it appears in JSON documents.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Desc {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformJson>,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct PlatformJson {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl Desc {
    pub fn to_proto(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            annotations: self.annotations.clone(),
        }
    }

    pub fn from_proto(d: &Descriptor) -> Desc {
        Desc {
            media_type: d.media_type.clone(),
            digest: d.digest.clone(),
            size: d.size,
            platform: None,
            annotations: d.annotations.clone(),
        }
    }

    pub fn is_index(&self) -> bool {
        self.media_type == MT_OCI_INDEX || self.media_type == MT_DOCKER_LIST
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct Index {
    #[serde(default)]
    pub manifests: Vec<Desc>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Manifest {
    pub config: Desc,
    #[serde(default)]
    pub layers: Vec<Desc>,
}

/// An image resolved for this machine: what `prepare` needs.
pub(super) struct Resolved {
    pub manifest: Desc,
    pub config_desc: Desc,
    pub config: ImageConfigFile,
    pub layers: Vec<Desc>,
    /// Chain id of each layer; the last one is the image's rootfs.
    pub chain_ids: Vec<String>,
}

impl Resolved {
    /// The snapshot to prepare containers on ("" for an image with no layers).
    pub fn top_chain_id(&self) -> &str {
        self.chain_ids.last().map(String::as_str).unwrap_or("")
    }
}

/// Chain ids as the OCI spec defines them: c0 = d0, cN = sha256(cN-1 + " " + dN).
pub(super) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{prev} {d}").as_bytes()))
            ),
        };
        out.push(next);
    }
    out
}

impl Containerd {
    /// Reads a whole blob (JSON documents only: capped at `MAX_JSON`).
    pub(super) async fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ExecError> {
        let req = ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        };
        let mut stream = ContentClient::new(self.channel.clone())
            .read(self.req(req))
            .await
            .map_err(|s| self.err(&format!("read {digest}"), s))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(m) = stream
            .message()
            .await
            .map_err(|s| self.err(&format!("read {digest}"), s))?
        {
            out.extend_from_slice(&m.data);
            if out.len() > MAX_JSON {
                return Err(ExecError::Other(format!("blob {digest} is too large")));
            }
        }
        Ok(out)
    }

    async fn read_json<T: serde::de::DeserializeOwned>(&self, d: &str) -> Result<T, ExecError> {
        let bytes = self.read_blob(d).await?;
        serde_json::from_slice(&bytes).map_err(|e| ExecError::Other(format!("parse {d}: {e}")))
    }

    pub(super) async fn content_exists(&self, digest: &str) -> Result<bool, ExecError> {
        let r = ContentClient::new(self.channel.clone())
            .info(self.req(InfoRequest {
                digest: digest.to_string(),
            }))
            .await;
        Ok(found(r).map_err(|s| self.err("content info", s))?.is_some())
    }

    /// Adds labels to a blob, keeping the labels it has.
    pub(super) async fn set_labels(
        &self,
        digest: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), ExecError> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        let req = UpdateRequest {
            info: Some(Info {
                digest: digest.to_string(),
                labels,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
        };
        ContentClient::new(self.channel.clone())
            .update(self.req(req))
            .await
            .map_err(|s| self.err(&format!("label {digest}"), s))?;
        Ok(())
    }

    /// Looks an image up by (normalized) name and resolves it for here.
    pub(super) async fn resolve_image(&self, name: &str) -> Result<Resolved, ExecError> {
        let r = ImagesClient::new(self.channel.clone())
            .get(self.req(GetImageRequest {
                name: name.to_string(),
            }))
            .await;
        let image = found(r)
            .map_err(|s| self.err("get image", s))?
            .and_then(|r| r.into_inner().image)
            .ok_or_else(|| ExecError::ImageNotFound(name.to_string()))?;
        let target = image
            .target
            .as_ref()
            .map(Desc::from_proto)
            .ok_or_else(|| ExecError::Other(format!("image {name} has no target")))?;
        self.resolve_target(&target).await.map_err(|e| match e {
            ExecError::Other(m) => {
                ExecError::Other(format!("image {name} on node {}: {m}", self.cfg.node_name))
            }
            e => e,
        })
    }

    /// From an image's target (index or manifest) to this machine's
    /// manifest, config and chain ids.
    pub(super) async fn resolve_target(&self, target: &Desc) -> Result<Resolved, ExecError> {
        let manifest_desc = if target.is_index() {
            let bytes = self.read_blob(&target.digest).await?;
            let entries =
                crate::registry::platforms_of_index(&bytes).map_err(|e| ExecError::Other(e.0))?;
            let local = crate::registry::ImagePlatform::local();
            let entry = crate::registry::pick(&entries, &local).ok_or_else(|| {
                let have: Vec<String> = entries.iter().map(|e| e.platform.to_string()).collect();
                ExecError::Other(format!(
                    "no variant for {local} (the image has: {})",
                    have.join(", ")
                ))
            })?;
            Desc {
                media_type: entry.media_type.clone(),
                digest: entry.digest.clone(),
                size: entry.size,
                ..Default::default()
            }
        } else if target.media_type == MT_OCI_MANIFEST || target.media_type == MT_DOCKER_MANIFEST {
            target.clone()
        } else {
            return Err(ExecError::Other(format!(
                "unsupported media type {:?}",
                target.media_type
            )));
        };
        let manifest: Manifest = self.read_json(&manifest_desc.digest).await?;
        let config: ImageConfigFile = self.read_json(&manifest.config.digest).await?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ExecError::Other(format!(
                "manifest {} has {} layers but its config {} diff ids",
                manifest_desc.digest,
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        Ok(Resolved {
            chain_ids: chain_ids(&config.rootfs.diff_ids),
            manifest: manifest_desc,
            config_desc: manifest.config,
            layers: manifest.layers,
            config,
        })
    }

    pub(super) async fn snapshot_exists(&self, key: &str) -> Result<bool, ExecError> {
        let r = SnapshotsClient::new(self.channel.clone())
            .stat(self.req(StatSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.to_string(),
            }))
            .await;
        Ok(found(r)
            .map_err(|s| self.err("stat snapshot", s))?
            .is_some())
    }

    pub(super) async fn remove_snapshot(&self, key: &str) -> Result<(), ExecError> {
        let r = SnapshotsClient::new(self.channel.clone())
            .remove(self.req(RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.to_string(),
            }))
            .await;
        found(r).map_err(|s| self.err("remove snapshot", s))?;
        Ok(())
    }

    /// Makes sure every layer is a committed snapshot named by its chain id
    /// (Prepare on the parent, Diff.Apply, Commit), then labels the config
    /// so GC keeps the snapshots while the image exists. Idempotent.
    pub(super) async fn unpack(&self, r: &Resolved, lease: &Lease) -> Result<(), ExecError> {
        let mut snaps = SnapshotsClient::new(self.channel.clone());
        for (i, layer) in r.layers.iter().enumerate() {
            let chain = &r.chain_ids[i];
            if self.snapshot_exists(chain).await? {
                continue;
            }
            let parent = if i == 0 { "" } else { &r.chain_ids[i - 1] };
            let key = format!("shoal-extract-{}-{chain}", random_hex());
            let mounts = snaps
                .prepare(self.req_leased(
                    PrepareSnapshotRequest {
                        snapshotter: SNAPSHOTTER.into(),
                        key: key.clone(),
                        parent: parent.to_string(),
                        labels: HashMap::new(),
                    },
                    Some(lease),
                ))
                .await
                .map_err(|s| self.err("prepare snapshot", s))?
                .into_inner()
                .mounts;
            let result = self
                .apply_and_commit(
                    &key,
                    chain,
                    layer,
                    &r.config.rootfs.diff_ids[i],
                    mounts,
                    lease,
                )
                .await;
            if result.is_err() {
                let _ = self.remove_snapshot(&key).await;
            }
            result?;
        }
        let mut config_labels = HashMap::new();
        if !r.chain_ids.is_empty() {
            config_labels.insert(
                format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"),
                r.top_chain_id().to_string(),
            );
        }
        self.set_labels(&r.config_desc.digest, config_labels)
            .await?;
        for (layer, diff_id) in r.layers.iter().zip(&r.config.rootfs.diff_ids) {
            let l = HashMap::from([("containerd.io/uncompressed".to_string(), diff_id.clone())]);
            self.set_labels(&layer.digest, l).await?;
        }
        Ok(())
    }

    async fn apply_and_commit(
        &self,
        key: &str,
        chain: &str,
        layer: &Desc,
        diff_id: &str,
        mounts: Vec<containerd_client::types::Mount>,
        lease: &Lease,
    ) -> Result<(), ExecError> {
        let applied = DiffClient::new(self.channel.clone())
            .apply(self.req_leased(
                ApplyRequest {
                    diff: Some(layer.to_proto()),
                    mounts,
                    payloads: HashMap::new(),
                    sync_fs: false,
                },
                Some(lease),
            ))
            .await
            .map_err(|s| self.err(&format!("apply layer {}", layer.digest), s))?
            .into_inner()
            .applied
            .unwrap_or_default();
        if applied.digest != diff_id {
            return Err(ExecError::Other(format!(
                "layer {} unpacks to {} but the image config says {diff_id}",
                layer.digest, applied.digest
            )));
        }
        let r = SnapshotsClient::new(self.channel.clone())
            .commit(self.req_leased(
                CommitSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    name: chain.to_string(),
                    key: key.to_string(),
                    labels: HashMap::new(),
                },
                Some(lease),
            ))
            .await;
        match r {
            Ok(_) => Ok(()),
            // Someone committed the same layer meanwhile: theirs is as good.
            Err(s) if s.code() == tonic::Code::AlreadyExists => {
                let _ = self.remove_snapshot(key).await;
                Ok(())
            }
            Err(s) => Err(self.err("commit snapshot", s)),
        }
    }

    pub(super) async fn list_images(&self) -> Result<Vec<ImageInfo>, ExecError> {
        let images = ImagesClient::new(self.channel.clone())
            .list(self.req(ListImagesRequest { filters: vec![] }))
            .await
            .map_err(|s| self.err("list images", s))?
            .into_inner()
            .images;
        let mut out = Vec::with_capacity(images.len());
        for image in images {
            let Some(target) = image.target.as_ref().map(Desc::from_proto) else {
                continue;
            };
            let mut info = ImageInfo {
                name: image.name.clone(),
                digest: target.digest.clone(),
                platforms: vec![],
                size_bytes: 0,
            };
            // Best effort: an image whose content is partly missing is
            // still listed, with what could be read.
            if target.is_index() {
                if let Ok(index) = self.read_json::<Index>(&target.digest).await {
                    info.platforms = platforms_of(&index).collect();
                }
            }
            if let Ok(r) = self.resolve_target(&target).await {
                if info.platforms.is_empty() {
                    info.platforms = vec![format!(
                        "{}/{}",
                        r.config.os,
                        normalize_arch(&r.config.architecture)
                    )];
                }
                let layers: i64 = r.layers.iter().map(|l| l.size).sum();
                info.size_bytes = (r.manifest.size + r.config_desc.size + layers).max(0) as u64;
            } else if info.platforms.is_empty() && !target.is_index() {
                if let Ok(m) = self.read_json::<Manifest>(&target.digest).await {
                    if let Ok(c) = self.read_json::<ImageConfigFile>(&m.config.digest).await {
                        info.platforms =
                            vec![format!("{}/{}", c.os, normalize_arch(&c.architecture))];
                    }
                }
            }
            out.push(info);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deletes the image record; containerd's GC then removes the content
    /// and snapshots no other image uses.
    pub(super) async fn delete_image(&self, name: &str) -> Result<(), ExecError> {
        let name = normalize_image(name).map_err(|e| ExecError::Other(e.to_string()))?;
        let r = ImagesClient::new(self.channel.clone())
            .delete(self.req(DeleteImageRequest {
                name,
                sync: true,
                target: None,
            }))
            .await;
        found(r).map_err(|s| self.err("delete image", s))?;
        Ok(())
    }
}

/// `os/arch` of each runnable manifest of an index (attestation manifests,
/// `unknown/unknown`, are skipped).
fn platforms_of(index: &Index) -> impl Iterator<Item = String> + '_ {
    index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .filter(|p| p.os != "unknown")
        .map(|p| format!("{}/{}", p.os, normalize_arch(&p.architecture)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let d = |s: &str| format!("sha256:{s}");
        let ids = chain_ids(&[d("a"), d("b")]);
        assert_eq!(ids[0], d("a"));
        let expect = hex::encode(Sha256::digest(b"sha256:a sha256:b"));
        assert_eq!(ids[1], d(&expect));
        assert!(chain_ids(&[]).is_empty());
    }
}
