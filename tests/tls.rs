//! mTLS between nodes, end to end over loopback TCP with tokio-rustls and
//! the configs from `shoal::tls`: who the server sees, what it refuses
//! (another CA, an expired cert, a removed node), renewal without restart,
//! the bootstrap pin on the CA digest, and join-token checks.
//!
//! No daemon: each test starts a small TLS echo server on 127.0.0.1:0 that
//! reports, per connection, the peer identity it saw or why it refused.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use shoal::tls::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_rustls::{TlsAcceptor, TlsConnector};

const CLUSTER: &str = "cluster-test";
const HOUR: Duration = Duration::from_secs(3600);
/// Bounds every wait, so a broken handshake fails the test instead of
/// hanging it.
const LIMIT: Duration = Duration::from_secs(10);

/// A CA and the certs it issues.
struct Cluster {
    ca: RootCa,
    id: &'static str,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster::named(CLUSTER)
    }

    fn named(id: &'static str) -> Cluster {
        Cluster {
            ca: RootCa::generate(id).unwrap(),
            id,
        }
    }

    fn root_pem(&self) -> String {
        self.ca.cert_pem().to_string()
    }

    /// A node's key and a cert for it, as a join would make them.
    fn issue(&self, node_id: &str, role: Role, validity: Duration) -> (NodeKey, String) {
        let key = NodeKey::generate().unwrap();
        let sans = ["127.0.0.1".to_string()];
        let csr = key.csr_pem(node_id).unwrap();
        let cert = self
            .ca
            .issue(&csr, node_id, role, self.id, &sans, validity)
            .unwrap();
        (key, cert)
    }

    fn node(&self, node_id: &str, role: Role) -> Arc<ReloadableCert> {
        let (key, cert) = self.issue(node_id, role, HOUR);
        ReloadableCert::new(&self.root_pem(), &cert, &key).unwrap()
    }

    fn client(&self, cert: Option<Arc<ReloadableCert>>) -> Arc<rustls::ClientConfig> {
        client_config(&self.root_pem(), cert).unwrap()
    }
}

/// What the server saw on one connection.
type Seen = Result<Option<PeerIdentity>, String>;

/// A TLS server that answers "ok" and reports each handshake's outcome.
async fn serve(config: Arc<rustls::ServerConfig>) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(mut tls) => {
                        let id = PeerIdentity::from_peer_certs(tls.get_ref().1.peer_certificates());
                        let _ = tx.send(Ok(id));
                        let _ = tls.write_all(b"ok").await;
                        let _ = tls.shutdown().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// Connects, reads the server's answer, and returns the serial of the
/// server's certificate; or the client-side error.
async fn call(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    server_name: &str,
) -> Result<(String, Vec<rustls::pki_types::CertificateDer<'static>>), String> {
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let work = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let chain: Vec<_> = tls.get_ref().1.peer_certificates().unwrap().to_vec();
        // With TLS 1.3 the client's handshake ends before the server has
        // judged the client cert: a refusal shows up here, as an alert.
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        if answer != b"ok" {
            return Err(format!("unexpected answer {answer:?}"));
        }
        let serial = CertInfo::from_der(&chain[0]).unwrap().serial;
        Ok((serial, chain))
    };
    timeout(LIMIT, work).await.expect("client timed out")
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    timeout(LIMIT, rx.recv())
        .await
        .expect("server saw no connection")
        .expect("server stopped")
}

async fn manager_server(
    cluster: &Cluster,
    allow: PeerFilter,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<Seen>,
    Arc<ReloadableCert>,
) {
    let cert = cluster.node("m1", Role::Manager);
    let config = server_config(&cluster.root_pem(), cert.clone(), allow).unwrap();
    let (addr, rx) = serve(config).await;
    (addr, rx, cert)
}

