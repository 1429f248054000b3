//! The disk that holds the node's images, for image garbage collection:
//! where containerd keeps content and snapshots (asked of containerd, as
//! its root is its own setting), and how full those filesystems are.

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::introspection_client::IntrospectionClient;
use containerd_client::services::v1::ListContainersRequest;
use containerd_client::services::v1::PluginsRequest;

use super::image::SNAPSHOTTER;
use super::Containerd;
use crate::executor::ExecError;
use crate::types::DiskUsage;

impl Containerd {
    /// The fuller of the filesystems that hold containerd's content store
    /// and shoal's snapshotter (usually one and the same).
    pub(super) async fn image_disk(&self) -> Result<DiskUsage, ExecError> {
        let roots = self.image_roots().await?;
        let mut fullest: Option<DiskUsage> = None;
        for root in roots {
            let st = nix::sys::statvfs::statvfs(root.as_str())
                .map_err(|e| ExecError::Other(format!("cannot read the disk of {root}: {e}")))?;
            let block = st.fragment_size() as u64;
            let total = st.blocks() as u64 * block;
            let used = (st.blocks() as u64).saturating_sub(st.blocks_free() as u64) * block;
            let d = DiskUsage {
                used_bytes: used,
                total_bytes: total,
            };
            if fullest.is_none_or(|f| d.percent() > f.percent()) {
                fullest = Some(d);
            }
        }
        fullest.ok_or_else(|| ExecError::Other("containerd names no content root".into()))
    }

    /// The `root` that containerd's content plugin and the snapshotter
    /// export (introspection): fixed for the life of a containerd, so
    /// asked once.
    async fn image_roots(&self) -> Result<Vec<String>, ExecError> {
        if let Some(r) = self.roots.get() {
            return Ok(r.clone());
        }
        let plugins = IntrospectionClient::new(self.channel.clone())
            .plugins(PluginsRequest {
                filters: vec![
                    "type==io.containerd.content.v1".into(),
                    format!("type==io.containerd.snapshotter.v1,id=={SNAPSHOTTER}"),
                ],
            })
            .await
            .map_err(|s| self.err("list plugins", s))?
            .into_inner()
            .plugins;
        let roots: Vec<String> = plugins
            .iter()
            .filter_map(|p| p.exports.get("root").cloned())
            .collect();
        if roots.is_empty() {
            return Err(ExecError::Other(
                "containerd did not say where it keeps its content".into(),
            ));
        }
        let _ = self.roots.set(roots.clone());
        Ok(roots)
    }

    /// The images containers of the namespace were made from, shoal's or
    /// not: an image any container uses is not garbage.
    pub(super) async fn container_images(&self) -> Result<Vec<String>, ExecError> {
        let list = ContainersClient::new(self.channel.clone())
            .list(self.req(ListContainersRequest { filters: vec![] }))
            .await
            .map_err(|s| self.err("list containers", s))?
            .into_inner()
            .containers;
        Ok(list.into_iter().map(|c| c.image).collect())
    }
}
