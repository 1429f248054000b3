//! Registry pulls into containerd 1.6, which has no transfer service: the
//! registry's blobs are streamed into the content store (never a whole
//! layer in memory), under one lease, with the GC labels that keep what
//! the image references, then unpacked like a loaded image.
//!
//! A blob's write has a fixed ref (`shoal-pull-<digest>`), so a pull that
//! was cut off (registry gone, daemon restarted) resumes where containerd's
//! ingest stopped, asking the registry for the rest with a Range. The
//! commit checks size and digest over every byte; a write that fails that
//! check is thrown away and fetched once more from the start.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{
    AbortRequest, GetImageRequest, ListContentRequest, ListImagesRequest, ReadContentRequest,
    WriteAction, WriteContentRequest,
};
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use super::archive::Upload;
use super::image::{Desc, Manifest, Resolved};
use super::{found, Containerd, Lease};
use crate::executor::{BlobPeers, ByteStream, ExecError, PullEvent, PullRequest, Pulled};
use crate::registry::{self, Document, ImagePlatform, Source};
use crate::types::{normalize_image, registry_host, repository, Task};

/// Chunks sent to containerd at most this large: the registry's chunks
/// are passed on as they come, split when bigger.
const CHUNK: usize = 256 * 1024;

impl Containerd {
    /// The image record a task runs, if the node has it: with a pinned
    /// digest, the record by that digest, else the task's tag if it points
    /// at that digest (an image loaded from a tarball), else any record of
    /// that digest; without one, the tag's record.
    pub(super) async fn task_image(&self, task: &Task) -> Result<Option<String>, ExecError> {
        let c = &task.spec.container;
        let tag = normalize_image(&c.image).map_err(|e| ExecError::Other(e.to_string()))?;
        let Some(digest) = &c.image_digest else {
            return Ok(self.image_target(&tag).await?.map(|_| tag));
        };
        let pinned = by_digest(&tag, digest);
        if self.image_target(&pinned).await?.is_some() {
            return Ok(Some(pinned));
        }
        if self.image_target(&tag).await?.as_deref() == Some(digest.as_str()) {
            return Ok(Some(tag));
        }
        self.any_image_of(digest).await
    }

    /// The target digest of the image record `name`, if it exists.
    async fn image_target(&self, name: &str) -> Result<Option<String>, ExecError> {
        let r = ImagesClient::new(self.channel.clone())
            .get(self.req(GetImageRequest {
                name: name.to_string(),
            }))
            .await;
        Ok(found(r)
            .map_err(|s| self.err("get image", s))?
            .and_then(|r| r.into_inner().image)
            .and_then(|i| i.target)
            .map(|t| t.digest))
    }

    /// Some image record whose target is `digest`.
    async fn any_image_of(&self, digest: &str) -> Result<Option<String>, ExecError> {
        let images = ImagesClient::new(self.channel.clone())
            .list(self.req(ListImagesRequest { filters: vec![] }))
            .await
            .map_err(|s| self.err("list images", s))?
            .into_inner()
            .images;
        Ok(images
            .into_iter()
            .find(|i| i.target.as_ref().is_some_and(|t| t.digest == digest))
            .map(|i| i.name))
    }

    /// Every committed blob of this namespace.
    pub(super) async fn list_blobs(&self) -> Result<Vec<String>, ExecError> {
        let mut stream = ContentClient::new(self.channel.clone())
            .list(self.req(ListContentRequest { filters: vec![] }))
            .await
            .map_err(|s| self.err("list content", s))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(m) = stream
            .message()
            .await
            .map_err(|s| self.err("list content", s))?
        {
            out.extend(m.info.into_iter().map(|i| i.digest));
        }
        Ok(out)
    }

    /// A committed blob from `offset` on, for a peer. Only committed
    /// content is found by `Info`: an ingest under way is not served.
    pub(super) async fn serve_blob(
        &self,
        digest: &str,
        offset: u64,
    ) -> Result<ByteStream, ExecError> {
        if !self.content_exists(digest).await? {
            return Err(ExecError::ImageNotFound(digest.to_string()));
        }
        let stream = ContentClient::new(self.channel.clone())
            .read(self.req(ReadContentRequest {
                digest: digest.to_string(),
                offset: offset as i64,
                size: 0,
            }))
            .await
            .map_err(|s| self.err(&format!("read {digest}"), s))?
            .into_inner();
        Ok(Box::pin(stream.map(|m| {
            m.map(|r| bytes::Bytes::from(r.data))
                .map_err(|s| s.message().to_string())
        })))
    }

