//! The cluster's nodes as a source of image blobs (LAN sharing, the node's
//! half): this node tells the leader which blobs it holds, asks it which
//! nodes hold a blob it needs, and reads the blob from one of them over
//! the node port's mTLS. Nothing here is trusted: the pull checks every
//! byte against the digest, and falls back to the next source.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use tracing::{debug, warn};

use crate::executor::{BlobPeers, ByteStream, ImageStore, PeerSources};
use crate::rpc::compat::{DispatcherClient, NodeAgentClient};
use crate::rpc::messages::{BlobQuery, BlobRead, BlobReport};
use crate::rpc::transport::connect;

/// How long the leader may take to name a blob's holders.
const ASK_WITHIN: Duration = Duration::from_secs(3);
/// How long a peer may go silent in the middle of a blob.
const STALL: Duration = Duration::from_secs(15);

pub struct Peers {
    tls: Arc<rustls::ClientConfig>,
    images: Arc<dyn ImageStore>,
    /// The session's client to the leader, while a session is open.
    /// std Mutex: never held across .await.
    leader: Mutex<Option<DispatcherClient>>,
}

impl Peers {
    pub fn new(tls: Arc<rustls::ClientConfig>, images: Arc<dyn ImageStore>) -> Arc<Peers> {
        Arc::new(Peers {
            tls,
            images,
            leader: Mutex::new(None),
        })
    }

    fn leader(&self) -> Option<DispatcherClient> {
        self.leader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A session with the leader opened: it learns every blob held here.
    pub fn opened(self: &Arc<Self>, client: DispatcherClient) {
        *self.leader.lock().unwrap_or_else(|e| e.into_inner()) = Some(client);
        self.report();
    }

    /// The session ended: no leader to ask until the next one.
    pub fn closed(&self) {
        *self.leader.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Sends the whole set of blobs held here (after a session opened, or
    /// the images changed), in the background.
    pub fn report(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let Some(mut client) = me.leader() else {
                return;
            };
            let blobs = match me.images.blobs().await {
                Ok(b) => b,
                Err(e) => return warn!(error = %e, "cannot list this node's blobs"),
            };
            let report = BlobReport {
                full: true,
                added: blobs,
                removed: Vec::new(),
            };
            if let Err(e) = client.report_blobs(report).await {
                debug!(error = %e.message(), "the leader did not take this node's blobs");
            }
        });
    }
}

impl BlobPeers for Peers {
    fn sources<'a>(&'a self, digest: &'a str) -> BoxFuture<'a, PeerSources> {
        Box::pin(async move {
            let Some(mut client) = self.leader() else {
                return PeerSources::default();
            };
            let ask = client.blob_sources(BlobQuery {
                digest: digest.to_string(),
                fetching: false,
            });
            match tokio::time::timeout(ASK_WITHIN, ask).await {
                Ok(Ok(r)) => {
                    let r = r.into_inner();
                    PeerSources {
                        nodes: r.nodes,
                        wait: (r.wait_ms > 0).then(|| Duration::from_millis(r.wait_ms.min(10_000))),
                    }
                }
                // No leader to ask (or an older one): the registry.
                _ => PeerSources::default(),
            }
        })
    }

    fn fetching<'a>(&'a self, digest: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(mut client) = self.leader() {
                let ask = client.blob_sources(BlobQuery {
                    digest: digest.to_string(),
                    fetching: true,
                });
                let _ = tokio::time::timeout(ASK_WITHIN, ask).await;
            }
        })
    }

    fn have<'a>(&'a self, digest: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(mut client) = self.leader() {
                let report = BlobReport {
                    full: false,
                    added: vec![digest.to_string()],
                    removed: Vec::new(),
                };
                let _ = tokio::time::timeout(ASK_WITHIN, client.report_blobs(report)).await;
            }
        })
    }

    fn fetch<'a>(
        &'a self,
        node_id: &'a str,
        addr: &'a str,
        digest: &'a str,
        offset: u64,
    ) -> BoxFuture<'a, Result<ByteStream, String>> {
        Box::pin(async move {
            // The peer's certificate must be that node's.
            let channel = connect(addr, self.tls.clone(), node_id)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let read = BlobRead {
                digest: digest.to_string(),
                offset,
            };
            let stream = NodeAgentClient::new(channel)
                .read_blob(read)
                .await
                .map_err(|s| s.message().to_string())?
                .into_inner();
            let stream = tokio_stream::StreamExt::timeout(stream, STALL).map(|r| match r {
                Ok(Ok(chunk)) => Ok(chunk.data),
                Ok(Err(s)) => Err(s.message().to_string()),
                Err(_) => Err(format!("no data for {STALL:?}")),
            });
            Ok(Box::pin(stream) as ByteStream)
        })
    }
}