#[tokio::test]
async fn a_worker_is_seen_as_a_worker() {
    let cluster = Cluster::new();
    let (addr, mut rx, server_cert) = manager_server(&cluster, allow_all()).await;
    let client = cluster.client(Some(cluster.node("w1", Role::Worker)));

    let (serial, _) = call(client.clone(), addr, "m1").await.unwrap();
    assert_eq!(serial, server_cert.info().serial);
    let id = next(&mut rx).await.unwrap().expect("identity");
    assert_eq!(
        id,
        PeerIdentity {
            node_id: "w1".into(),
            role: Role::Worker,
            cluster_id: CLUSTER.into()
        }
    );

    // The SAN check: "any manager" and the IP match, a worker's name does not.
    call(client.clone(), addr, MANAGER_SERVER_NAME)
        .await
        .unwrap();
    next(&mut rx).await.unwrap();
    call(client.clone(), addr, "127.0.0.1").await.unwrap();
    next(&mut rx).await.unwrap();
    let err = call(client, addr, WORKER_SERVER_NAME).await.unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
}

#[tokio::test]
async fn no_client_cert_is_allowed_at_handshake_and_has_no_identity() {
    let cluster = Cluster::new();
    let (addr, mut rx, _) = manager_server(&cluster, allow_all()).await;
    call(cluster.client(None), addr, "m1").await.unwrap();
    assert_eq!(next(&mut rx).await.unwrap(), None);
}

#[tokio::test]
async fn a_cert_from_another_ca_is_refused_both_ways() {
    let cluster = Cluster::new();
    let (addr, mut rx, _) = manager_server(&cluster, allow_all()).await;

    // Another cluster's cert, and an impostor CA that copies this cluster's
    // name (same issuer DN, other key): the server refuses both.
    for (other, why) in [
        (Cluster::named("cluster-other"), "UnknownIssuer"),
        (Cluster::new(), "BadSignature"),
    ] {
        let stranger = cluster_client_with_foreign_cert(&cluster, &other);
        let err = call(stranger, addr, "m1").await.unwrap_err();
        let seen = next(&mut rx).await.unwrap_err();
        assert!(seen.contains(why), "{seen}");
        assert!(err.to_lowercase().contains("alert"), "{err}");
    }

    // A node of another cluster does not trust this server either.
    let other = Cluster::named("cluster-other");
    let err = call(
        other.client(Some(other.node("w9", Role::Worker))),
        addr,
        "m1",
    )
    .await
    .unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
}

/// A client that trusts `cluster`'s root but holds a cert of `other`.
fn cluster_client_with_foreign_cert(
    cluster: &Cluster,
    other: &Cluster,
) -> Arc<rustls::ClientConfig> {
    let (key, cert) = other.issue("intruder", Role::Manager, HOUR);
    let foreign = ReloadableCert::new(&other.root_pem(), &cert, &key).unwrap();
    cluster.client(Some(foreign))
}

#[tokio::test]
async fn an_expired_cert_is_refused() {
    let cluster = Cluster::new();
    let (addr, mut rx, _) = manager_server(&cluster, allow_all()).await;
    let (key, cert) = cluster.issue("w-old", Role::Worker, Duration::from_secs(1));
    let client = cluster.client(Some(
        ReloadableCert::new(&cluster.root_pem(), &cert, &key).unwrap(),
    ));
    // X.509 times have whole seconds: past 2 s, a 1 s cert has expired.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(call(client, addr, "m1").await.is_err());
    let seen = next(&mut rx).await.unwrap_err();
    assert!(seen.contains("expired"), "{seen}");
}

#[tokio::test]
async fn a_removed_node_is_refused_at_handshake() {
    let cluster = Cluster::new();
    // The store's view, as the daemon's filter would read it.
    let removed: Arc<Mutex<HashSet<String>>> = Arc::default();
    let view = removed.clone();
    let allow: PeerFilter =
        Arc::new(move |id: &PeerIdentity| !view.lock().unwrap().contains(&id.node_id));
    let (addr, mut rx, _) = manager_server(&cluster, allow).await;

    // Connected while a member...
    let client = cluster.client(Some(cluster.node("w-gone", Role::Worker)));
    call(client.clone(), addr, "m1").await.unwrap();
    assert_eq!(next(&mut rx).await.unwrap().unwrap().node_id, "w-gone");

    // ...then `node rm`: the same client (same cert, and a session it would
    // resume if resumption were on) is refused on its next connection.
    removed.lock().unwrap().insert("w-gone".into());
    let err = call(client, addr, "m1").await.unwrap_err();
    assert!(err.contains("AccessDenied"), "{err}");
    assert!(next(&mut rx).await.is_err());

    // Others still get in.
    call(
        cluster.client(Some(cluster.node("w-kept", Role::Worker))),
        addr,
        "m1",
    )
    .await
    .unwrap();
    assert_eq!(next(&mut rx).await.unwrap().unwrap().node_id, "w-kept");
}

