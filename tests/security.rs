//! What the node-to-node port refuses, checked from outside as an intruder
//! or a misbehaving node would try it (issue 3, part 9). Each test starts
//! real daemons (a manager and joined workers on loopback, sharing the
//! machine's containerd), reads a node's TLS files from its data dir
//! (`tls/{ca.pem,node.key,node.pem}`), dials the gRPC port itself with
//! shoal's own rustls configs, and checks that the call is refused and that
//! nothing changed. Every refusal is paired with a call that succeeds, so a
//! test cannot pass because the probe itself is broken.
//!
//! Refused: a caller with no certificate, a certificate from another CA, a
//! worker certificate on a manager-only RPC, a wrong, rotated-away or
//! foreign join token, a removed node (new connections and its open
//! session), a node reporting status for another node's task, and an
//! expired certificate (that test waits about 70 s for a 1-minute
//! certificate to expire).
//!
//! Needs root and a running containerd (`bash .ci/start-containerd`).

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::harness::*;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use shoal::rpc::messages::*;
use shoal::rpc::pb::v2::ca_client::CaClient;
use shoal::rpc::pb::v2::dispatcher_client::DispatcherClient;
use shoal::rpc::transport::connect;
use shoal::tls::{
    bootstrap_client_config, client_config, CertInfo, JoinToken, NodeKey, PeerIdentity,
    ReloadableCert, Role, RootCa, MANAGER_SERVER_NAME,
};
use shoal::types::{NodeDescription, TaskState, TaskStatus};
use tokio::io::AsyncReadExt;
use tokio_rustls::TlsConnector;
use tonic::Code;

/// No single probe (connect and call) may take longer than this.
const CALL_LIMIT: Duration = Duration::from_secs(30);

// ---- nodes, through the CLI ---------------------------------------------------

fn grpc_addr(d: &Daemon) -> String {
    format!("127.0.0.1:{}", d.port)
}

/// Joins `worker` to `manager` by address and waits until it is ready.
fn join(worker: &Daemon, manager: &Daemon) {
    let out = worker.cli(&[
        "join",
        "--token",
        &manager.join_token(),
        &grpc_addr(manager),
    ]);
    assert!(out.status.success(), "join failed: {}", stderr(&out));
    let addr = grpc_addr(worker);
    assert!(
        wait_until(WAIT, || manager
            .nodes()
            .iter()
            .any(|n| s(n, "addr") == addr && s(n, "status") == "ready")),
        "the worker at {addr} never became ready: {:?}",
        manager.nodes()
    );
}

/// A manager and `n` joined, ready workers; with the busybox image on every
/// node when `image`.
fn cluster(n: usize, image: bool) -> (Daemon, Vec<Daemon>) {
    let manager = if image {
        Daemon::cluster()
    } else {
        let d = Daemon::start();
        d.cli_ok(&["init"]);
        d
    };
    let workers: Vec<Daemon> = (0..n)
        .map(|_| {
            let w = Daemon::start();
            if image {
                w.load_image("busybox");
            }
            join(&w, &manager);
            w
        })
        .collect();
    (manager, workers)
}

// ---- TLS material ---------------------------------------------------------------

/// A node's TLS files, as `init` or `join` left them in `<data dir>/tls/`.
struct NodeFiles {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl NodeFiles {
    fn read(d: &Daemon) -> NodeFiles {
        let dir = d.data_dir.join("tls");
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.join(name).display()))
        };
        NodeFiles {
            ca_pem: read("ca.pem"),
            cert_pem: read("node.pem"),
            key_pem: read("node.key"),
        }
    }

    fn info(&self) -> CertInfo {
        CertInfo::from_pem(&self.cert_pem).expect("a node certificate")
    }

    fn cert(&self) -> Arc<ReloadableCert> {
        let key = NodeKey::from_pem(&self.key_pem).expect("the node's key");
        ReloadableCert::new(&self.ca_pem, &self.cert_pem, &key).expect("the node's certificate")
    }

    /// What this node dials other nodes with.
    fn client(&self) -> Arc<ClientConfig> {
        client_config(&self.ca_pem, Some(self.cert())).expect("client config")
    }

    /// Trusts this cluster's servers but presents no certificate.
    fn anonymous(&self) -> Arc<ClientConfig> {
        client_config(&self.ca_pem, None).expect("client config")
    }

    /// Like `client`, but the server's certificate is checked at a moment
    /// inside its own validity: chain and name as usual, its dates not.
    /// The test then judges only the server's check of *our* certificate,
    /// whether or not the manager's own 1-minute certificate was renewed.
    fn client_ignoring_server_expiry(&self) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for der in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(der.expect("root PEM")).expect("root CA");
        }
        let provider = shoal::tls::provider();
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .expect("server verifier");
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(InItsLifetime(webpki)))
            .with_client_cert_resolver(self.cert());
        config.alpn_protocols = vec![shoal::tls::ALPN_H2.to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        Arc::new(config)
    }
}