    pub(super) async fn pull(
        &self,
        req: &PullRequest,
        progress: Option<mpsc::Sender<PullEvent>>,
    ) -> Result<Pulled, ExecError> {
        let image = normalize_image(&req.image).map_err(|e| ExecError::Pull(e.to_string()))?;
        let digest = req
            .digest
            .clone()
            .or_else(|| image.split_once('@').map(|(_, d)| d.to_string()));
        // Two tasks of one image share one pull: the second waits, then
        // finds every blob there and only re-reads the manifest.
        let key = format!("{image}|{}", digest.as_deref().unwrap_or(""));
        let lock = {
            let mut pulls = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
            pulls.retain(|_, l| Arc::strong_count(l) > 1);
            pulls.entry(key.clone()).or_default().clone()
        };
        let _turn = lock.lock().await;
        // A pinned digest that is here already (the pull that went first,
        // or a loaded tarball) needs no registry at all.
        if let Some(d) = &req.digest {
            let here = match self.image_target(&by_digest(&image, d)).await? {
                Some(_) => Some(by_digest(&image, d)),
                None => self.any_image_of(d).await?,
            };
            if let Some(name) = here {
                return Ok(Pulled {
                    name,
                    digest: d.clone(),
                    platform: String::new(),
                    fetched_bytes: 0,
                    peer_bytes: 0,
                });
            }
        }
        let (source, root) = Source::open(&image, digest.as_deref(), req.access.as_ref())
            .await
            .map_err(|e| ExecError::Pull(e.0))?;
        // One lease per image pull, kept when the pull fails: what it got
        // stays for the next try to resume (the lease expires in an hour).
        let id = format!(
            "shoal-pull-{}",
            &hex::encode(Sha256::digest(key.as_bytes()))[..16]
        );
        let lease = self.lease_named(id).await?;
        let p = Progress(progress);
        let r = self
            .pull_leased(&image, &source, &root, req, &lease, &p)
            .await;
        if r.is_ok() {
            self.end_lease(lease).await;
        }
        r
    }

    async fn pull_leased(
        &self,
        image: &str,
        source: &Source,
        root: &Document,
        req: &PullRequest,
        lease: &Lease,
        progress: &Progress,
    ) -> Result<Pulled, ExecError> {
        let node = req.platform.clone().unwrap_or_else(ImagePlatform::local);
        let pull_err = |e: registry::RegistryError| ExecError::Pull(e.0);
        let source_label = HashMap::from([(
            format!("containerd.io/distribution.source.{}", registry_host(image)),
            repository(image).to_string(),
        )]);
        let root_desc = Desc {
            media_type: root.media_type.clone(),
            digest: root.digest.clone(),
            size: root.bytes.len() as i64,
            ..Default::default()
        };

        // The manifest for this node.
        let (manifest_doc, index_children) = if root.is_index() {
            let entries = registry::platforms_of_index(&root.bytes).map_err(pull_err)?;
            let Some(entry) = registry::pick(&entries, &node) else {
                let have: Vec<String> = entries.iter().map(|e| e.platform.to_string()).collect();
                return Err(ExecError::Pull(format!(
                    "image {image} has no {node} (it has: {})",
                    have.join(", ")
                )));
            };
            let m = source.manifest(&entry.digest).await.map_err(pull_err)?;
            let children: Vec<String> = index_digests(&root.bytes);
            (m, Some(children))
        } else {
            (root.clone(), None)
        };
        let manifest: Manifest = serde_json::from_slice(&manifest_doc.bytes)
            .map_err(|e| ExecError::Pull(format!("image {image}: unreadable manifest: {e}")))?;

        // The config says what the image runs on: a single-arch image of
        // another arch is refused here, before it is run.
        let peers = req.peers.as_ref();
        let (mut fetched, mut from_peers) = self
            .fetch_blob(
                source,
                peers,
                &manifest.config,
                source_label.clone(),
                lease,
                progress,
            )
            .await?;
        let config_bytes = self.read_blob(&manifest.config.digest).await?;
        let platform = registry::manifest_platform(&config_bytes).map_err(pull_err)?;
        if !platform.runs_on(&node) {
            return Err(ExecError::Pull(format!(
                "image {image} is {platform} and cannot run on {node}"
            )));
        }
        let layers: Vec<(String, u64)> = manifest
            .layers
            .iter()
            .map(|l| (l.digest.clone(), l.size.max(0) as u64))
            .collect();
        progress.send(PullEvent::Resolved {
            digest: root.digest.clone(),
            platform: platform.to_string(),
            layers,
        });

        // Children before parents, each committed with its labels, so GC
        // never sees a parent that points at nothing it keeps.
        for layer in &manifest.layers {
            let (r, p) = self
                .fetch_blob(source, peers, layer, source_label.clone(), lease, progress)
                .await?;
            fetched += r;
            from_peers += p;
        }
        let mut manifest_labels = source_label.clone();
        manifest_labels.insert(
            "containerd.io/gc.ref.content.config".into(),
            manifest.config.digest.clone(),
        );
        for (i, l) in manifest.layers.iter().enumerate() {
            manifest_labels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                l.digest.clone(),
            );
        }
        let manifest_desc = Desc {
            media_type: manifest_doc.media_type.clone(),
            digest: manifest_doc.digest.clone(),
            size: manifest_doc.bytes.len() as i64,
            ..Default::default()
        };
        self.put_document(&manifest_desc, &manifest_doc.bytes, manifest_labels, lease)
            .await?;
        if let Some(children) = index_children {
            let mut labels = source_label.clone();
            for (i, d) in children.into_iter().enumerate() {
                labels.insert(format!("containerd.io/gc.ref.content.m.{i}"), d);
            }
            self.put_document(&root_desc, &root.bytes, labels, lease)
                .await?;
        }

