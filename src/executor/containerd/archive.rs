//! Streaming an image archive into containerd's content store.
//!
//! A blocking thread walks the tarball (gzip or not) with the `tar` crate
//! and sends its entries as small items over a bounded channel; the async
//! side writes each blob through the content service's `Write` stream
//! under the caller's lease. So nothing is unpacked to disk or held whole
//! in memory, and a blob containerd already has is skipped. Only the small
//! top-level JSON files (index.json, manifest.json) are kept in memory for
//! `load.rs` to interpret.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::{AbortRequest, WriteAction, WriteContentRequest};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::{random_hex, Containerd, Lease};
use crate::executor::ExecError;

/// Top-level files kept in memory rather than stored as blobs.
const META_FILES: &[&str] = &["index.json", "manifest.json", "oci-layout", "repositories"];
const MAX_META: u64 = 16 * 1024 * 1024;
/// Size of one content `Write` message.
const CHUNK: usize = 1 << 20;

/// What the reader thread tells the uploader.
pub(super) enum Item {
    Meta {
        path: String,
        data: Vec<u8>,
    },
    /// A symlink or hard link in the archive, to a path in it.
    Link {
        path: String,
        target: String,
    },
    BlobStart {
        path: String,
    },
    Chunk(Vec<u8>),
    BlobEnd {
        digest: String,
        size: i64,
        gzip: bool,
    },
}

/// A blob of the archive, now in the content store.
#[derive(Debug, Clone)]
pub(super) struct Blob {
    pub digest: String,
    pub size: i64,
    /// Starts with the gzip magic (docker-save layers may be compressed).
    pub gzip: bool,
}

/// The archive's JSON files and its blobs by path.
#[derive(Default)]
pub(super) struct Archive {
    pub meta: HashMap<String, Vec<u8>>,
    pub blobs: HashMap<String, Blob>,
}

/// Walks the tarball at `path` and sends its entries. Runs on a blocking
/// thread. An `Err` is a message for `ExecError::BadArchive`.
pub(super) fn read_archive(path: &Path, tx: &mpsc::Sender<Item>) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = BufReader::new(file);
    let head = buf
        .fill_buf()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let reader: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(buf))
    } else {
        Box::new(buf)
    };
    let send = |item| {
        tx.blocking_send(item)
            .map_err(|_| "import cancelled".to_string())
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("not a valid tar archive: {e}"))?;
        let raw = entry
            .path()
            .map_err(|e| format!("bad path in archive: {e}"))?
            .into_owned();
        let Some(path) = clean(&raw) else { continue };
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let Ok(Some(target)) = entry.link_name() else {
                continue;
            };
            // A symlink is relative to its directory; a hard link names an
            // archive path.
            let base = if kind.is_symlink() {
                raw.parent().map(Path::to_path_buf).unwrap_or_default()
            } else {
                PathBuf::new()
            };
            if let Some(target) = clean(&base.join(target)) {
                send(Item::Link { path, target })?;
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        if META_FILES.contains(&path.as_str()) {
            if entry.size() > MAX_META {
                return Err(format!("{path} is too large"));
            }
            let mut data = Vec::new();
            entry
                .read_to_end(&mut data)
                .map_err(|e| format!("reading {path}: {e}"))?;
            send(Item::Meta { path, data })?;
            continue;
        }
        // Legacy per-layer metadata of `docker save`: not content.
        if path.ends_with("/json") || path.ends_with("/VERSION") {
            continue;
        }
        send(Item::BlobStart { path: path.clone() })?;
        let mut hasher = Sha256::new();
        let mut size = 0i64;
        let mut gzip = None;
        loop {
            let mut chunk = vec![0u8; CHUNK];
            let n =
                read_full(&mut entry, &mut chunk).map_err(|e| format!("reading {path}: {e}"))?;
            if n == 0 {
                break;
            }
            chunk.truncate(n);
            gzip.get_or_insert(chunk.starts_with(&[0x1f, 0x8b]));
            hasher.update(&chunk);
            size += n as i64;
            send(Item::Chunk(chunk))?;
        }
        send(Item::BlobEnd {
            digest: format!("sha256:{}", hex::encode(hasher.finalize())),
            size,
            gzip: gzip.unwrap_or(false),
        })?;
    }
    Ok(())
}

/// An archive path without `./`, refusing `..` and absolute paths.
fn clean(p: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The digest an OCI layout names a blob by (`blobs/sha256/<hex>`).
fn digest_of_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    (!hex.contains('/')).then(|| format!("{alg}:{hex}"))
}

/// One content `Write` stream in progress.
pub(super) struct Upload {
    pub(super) tx: mpsc::Sender<WriteContentRequest>,
    pub(super) call: JoinHandle<Result<(), Status>>,
    pub(super) reference: String,
    pub(super) offset: i64,
}