/// A server verifier that checks the chain and name one second after the
/// certificate's not-before, whatever the time is.
#[derive(Debug)]
struct InItsLifetime(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for InItsLifetime {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let info =
            CertInfo::from_der(end_entity).map_err(|e| rustls::Error::General(e.to_string()))?;
        let at = info
            .not_before
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            + Duration::from_secs(1);
        self.0.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp,
            UnixTime::since_unix_epoch(at),
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

// ---- probes ---------------------------------------------------------------------

/// Runs one probe to completion on a runtime of its own. The tests are
/// plain `#[test]`s: the harness blocks (std::process), the probes do not.
fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// The node-to-node calls a probe can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    /// Ca.root: the only call meant to work without a certificate
    /// (with Ca.join, which needs a token).
    Root,
    /// Ca.renew, with a CSR for a fresh key.
    Renew,
    Heartbeat,
    /// Dispatcher.session, up to its first message.
    Session,
    /// Dispatcher.update_status with an empty batch.
    UpdateStatus,
    /// NodeAgent.logs of a task that does not exist: manager-only.
    Logs,
}

const DISPATCHER: [Rpc; 3] = [Rpc::Heartbeat, Rpc::Session, Rpc::UpdateStatus];
const ALL_BUT_ROOT: [Rpc; 5] = [
    Rpc::Renew,
    Rpc::Heartbeat,
    Rpc::Session,
    Rpc::UpdateStatus,
    Rpc::Logs,
];

/// Why a probe failed, as its caller sees it.
#[derive(Debug)]
enum Refusal {
    /// No gRPC answer: the TLS handshake or the connection failed. Holds
    /// the whole error chain (with the server's alert, if it sent one).
    Transport(String),
    /// A handler answered with this status.
    Status(Code, String),
}

impl Refusal {
    fn from_status(s: tonic::Status) -> Refusal {
        // A status made by tonic from a transport error keeps that error
        // as its source; one a handler sent over the wire has none.
        if std::error::Error::source(&s).is_some() {
            Refusal::Transport(chain(&s))
        } else {
            Refusal::Status(s.code(), s.message().to_string())
        }
    }
}

/// An error and all its sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out = format!("{out}: {s}");
        src = s.source();
    }
    out
}

fn session_request() -> SessionRequest {
    SessionRequest {
        description: NodeDescription {
            hostname: "security-probe".into(),
            ..Default::default()
        },
        addr: "127.0.0.1:9".into(),
        version: shoal::VERSION.into(),
    }
}

/// One call of `rpc` on a NEW connection to `addr`, whose certificate must
/// name `server_name`.
fn probe(addr: &str, tls: Arc<ClientConfig>, server_name: &str, rpc: Rpc) -> Result<(), Refusal> {
    block_on(async {
        match tokio::time::timeout(CALL_LIMIT, call(addr, tls, server_name, rpc)).await {
            Ok(r) => r,
            Err(_) => panic!("{rpc:?} on {addr} got no answer within {CALL_LIMIT:?}"),
        }
    })
}