        progress.send(PullEvent::Unpacking);
        let resolved: Resolved = self.resolve_target(&manifest_desc).await?;
        self.unpack(&resolved, lease).await?;

        let name = match &req.digest {
            Some(d) => by_digest(image, d),
            None => image.to_string(),
        };
        self.put_image(&name, &root_desc).await?;
        Ok(Pulled {
            name,
            digest: root.digest.clone(),
            platform: platform.to_string(),
            fetched_bytes: fetched,
            peer_bytes: from_peers,
        })
    }

    /// Stores a small document (config, manifest, index) with its labels,
    /// or labels the copy containerd has.
    async fn put_document(
        &self,
        desc: &Desc,
        bytes: &[u8],
        labels: HashMap<String, String>,
        lease: &Lease,
    ) -> Result<(), ExecError> {
        let Some(mut w) = self.open_write(&desc.digest, desc.size, lease).await? else {
            return self.set_labels(&desc.digest, labels).await;
        };
        // Written whole from offset 0, which drops anything left before.
        w.offset = 0;
        for chunk in bytes.chunks(CHUNK) {
            w.write(chunk.to_vec()).await;
        }
        self.commit_write(w, &desc.digest, desc.size, labels).await
    }

    /// Streams one blob into the content store: from peers that hold it
    /// first, then from the registry, each one carrying on at the offset
    /// the last one reached (and an earlier, interrupted pull left).
    /// Returns the bytes that came from (registry, peers).
    async fn fetch_blob(
        &self,
        source: &Source,
        peers: Option<&Arc<dyn BlobPeers>>,
        desc: &Desc,
        labels: HashMap<String, String>,
        lease: &Lease,
        progress: &Progress,
    ) -> Result<(u64, u64), ExecError> {
        let total = desc.size.max(0) as u64;
        let digest = &desc.digest;
        let report = |done: u64, cached: bool| {
            progress.send(PullEvent::Blob {
                digest: digest.clone(),
                done,
                total,
                cached,
            })
        };
        // Opening the write, under the pull's lease, is also how a blob
        // that is here already is found: containerd answers AlreadyExists
        // and adds it to the lease, so GC cannot take it before the image
        // record refers to it (an Info first would leave that window).
        let mut opened = self.open_write(digest, desc.size, lease).await?;
        if opened.is_none() {
            report(total, true);
            self.set_labels(digest, labels).await?;
            return Ok((0, 0));
        }
        let mut holders = match peers {
            Some(p) => wait_for_holders(p.as_ref(), digest, progress).await,
            None => Vec::new(),
        };
        let mut last_err = None;
        for attempt in 0..2 {
            let next = match opened.take() {
                Some(w) => Some(w),
                None => self.open_write(digest, desc.size, lease).await?,
            };
            let Some(mut w) = next else {
                self.set_labels(digest, labels).await?;
                return Ok((0, 0));
            };
            if attempt > 0 {
                // The first attempt's bytes did not add up (a peer or a
                // registry sent something else): start over, registry only.
                w.offset = 0;
                holders.clear();
            }
            let (mut from_registry, mut from_peers) = (0u64, 0u64);
            for (node, addr) in &holders {
                if w.offset as u64 >= total {
                    break;
                }
                let Some(p) = peers else { break };
                match p.fetch(node, addr, digest, w.offset as u64).await {
                    Ok(stream) => match copy(&mut w, stream, total, &report).await {
                        Ok(n) => from_peers += n,
                        Err((n, e)) => {
                            from_peers += n;
                            tracing::info!(%digest, peer = %addr, error = %e, "a peer stopped sending a blob; trying the next source");
                        }
                    },
                    Err(e) => {
                        tracing::info!(%digest, peer = %addr, error = %e, "a peer cannot send a blob")
                    }
                }
            }
            if (w.offset as u64) < total {
                let stream = source
                    .blob(digest, w.offset as u64)
                    .await
                    .map_err(|e| ExecError::Pull(e.0))?;
                if stream.offset == 0 {
                    // The registry sends it all (no Range support): rewrite.
                    w.offset = 0;
                }
                let bytes = stream.stream.map(|c| c.map_err(|e| e.to_string())).boxed();
                // While this node fetches from the registry, the others
                // that need the blob wait for it: keep its claim alive.
                let copying = copy(&mut w, bytes, total, &report);
                let copied = match peers {
                    Some(p) => {
                        tokio::pin!(copying);
                        let mut tick = tokio::time::interval(CLAIM_RENEW);
                        loop {
                            tokio::select! {
                                r = &mut copying => break r,
                                _ = tick.tick() => p.fetching(digest).await,
                            }
                        }
                    }
                    None => copying.await,
                };
                match copied {
                    Ok(n) => from_registry += n,
                    // The bytes that arrived stay in containerd's ingest:
                    // the next pull carries on from there.
                    Err((_, e)) => {
                        return Err(ExecError::Pull(format!(
                            "registry {}: blob {digest} cut off after {} bytes: {e}",
                            source.addr, w.offset
                        )))
                    }
                }
            }
            match self
                .commit_write(w, digest, desc.size, labels.clone())
                .await
            {
                Ok(()) => {
                    if let Some(p) = peers {
                        p.have(digest).await;
                    }
                    return Ok((from_registry, from_peers));
                }
                Err(ExecError::Pull(m)) => {
                    tracing::warn!(%digest, error = %m, "a blob did not match its digest; fetching it again from the registry");
                    self.abort_write(digest).await;
                    last_err = Some(m);
                }
                Err(e) => return Err(e),
            }
        }
        Err(ExecError::Pull(format!(
            "registry {}: {}",
            source.addr,
            last_err.unwrap_or_default()
        )))
    }

    /// Opens containerd's ingest for `digest` and learns how much of it an
    /// earlier write left. None: containerd has the blob already (stored
    /// for another namespace, which it shares by default).
    async fn open_write(
        &self,
        digest: &str,
        size: i64,
        lease: &Lease,
    ) -> Result<Option<Upload>, ExecError> {
        let reference = format!("shoal-pull-{digest}");
        let (tx, rx) = mpsc::channel(4);
        let stat = WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: reference.clone(),
            total: size,
            expected: digest.to_string(),
            ..Default::default()
        };
        let _ = tx.send(stat).await;
        let req = self.req_leased(ReceiverStream::new(rx), Some(lease));
        let answers = ContentClient::new(self.channel.clone()).write(req).await;
        let mut answers = match answers {
            Ok(a) => a.into_inner(),
            Err(s) if s.code() == Code::AlreadyExists => return Ok(None),
            Err(s) => return Err(self.write_err(digest, s)),
        };
        let first = match answers.message().await {
            Ok(Some(m)) => m,
            Ok(None) => {
                return Err(ExecError::Other(format!(
                    "containerd write {digest}: no answer"
                )))
            }
            Err(s) if s.code() == Code::AlreadyExists => return Ok(None),
            Err(s) => return Err(self.write_err(digest, s)),
        };
        // Drain the answers to the writes so flow control never stalls us;
        // an error ends the stream and shows at commit.
        let call = tokio::spawn(async move {
            while answers.message().await?.is_some() {}
            Ok(())
        });
        Ok(Some(Upload {
            tx,
            call,
            reference,
            offset: first.offset,
        }))
    }

    async fn commit_write(
        &self,
        w: Upload,
        digest: &str,
        size: i64,
        labels: HashMap<String, String>,
    ) -> Result<(), ExecError> {
        let commit = WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: w.reference.clone(),
            total: size,
            expected: digest.to_string(),
            offset: w.offset,
            labels,
            ..Default::default()
        };
        let _ = w.tx.send(commit).await;
        drop(w.tx);
        match w.call.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(s)) if s.code() == Code::AlreadyExists => Ok(()),
            // Wrong size or digest: what was fetched is not the blob.
            Ok(Err(s)) if matches!(s.code(), Code::FailedPrecondition | Code::InvalidArgument) => {
                Err(ExecError::Pull(format!(
                    "blob {digest} does not match its digest: {}",
                    s.message()
                )))
            }
            Ok(Err(s)) => Err(self.write_err(digest, s)),
            Err(e) => Err(ExecError::Other(format!("write {digest}: {e}"))),
        }
    }

    async fn abort_write(&self, digest: &str) {
        let _ = ContentClient::new(self.channel.clone())
            .abort(self.req(AbortRequest {
                r#ref: format!("shoal-pull-{digest}"),
            }))
            .await;
    }

    /// containerd says a ref another writer holds is "unavailable"; that
    /// is not containerd going away.
    fn write_err(&self, digest: &str, s: tonic::Status) -> ExecError {
        if s.code() == Code::Unavailable && s.message().contains("locked") {
            return ExecError::Other(format!(
                "containerd write {digest}: {} (another pull is writing it)",
                s.message()
            ));
        }
        self.err(&format!("write {digest}"), s)
    }
}