impl Containerd {
    /// Receives the reader's items and stores every blob.
    pub(super) async fn store_items(
        &self,
        rx: &mut mpsc::Receiver<Item>,
        lease: &Lease,
    ) -> Result<Archive, ExecError> {
        let mut out = Archive::default();
        let mut links = Vec::new();
        // The blob being received: its path, the digest its name promises,
        // and the upload (None when containerd has it already).
        let mut current: Option<(String, Option<String>, Option<Upload>)> = None;
        while let Some(item) = rx.recv().await {
            match item {
                Item::Meta { path, data } => {
                    out.meta.insert(path, data);
                }
                Item::Link { path, target } => links.push((path, target)),
                Item::BlobStart { path } => {
                    let named = digest_of_path(&path);
                    let upload = match &named {
                        Some(d) if self.content_exists(d).await? => None,
                        _ => Some(self.begin_upload(lease)),
                    };
                    current = Some((path, named, upload));
                }
                Item::Chunk(data) => {
                    if let Some((_, _, Some(up))) = current.as_mut() {
                        up.write(data).await;
                    }
                }
                Item::BlobEnd { digest, size, gzip } => {
                    let Some((path, named, upload)) = current.take() else {
                        continue;
                    };
                    if named.as_ref().is_some_and(|n| *n != digest) {
                        if let Some(up) = upload {
                            self.abort_upload(up).await;
                        }
                        return Err(ExecError::BadArchive(format!(
                            "{path} does not match its digest (content is {digest})"
                        )));
                    }
                    if let Some(up) = upload {
                        self.commit_upload(up, &digest, size).await?;
                    }
                    out.blobs.insert(path, Blob { digest, size, gzip });
                }
            }
        }
        if let Some((_, _, Some(up))) = current.take() {
            // The reader stopped mid-blob: drop the partial write.
            self.abort_upload(up).await;
        }
        for (path, target) in links {
            if let Some(b) = out.blobs.get(&target).cloned() {
                out.blobs.insert(path, b);
            }
        }
        Ok(out)
    }

    /// Stores `data` as a blob unless containerd has it. Returns its digest.
    pub(super) async fn put_blob(&self, data: Vec<u8>, lease: &Lease) -> Result<String, ExecError> {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        if self.content_exists(&digest).await? {
            return Ok(digest);
        }
        let size = data.len() as i64;
        let mut up = self.begin_upload(lease);
        up.write(data).await;
        self.commit_upload(up, &digest, size).await?;
        Ok(digest)
    }

    fn begin_upload(&self, lease: &Lease) -> Upload {
        // The server answers every message; the spawned call drains those
        // answers so HTTP/2 flow control never stalls our writes.
        let (tx, rx) = mpsc::channel(4);
        let req = self.req_leased(ReceiverStream::new(rx), Some(lease));
        let mut client = ContentClient::new(self.channel.clone());
        let call = tokio::spawn(async move {
            let mut answers = client.write(req).await?.into_inner();
            while answers.message().await?.is_some() {}
            Ok(())
        });
        Upload {
            tx,
            call,
            reference: format!("shoal-load-{}", random_hex()),
            offset: 0,
        }
    }

    async fn commit_upload(&self, up: Upload, digest: &str, size: i64) -> Result<(), ExecError> {
        let commit = WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: up.reference.clone(),
            total: size,
            expected: digest.to_string(),
            offset: up.offset,
            ..Default::default()
        };
        let _ = up.tx.send(commit).await;
        drop(up.tx);
        match up.call.await {
            Ok(Ok(())) => Ok(()),
            // Someone stored the same content meanwhile.
            Ok(Err(s)) if s.code() == Code::AlreadyExists => Ok(()),
            Ok(Err(s)) => Err(self.err(&format!("write {digest}"), s)),
            Err(e) => Err(ExecError::Other(format!("write {digest}: {e}"))),
        }
    }

    async fn abort_upload(&self, up: Upload) {
        drop(up.tx);
        let _ = up.call.await;
        let _ = ContentClient::new(self.channel.clone())
            .abort(self.req(AbortRequest {
                r#ref: up.reference,
            }))
            .await;
    }
}

impl Upload {
    /// Sends one chunk. If containerd already ended the stream, its error
    /// surfaces at commit, so a failed send is not an error here.
    pub(super) async fn write(&mut self, data: Vec<u8>) {
        let len = data.len() as i64;
        let msg = WriteContentRequest {
            action: WriteAction::Write as i32,
            r#ref: self.reference.clone(),
            offset: self.offset,
            data,
            ..Default::default()
        };
        let _ = self.tx.send(msg).await;
        self.offset += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths_are_cleaned() {
        assert_eq!(
            clean(Path::new("./blobs/sha256/ab")).as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(clean(Path::new("abc/../x.json")).as_deref(), Some("x.json"));
        assert_eq!(clean(Path::new("/etc/passwd")), None);
        assert_eq!(clean(Path::new("..")), None);
        assert_eq!(
            digest_of_path("blobs/sha256/ab").as_deref(),
            Some("sha256:ab")
        );
        assert_eq!(digest_of_path("abc/layer.tar"), None);
    }
}