/// `rpc` on both formats' services (shoal.v2, and shoal.v1 for nodes one
/// release behind), which must accept or refuse it alike; the shoal.v2
/// outcome.
async fn call(
    addr: &str,
    tls: Arc<ClientConfig>,
    server_name: &str,
    rpc: Rpc,
) -> Result<(), Refusal> {
    let v2 = call_v2(addr, tls.clone(), server_name, rpc).await;
    let v1 = call_v1(addr, tls, server_name, rpc).await;
    assert_eq!(
        v1.is_ok(),
        v2.is_ok(),
        "{rpc:?} on {addr}: shoal.v1 answered {v1:?}, shoal.v2 {v2:?}"
    );
    v2
}

macro_rules! call_in {
    ($name:ident, $pb:ident) => {
        async fn $name(
            addr: &str,
            tls: Arc<ClientConfig>,
            server_name: &str,
            rpc: Rpc,
        ) -> Result<(), Refusal> {
            use shoal::rpc::pb::$pb::{
                ca_client::CaClient, dispatcher_client::DispatcherClient,
                node_agent_client::NodeAgentClient,
            };
            let channel = connect(addr, tls, server_name)
                .await
                .map_err(|e| Refusal::Transport(chain(&e)))?;
            let result = match rpc {
                Rpc::Root => CaClient::new(channel).root(Empty {}).await.map(drop),
                Rpc::Renew => {
                    let csr = NodeKey::generate()
                        .and_then(|k| k.csr_pem("probe"))
                        .expect("a CSR");
                    CaClient::new(channel)
                        .renew(RenewRequest { csr_pem: csr })
                        .await
                        .map(drop)
                }
                Rpc::Heartbeat => DispatcherClient::new(channel)
                    .heartbeat(Empty {})
                    .await
                    .map(drop),
                Rpc::Session => match DispatcherClient::new(channel)
                    .session(session_request())
                    .await
                {
                    Ok(resp) => resp.into_inner().message().await.map(drop),
                    Err(s) => Err(s),
                },
                Rpc::UpdateStatus => DispatcherClient::new(channel)
                    .update_status(StatusBatch { updates: vec![] })
                    .await
                    .map(drop),
                Rpc::Logs => NodeAgentClient::new(channel)
                    .logs(LogsRequest {
                        task_ids: vec!["nosuchtask".into()],
                        tail: Some(1),
                        follow: false,
                    })
                    .await
                    .map(drop),
            };
            result.map_err(Refusal::from_status)
        }
    };
}
call_in!(call_v2, v2);
call_in!(call_v1, v1);

/// Dispatcher.update_status with `updates`, on a new connection.
fn report(
    addr: &str,
    tls: Arc<ClientConfig>,
    updates: Vec<(String, TaskStatus)>,
) -> Result<(), Refusal> {
    block_on(async {
        let channel = connect(addr, tls, MANAGER_SERVER_NAME)
            .await
            .map_err(|e| Refusal::Transport(chain(&e)))?;
        tokio::time::timeout(
            CALL_LIMIT,
            DispatcherClient::new(channel).update_status(StatusBatch {
                updates: updates.into_iter().map(Into::into).collect(),
            }),
        )
        .await
        .expect("update_status answered in time")
        .map(drop)
        .map_err(Refusal::from_status)
    })
}

/// Ca.join with `token`, over a connection pinned to the CA `pin_digest`
/// names, as `shoal join` makes it.
fn join_rpc(addr: &str, pin_digest: &str, token: &str) -> Result<JoinResponse, Refusal> {
    block_on(async {
        let tls = bootstrap_client_config(pin_digest).expect("bootstrap config");
        let channel = connect(addr, tls, MANAGER_SERVER_NAME)
            .await
            .map_err(|e| Refusal::Transport(chain(&e)))?;
        let key = NodeKey::generate().expect("a key");
        let req = JoinRequest {
            token: token.to_string(),
            csr_pem: key.csr_pem("joining").expect("a CSR"),
            description: NodeDescription {
                hostname: "intruder".into(),
                ..Default::default()
            },
            addr: "127.0.0.1:9".into(),
            version: shoal::VERSION.into(),
        };
        tokio::time::timeout(CALL_LIMIT, CaClient::new(channel).join(req))
            .await
            .expect("join answered in time")
            .map(|r| r.into_inner())
            .map_err(Refusal::from_status)
    })
}

// ---- assertions -------------------------------------------------------------------