/// How often a node fetching a blob from the registry tells the managers
/// it still is (their claim lasts 30 s).
const CLAIM_RENEW: Duration = Duration::from_secs(10);
/// The longest a node waits for another's registry fetch of a blob.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// The nodes to fetch `digest` from: asked of the managers, and asked
/// again while another node fetches it from the registry (so the uplink
/// carries it once). Empty: fetch it from the registry.
async fn wait_for_holders(
    peers: &dyn BlobPeers,
    digest: &str,
    progress: &Progress,
) -> Vec<(String, String)> {
    let start = std::time::Instant::now();
    let mut told = false;
    loop {
        let s = peers.sources(digest).await;
        match s.wait {
            Some(wait) if s.nodes.is_empty() && start.elapsed() < MAX_WAIT => {
                if !told {
                    told = true;
                    progress.send(PullEvent::Waiting {
                        digest: digest.to_string(),
                    });
                }
                tokio::time::sleep(wait).await;
            }
            _ => return s.nodes,
        }
    }
}

/// Writes `stream` into `w` until it ends or `total` bytes are written.
/// Returns the bytes copied, or them and why the stream broke.
async fn copy(
    w: &mut Upload,
    mut stream: ByteStream,
    total: u64,
    report: &impl Fn(u64, bool),
) -> Result<u64, (u64, String)> {
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| (n, e))?;
        n += chunk.len() as u64;
        for part in chunk.chunks(CHUNK) {
            w.write(part.to_vec()).await;
        }
        report(w.offset as u64, false);
        if w.offset as u64 >= total {
            break;
        }
    }
    Ok(n)
}

/// Progress events, dropped rather than waited for.
struct Progress(Option<mpsc::Sender<PullEvent>>);

impl Progress {
    fn send(&self, e: PullEvent) {
        if let Some(tx) = &self.0 {
            let _ = tx.try_send(e);
        }
    }
}

/// `host/repo@digest` for a normalized reference and a digest.
pub(super) fn by_digest(normalized: &str, digest: &str) -> String {
    format!(
        "{}/{}@{digest}",
        registry_host(normalized),
        repository(normalized)
    )
}

/// The digests of an index's manifests, in order (for GC labels).
fn index_digests(bytes: &[u8]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct I {
        #[serde(default)]
        manifests: Vec<D>,
    }
    #[derive(serde::Deserialize)]
    struct D {
        digest: String,
    }
    serde_json::from_slice::<I>(bytes)
        .map(|i| i.manifests.into_iter().map(|d| d.digest).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_names_drop_the_tag() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            by_digest("127.0.0.1:5000/team/web:1.4", &d),
            format!("127.0.0.1:5000/team/web@{d}")
        );
    }
}