#[tokio::test]
async fn a_renewed_cert_is_served_without_restart() {
    let cluster = Cluster::new();
    let (addr, mut rx, server_cert) = manager_server(&cluster, allow_all()).await;
    let client = cluster.client(Some(cluster.node("w1", Role::Worker)));

    let (before, _) = call(client.clone(), addr, "m1").await.unwrap();
    next(&mut rx).await.unwrap();

    // Renewal with a fresh key, as Swarm does.
    let (key, cert) = cluster.issue("m1", Role::Manager, HOUR);
    server_cert.update(&cert, &key).unwrap();
    let (after, _) = call(client, addr, "m1").await.unwrap();
    next(&mut rx).await.unwrap();
    assert_ne!(before, after);
    assert_eq!(after, CertInfo::from_pem(&cert).unwrap().serial);

    // A cert with a key that is not its own is refused, and the old one stays.
    let (_, other_cert) = cluster.issue("m1", Role::Manager, HOUR);
    assert!(server_cert.update(&other_cert, &key).is_err());
    assert_eq!(server_cert.info().serial, after);
}

#[tokio::test]
async fn bootstrap_trusts_only_the_root_with_the_token_digest() {
    let cluster = Cluster::new();
    let (addr, mut rx, _) = manager_server(&cluster, allow_all()).await;
    let digest = cluster.ca.digest();

    // Right digest: the handshake succeeds and the root can be stored.
    let config = bootstrap_client_config(&digest).unwrap();
    let (_, chain) = call(config, addr, MANAGER_SERVER_NAME).await.unwrap();
    assert_eq!(next(&mut rx).await.unwrap(), None);
    let root = root_pem_from_chain(&chain, &digest).unwrap();
    assert_eq!(root, cluster.root_pem());
    check_root_digest(&root, &digest).unwrap();

    // Wrong digest (another cluster's token): refused before any data.
    let wrong = Cluster::new().ca.digest();
    let err = call(
        bootstrap_client_config(&wrong).unwrap(),
        addr,
        MANAGER_SERVER_NAME,
    )
    .await
    .unwrap_err();
    assert!(err.contains("does not match the join token"), "{err}");
    assert!(check_root_digest(&cluster.root_pem(), &wrong).is_err());
}

#[tokio::test]
async fn bootstrap_refuses_a_worker_posing_as_a_manager() {
    let cluster = Cluster::new();
    let worker = cluster.node("w1", Role::Worker);
    let config = server_config(&cluster.root_pem(), worker, allow_all()).unwrap();
    let (addr, _rx) = serve(config).await;
    let err = call(
        bootstrap_client_config(&cluster.ca.digest()).unwrap(),
        addr,
        MANAGER_SERVER_NAME,
    )
    .await
    .unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
}

#[test]
fn wrong_and_rotated_tokens_are_refused() {
    let cluster = Cluster::new();
    let mut tokens = JoinTokens::generate(&cluster.ca.digest()).unwrap();
    let issued = tokens.worker.to_string();

    // As a joining node would: parse what the user typed, check the digest.
    let presented = JoinToken::parse(&issued).unwrap();
    assert_eq!(presented.ca_digest(), cluster.ca.digest());
    assert_eq!(tokens.check(&presented).unwrap(), Role::Worker);

    // A made-up secret for the right cluster.
    let wrong = JoinToken::generate(&cluster.ca.digest()).unwrap();
    let err = tokens.check(&wrong).unwrap_err();
    assert!(
        err.to_string().contains("wrong or has been rotated"),
        "{err}"
    );

    // After rotation the old token no longer works; the new one does.
    let fresh = tokens.rotate(Role::Worker).clone();
    assert!(matches!(
        tokens.check(&presented),
        Err(TlsError::TokenRefused)
    ));
    assert_eq!(
        tokens
            .check(&JoinToken::parse(&fresh.to_string()).unwrap())
            .unwrap(),
        Role::Worker
    );

    // Garbage says what a token looks like.
    let err = JoinToken::parse("SWMTKN-1-abc").unwrap_err().to_string();
    assert!(
        err.starts_with("malformed join token: expected SHOAL-1-"),
        "{err}"
    );
}