#[track_caller]
fn assert_ok<T>(what: &str, r: Result<T, Refusal>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: expected the call to succeed, it was refused: {e:?}"),
    }
}

/// Refused by a handler with one of `codes`.
#[track_caller]
fn assert_status<T: std::fmt::Debug>(what: &str, r: Result<T, Refusal>, codes: &[Code]) -> String {
    match r {
        Err(Refusal::Status(code, msg)) if codes.contains(&code) => msg,
        other => panic!("{what}: expected a refusal with status {codes:?}, got {other:?}"),
    }
}

/// What the server answers to a bare TLS handshake, before any request:
/// `Err(alert or error)` if it refuses us, `Ok` once it speaks HTTP/2 (its
/// SETTINGS frame). A gRPC call cannot tell this reliably: with TLS 1.3 the
/// client's handshake is over before the server has judged its
/// certificate, and a request sent meanwhile may meet a reset connection
/// instead of the server's alert.
fn server_verdict(addr: &str, tls: Arc<ClientConfig>, server_name: &str) -> Result<(), String> {
    block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        let name = ServerName::try_from(server_name.to_string()).expect("a server name");
        let mut tls = TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut byte = [0u8; 1];
        match tokio::time::timeout(CALL_LIMIT, tls.read(&mut byte)).await {
            Ok(Ok(n)) if n > 0 => Ok(()),
            Ok(Ok(_)) => Err("the server closed the connection without an alert".into()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => panic!("{addr} neither refused nor answered within {CALL_LIMIT:?}"),
        }
    })
}

/// Refused at the TLS handshake: a bare handshake gets one of `alerts` from
/// the server, and the gRPC call `rpc` never reaches a handler.
#[track_caller]
fn assert_handshake_refused(
    what: &str,
    addr: &str,
    tls: Arc<ClientConfig>,
    server_name: &str,
    rpc: Rpc,
    alerts: &[&str],
) {
    match server_verdict(addr, tls.clone(), server_name) {
        Err(e)
            if alerts
                .iter()
                .any(|a| e == format!("received fatal alert: {a}")) => {}
        other => panic!(
            "{what}: expected the server to refuse the TLS handshake with one of the alerts \
             {alerts:?}, got {other:?}"
        ),
    }
    // The call sees the alert, or only a closed connection (see above).
    match probe(addr, tls, server_name, rpc) {
        Err(Refusal::Transport(e)) => {
            if let Some((_, alert)) = e.split_once("received fatal alert: ") {
                assert!(
                    alerts.iter().any(|a| alert.starts_with(a)),
                    "{what}: {rpc:?} was refused with another alert: {e}"
                );
            }
        }
        other => panic!("{what}: {rpc:?} must fail at the transport, got {other:?}"),
    }
}

// ---- the tests ---------------------------------------------------------------------

#[test]
fn a_caller_without_a_certificate_gets_only_the_root() {
    let (manager, _workers) = cluster(0, false);
    let addr = grpc_addr(&manager);
    let files = NodeFiles::read(&manager);

    // Ca.root answers anyone: it is how a joining node checks the CA.
    assert_ok(
        "Ca.root without a certificate",
        probe(&addr, files.anonymous(), MANAGER_SERVER_NAME, Rpc::Root),
    );
    let digest = JoinToken::parse(&manager.join_token())
        .expect("the worker token")
        .ca_digest();
    let root = block_on(async {
        let tls = bootstrap_client_config(&digest).expect("bootstrap config");
        let channel = connect(&addr, tls, MANAGER_SERVER_NAME)
            .await
            .expect("connect");
        CaClient::new(channel).root(Empty {}).await
    })
    .expect("Ca.root over the bootstrap connection")
    .into_inner();
    assert_eq!(root.ca_pem, files.ca_pem, "Ca.root sent another CA");
    assert_eq!(root.cluster_id, files.info().identity.cluster_id);

    // Everything else wants a node certificate.
    for rpc in ALL_BUT_ROOT {
        let msg = assert_status(
            &format!("{rpc:?} without a certificate"),
            probe(&addr, files.anonymous(), MANAGER_SERVER_NAME, rpc),
            &[Code::Unauthenticated],
        );
        assert!(msg.contains("certificate"), "{rpc:?}: {msg}");
    }
    // The same calls with the manager's own certificate work.
    for rpc in DISPATCHER {
        assert_ok(
            &format!("{rpc:?} with the manager's certificate"),
            probe(&addr, files.client(), MANAGER_SERVER_NAME, rpc),
        );
    }
}

