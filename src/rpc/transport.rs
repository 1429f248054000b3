//! mTLS transport for tonic, in both directions. tonic's own TLS config
//! holds one fixed identity; this serves through tokio-rustls with
//! shoal's reloadable certificate and client verifier (`crate::tls`), so a
//! renewed certificate is used without a restart and a removed node is
//! refused at the handshake.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};
use tracing::debug;

use super::guard::{Counts, Guarded, HANDSHAKES_PER_PEER, PER_PEER};
use crate::tls::PeerIdentity;

/// A handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepted, handshaken TLS connections, for `serve_with_incoming`. Each
/// handshake runs in its own task, so a slow or hostile peer never holds up
/// the accept loop.
///
/// Connections without a client certificate (joins) are bounded
/// (`guard`): a few per peer address, each for a few seconds.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
) -> ReceiverStream<Result<Guarded<tokio_rustls::server::TlsStream<TcpStream>>, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(tls);
    let handshakes = Counts::new(HANDSHAKES_PER_PEER);
    let unauthenticated = Counts::new(PER_PEER);
    tokio::spawn(async move {
        loop {
            // When the server stops (the stream is dropped), let go of the
            // port at once: the node may restart as another role on it.
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let Some(handshake) = handshakes.admit(peer.ip()) else {
                debug!(%peer, "too many handshakes in progress from this peer");
                continue;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let unauthenticated = unauthenticated.clone();
            tokio::spawn(async move {
                let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                drop(handshake);
                match accepted {
                    Ok(Ok(stream)) => {
                        let stream = if stream.get_ref().1.peer_certificates().is_some() {
                            Guarded::trusted(stream)
                        } else {
                            match unauthenticated.admit(peer.ip()) {
                                Some(slot) => Guarded::bounded(stream, slot),
                                None => {
                                    debug!(%peer, "too many connections without a certificate from this peer");
                                    return;
                                }
                            }
                        };
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake refused"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// The caller's identity, from its certificate. Never from a request field.
pub fn peer<T>(req: &Request<T>) -> Result<PeerIdentity, Status> {
    let certs = req.peer_certs();
    PeerIdentity::from_peer_certs(certs.as_ref().map(|c| c.as_slice()))
        .ok_or_else(|| Status::unauthenticated("a node certificate is required"))
}

/// A gRPC channel to `addr` over TLS, checking the server's certificate for
/// `server_name` (a node id, or `shoal-manager` for any manager).
pub async fn connect(
    addr: &str,
    tls: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> Result<Channel, tonic::transport::Error> {
    let name = ServerName::try_from(server_name.to_string())
        .unwrap_or_else(|_| ServerName::try_from("shoal-manager").expect("valid name"));
    let connector = TlsConnector::from(tls);
    let target: String = addr.to_string();
    // The URI is only a label: the connector below dials `target` itself.
    Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(3))
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_uri| {
            let connector = connector.clone();
            let name = name.clone();
            let target = target.clone();
            async move {
                let addr: SocketAddr = tokio::net::lookup_host(&target)
                    .await?
                    .next()
                    .ok_or_else(|| std::io::Error::other(format!("cannot resolve {target}")))?;
                let tcp = TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
}

/// No manager answered: what each one said, or that none was known.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NoManagerAnswered(String);

/// Ask the managers at `addrs` in turn, over mTLS, until one answers: `ask`
/// gets a channel to each. The error names what every manager said.
pub async fn ask_managers<T, F, Fut>(
    addrs: &[String],
    tls: &Arc<rustls::ClientConfig>,
    mut ask: F,
) -> Result<T, NoManagerAnswered>
where
    F: FnMut(Channel) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut errors = Vec::new();
    for addr in addrs {
        let answer = match connect(addr, tls.clone(), crate::tls::MANAGER_SERVER_NAME).await {
            Ok(channel) => ask(channel).await,
            Err(e) => Err(e.to_string()),
        };
        match answer {
            Ok(t) => return Ok(t),
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    Err(NoManagerAnswered(if errors.is_empty() {
        "no manager address known".into()
    } else {
        errors.join("; ")
    }))
}