/// Alerts a certificate from another CA may get: `UnknownCA`, or, when
/// that CA copies the cluster root's name (so the chain leads to the real
/// root), `DecryptError` for the signature that does not verify.
const FOREIGN_ALERTS: &[&str] = &["UnknownCA", "DecryptError"];

/// A client that trusts the real cluster's servers and presents a
/// certificate that `ca` issued for `who`.
fn forged_client(real_ca_pem: &str, ca: &RootCa, who: &PeerIdentity) -> Arc<ClientConfig> {
    let key = NodeKey::generate().expect("a key");
    let cert_pem = ca
        .issue(
            &key.csr_pem(&who.node_id).expect("a CSR"),
            &who.node_id,
            who.role,
            &who.cluster_id,
            &["127.0.0.1".to_string()],
            Duration::from_secs(3600),
        )
        .expect("a forged certificate");
    let cert = ReloadableCert::new(ca.cert_pem(), &cert_pem, &key).expect("a forged chain");
    client_config(real_ca_pem, Some(cert)).expect("client config")
}

#[test]
fn a_certificate_from_another_ca_is_refused_at_the_handshake() {
    let (manager, workers) = cluster(1, false);
    let addr = grpc_addr(&manager);
    let real = NodeFiles::read(&manager);
    let me = real.info().identity;
    assert_eq!(me.role, Role::Manager);

    // The best forgeries there are without the cluster's CA key: the
    // manager's own node id, role and cluster id, signed by a CA with the
    // real root's name (`shoal-root-ca`, O = cluster id), and by one with
    // another name.
    let impostor = RootCa::generate(&me.cluster_id).expect("a CA");
    let stranger = RootCa::generate("another-cluster").expect("a CA");
    let worker = &workers[0];
    let wid = NodeFiles::read(worker).info().identity.node_id;
    for (which, ca) in [("impostor", &impostor), ("stranger", &stranger)] {
        let forged = || forged_client(&real.ca_pem, ca, &me);
        for rpc in ALL_BUT_ROOT {
            assert_handshake_refused(
                &format!("{rpc:?} on the manager, certificate from the {which} CA"),
                &addr,
                forged(),
                MANAGER_SERVER_NAME,
                rpc,
                FOREIGN_ALERTS,
            );
        }
        // Not even Ca.root: a certificate that does not verify is not
        // taken as no certificate.
        assert_handshake_refused(
            &format!("Ca.root, certificate from the {which} CA"),
            &addr,
            forged(),
            MANAGER_SERVER_NAME,
            Rpc::Root,
            FOREIGN_ALERTS,
        );
        // A worker's port refuses it too.
        assert_handshake_refused(
            &format!("NodeAgent.logs on a worker, certificate from the {which} CA"),
            &grpc_addr(worker),
            forged(),
            &wid,
            Rpc::Logs,
            FOREIGN_ALERTS,
        );
    }
    // The real manager certificate is let in: the probes themselves work.
    assert_eq!(
        server_verdict(&addr, real.client(), MANAGER_SERVER_NAME),
        Ok(())
    );
    assert_ok(
        "Heartbeat with the manager's real certificate",
        probe(&addr, real.client(), MANAGER_SERVER_NAME, Rpc::Heartbeat),
    );
}

#[test]
fn a_worker_certificate_cannot_read_logs_which_is_manager_only() {
    let (manager, workers) = cluster(2, false);
    let (a, b) = (NodeFiles::read(&workers[0]), NodeFiles::read(&workers[1]));
    let mgr = NodeFiles::read(&manager);
    assert_eq!(a.info().identity.role, Role::Worker);
    let b_id = b.info().identity.node_id;

    // On the manager's port, and on another worker's.
    let msg = assert_status(
        "NodeAgent.logs on the manager with a worker's certificate",
        probe(
            &grpc_addr(&manager),
            a.client(),
            MANAGER_SERVER_NAME,
            Rpc::Logs,
        ),
        &[Code::PermissionDenied],
    );
    assert!(msg.contains("only managers"), "{msg}");
    assert_status(
        "NodeAgent.logs on worker B with worker A's certificate",
        probe(&grpc_addr(&workers[1]), a.client(), &b_id, Rpc::Logs),
        &[Code::PermissionDenied],
    );

    // A manager's certificate may: same calls, same ports.
    assert_ok(
        "NodeAgent.logs on the manager with the manager's certificate",
        probe(
            &grpc_addr(&manager),
            mgr.client(),
            MANAGER_SERVER_NAME,
            Rpc::Logs,
        ),
    );
    assert_ok(
        "NodeAgent.logs on worker B with the manager's certificate",
        probe(&grpc_addr(&workers[1]), mgr.client(), &b_id, Rpc::Logs),
    );
    // And the worker's certificate is good for what workers do.
    assert_ok(
        "Heartbeat with worker A's certificate",
        probe(
            &grpc_addr(&manager),
            a.client(),
            MANAGER_SERVER_NAME,
            Rpc::Heartbeat,
        ),
    );
}

#[test]
fn wrong_rotated_and_foreign_join_tokens_are_refused_and_nothing_is_written() {
    let (manager, _workers) = cluster(0, false);
    let addr = grpc_addr(&manager);
    let good = manager.join_token();
    let digest = JoinToken::parse(&good)
        .expect("the worker token")
        .ca_digest();
    let before = manager.nodes().len();

    // This cluster's CA digest, another secret.
    let wrong = JoinToken::generate(&digest).expect("a token").to_string();
    let msg = assert_status(
        "Ca.join with a wrong token",
        join_rpc(&addr, &digest, &wrong),
        &[Code::PermissionDenied],
    );
    assert!(msg.contains("wrong or has been rotated"), "{msg}");

    // A token made for another cluster's CA.
    let other = RootCa::generate("other").expect("a CA");
    let foreign = JoinToken::generate(&other.digest())
        .expect("a token")
        .to_string();
    let msg = assert_status(
        "Ca.join with another cluster's token",
        join_rpc(&addr, &digest, &foreign),
        &[Code::PermissionDenied],
    );
    assert!(msg.contains("another cluster"), "{msg}");

    // The token that was good a moment ago, rotated away.
    manager.cli_ok(&["join-token", "worker", "--rotate"]);
    let fresh = manager.join_token();
    assert_ne!(fresh, good, "--rotate did not change the token");
    let msg = assert_status(
        "Ca.join with a rotated-away token",
        join_rpc(&addr, &digest, &good),
        &[Code::PermissionDenied],
    );
    assert!(msg.contains("wrong or has been rotated"), "{msg}");

    let after = manager.nodes();
    assert_eq!(
        after.len(),
        before,
        "a refused join must not add a node: {after:?}"
    );

    // The same request with the current token is accepted: the refusals
    // above were about the token.
    let joined = assert_ok(
        "Ca.join with the current token",
        join_rpc(&addr, &digest, &fresh),
    );
    let info = CertInfo::from_pem(&joined.cert_pem).expect("an issued certificate");
    assert_eq!(info.identity.role, Role::Worker);
    assert_eq!(info.identity.node_id, joined.node_id);
    assert_eq!(manager.nodes().len(), before + 1);
}

#[test]
fn a_removed_node_is_refused_on_new_connections_and_its_session_closed() {
    let (manager, workers) = cluster(1, false);
    let addr = grpc_addr(&manager);
    let worker = &workers[0];
    let files = NodeFiles::read(worker);
    let wid = manager.node_id(&grpc_addr(worker));
    assert_eq!(files.info().identity.node_id, wid);

    // While a member, its certificate works, and a session it opens stays
    // open (read in the background; the first message gives the cluster's
    // heartbeat period).
    assert_ok(
        "Heartbeat before removal",
        probe(&addr, files.client(), MANAGER_SERVER_NAME, Rpc::Heartbeat),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Result<Duration, String>)>();
    let tls = files.client();
    let session_addr = addr.clone();
    let worker_addr = grpc_addr(worker);
    rt.spawn(async move {
        let ended = async {
            let channel = connect(&session_addr, tls, MANAGER_SERVER_NAME)
                .await
                .map_err(|e| format!("cannot connect: {}", chain(&e)))?;
            let mut req = session_request();
            req.addr = worker_addr;
            req.description.hostname = hostname();
            let mut stream = DispatcherClient::new(channel)
                .session(req)
                .await
                .map_err(|s| format!("refused: {s:?}"))?
                .into_inner();
            // The Cluster message comes again whenever what it says
            // changes (the other nodes' overlay endpoints, for one): only
            // the first is reported.
            let mut opened = false;
            loop {
                match stream.message().await {
                    Ok(Some(SessionMessage::Cluster {
                        heartbeat_period_ms,
                        ..
                    })) if !opened => {
                        opened = true;
                        let period = Duration::from_millis(heartbeat_period_ms);
                        let _ = tx.send((Instant::now(), Ok(period)));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return Err("the stream ended without a status".to_string()),
                    Err(s) => return Err(format!("{:?}: {}", s.code(), s.message())),
                }
            }
        }
        .await;
        let _ = tx.send((Instant::now(), ended));
    });
    let period = match rx.recv_timeout(CALL_LIMIT) {
        Ok((_, Ok(period))) => period,
        other => panic!("the member's session did not open: {other:?}"),
    };
    std::thread::sleep(3 * period);
    if let Ok((_, what)) = rx.try_recv() {
        panic!("a member's session must stay open, got {what:?}");
    }

    manager.cli_ok(&["node", "rm", "--force", &wid]);
    let removed = Instant::now();
    assert_eq!(manager.nodes().len(), 1, "node rm did not remove the node");

    // Its open session is closed, with a refusal, within about one
    // heartbeat period (a second of slack for a loaded machine).
    let (at, how) = match rx.recv_timeout(CALL_LIMIT) {
        Ok((at, Err(how))) => (at, how),
        other => panic!("the removed node's open session was not closed: {other:?}"),
    };
    assert!(
        how.starts_with("PermissionDenied"),
        "the removed node's session ended with {how:?}, expected PermissionDenied"
    );
    let took = at.saturating_duration_since(removed);
    assert!(
        took <= 2 * period + Duration::from_secs(1),
        "the removed node's session stayed open {took:?} after node rm (heartbeat period {period:?})"
    );
    drop(rt);

    // New connections with its certificate are refused at the handshake,
    // including renewal: the certificate is still in date, so this is the
    // manager's membership check.
    for rpc in [
        Rpc::Renew,
        Rpc::Heartbeat,
        Rpc::Session,
        Rpc::UpdateStatus,
        Rpc::Root,
    ] {
        assert_handshake_refused(
            &format!("{rpc:?} with a removed node's certificate"),
            &addr,
            files.client(),
            MANAGER_SERVER_NAME,
            rpc,
            &["AccessDenied"],
        );
    }
    // It stays removed, whatever the removed daemon tries meanwhile.
    std::thread::sleep(3 * period);
    assert_eq!(
        manager.nodes().len(),
        1,
        "a removed node must not come back: {:?}",
        manager.nodes()
    );
}

#[test]
fn a_node_cannot_report_status_for_another_nodes_task() {
    let (manager, workers) = cluster(2, true);
    let addr = grpc_addr(&manager);
    let (a, b) = (&workers[0], &workers[1]);
    let a_id = manager.node_id(&grpc_addr(a));
    let b_id = manager.node_id(&grpc_addr(b));
    let a_files = NodeFiles::read(a);

    manager.sleeper("web", &["--replicas", "3"]);
    let running_on = |node: &str| -> Option<Value> {
        manager
            .ps("web")
            .into_iter()
            .find(|t| s(t, "node_id") == node && s(t, "state") == "running")
    };
    assert!(
        wait_until(WAIT, || running_on(&a_id).is_some()
            && running_on(&b_id).is_some()),
        "expected a running task on each worker\n{}",
        manager.describe("web")
    );
    let on_a = running_on(&a_id).expect("a task on A");
    let on_b = running_on(&b_id).expect("a task on B");
    let forged = |id: &Value| {
        (
            s(id, "id").to_string(),
            TaskStatus {
                state: TaskState::Failed,
                timestamp_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .expect("after 1970")
                    .as_millis() as i64,
                message: "forged by another node".into(),
                error: Some("forged by another node".into()),
                container_id: None,
                exit_code: Some(137),
                oom_killed: false,
                ..TaskStatus::default()
            },
        )
    };

    // A's certificate, B's task.
    let msg = assert_status(
        "worker A reporting worker B's task as failed",
        report(&addr, a_files.client(), vec![forged(&on_b)]),
        &[Code::PermissionDenied],
    );
    assert!(msg.contains("not assigned"), "{msg}");
    // Hidden behind one of A's own: the batch is refused whole.
    assert_status(
        "worker A reporting its own task and B's",
        report(&addr, a_files.client(), vec![forged(&on_a), forged(&on_b)]),
        &[Code::PermissionDenied],
    );

    // Nothing changed: once a later report of B's has gone through the
    // dispatcher's batching to the store (a probe pinned to B runs), both
    // tasks are as they were, in shoal and in containerd.
    manager.sleeper("probe", &["--constraint", &format!("node.id=={b_id}")]);
    assert!(
        wait_until(WAIT, || manager.running("probe").len() == 1),
        "a probe on B never ran\n{}",
        manager.describe("probe")
    );
    let ps = manager.ps("web");
    for (who, before) in [("B", &on_b), ("A", &on_a)] {
        let id = s(before, "id");
        let now = ps
            .iter()
            .find(|t| s(t, "id") == id)
            .unwrap_or_else(|| panic!("task {id} vanished from service ps: {ps:?}"));
        for field in ["state", "node_id", "message", "error", "exit_code"] {
            assert_eq!(
                now.get(field),
                before.get(field),
                "the refused report changed {field} of {who}'s task {id}: before {before}, now {now}"
            );
        }
    }
    assert!(
        b.ctr_running().contains(&container_id(&on_b)),
        "B's container stopped: {:?}",
        b.ctr_running()
    );
    assert!(
        a.ctr_running().contains(&container_id(&on_a)),
        "A's container stopped: {:?}",
        a.ctr_running()
    );
}

#[test]
fn an_expired_certificate_is_refused_on_a_new_connection_waits_70_s() {
    let manager = Daemon::start();
    manager.cli_ok(&["init", "--cert-expiry", "1m"]);
    let worker = Daemon::start();
    join(&worker, &manager);
    let addr = grpc_addr(&manager);
    // Read at once: whatever renewal does later, this certificate expires.
    let files = NodeFiles::read(&worker);
    let info = files.info();
    let life = info
        .not_after
        .duration_since(SystemTime::now())
        .expect("a fresh certificate is in date");
    assert!(
        life <= Duration::from_secs(61),
        "--cert-expiry 1m gave the worker a certificate for {life:?}"
    );
    let tls = || files.client_ignoring_server_expiry();
    assert_eq!(
        server_verdict(&addr, tls(), MANAGER_SERVER_NAME),
        Ok(()),
        "the worker's certificate must be accepted while it is in date"
    );
    assert_ok(
        "Heartbeat with the worker's certificate while it is in date",
        probe(&addr, tls(), MANAGER_SERVER_NAME, Rpc::Heartbeat),
    );

    let expired_at = info.not_after + Duration::from_secs(5);
    if let Ok(wait) = expired_at.duration_since(SystemTime::now()) {
        std::thread::sleep(wait);
    }
    for rpc in [Rpc::Heartbeat, Rpc::Session, Rpc::UpdateStatus, Rpc::Renew] {
        assert_handshake_refused(
            &format!("{rpc:?} with an expired certificate"),
            &addr,
            tls(),
            MANAGER_SERVER_NAME,
            rpc,
            &["CertificateExpired"],
        );
    }
    // The node was not removed: it is the certificate's age that counts.
    let wid = info.identity.node_id;
    assert!(
        manager.nodes().iter().any(|n| s(n, "id") == wid),
        "the worker should still be a node: {:?}",
        manager.nodes()
    );
}
