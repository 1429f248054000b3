//! One manager of a simulated cluster, as `crate::manager` wires a real
//! one, minus what needs a host (mDNS, the control socket, the node's own
//! agent): its own store and Raft log in a temp dir, the real `Raft` gRPC
//! service on 127.0.0.1 over mTLS (certificates from the fixture's CA),
//! and `crate::leader::run`, so that while it leads it runs exactly the
//! loops a real leader runs.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::objects::TempDir;
use crate::dispatcher::Dispatcher;
use crate::raft::{Member, RaftNode, RaftService};
use crate::rpc::pb::v2::raft_server::RaftServer;
use crate::shutdown::{self, ShutdownTrigger};
use crate::store::{Codec, Store};
use crate::tls::{self, NodeKey, Role, RootCa};

/// How long a manager's certificate is valid: longer than any test.
const CERT_VALIDITY: Duration = Duration::from_secs(24 * 3600);

pub struct SimManager {
    pub node_id: String,
    pub addr: String,
    pub raft: Arc<RaftNode>,
    /// The dispatcher while this manager leads, else `None`.
    pub dispatcher: watch::Receiver<Option<Dispatcher>>,
    stop: ShutdownTrigger,
    /// The Raft service's view of this manager's Raft; emptied on kill, so
    /// that peers are refused as by a manager that is gone.
    raft_slot: watch::Sender<Option<Arc<RaftNode>>>,
    server: JoinHandle<()>,
    leader_loops: JoinHandle<()>,
    _dir: TempDir,
}

impl SimManager {
    /// Start a manager with its gRPC server up; it is in no membership yet.
    pub async fn start(ca: &RootCa, cluster_id: &str, node_id: &str) -> anyhow::Result<SimManager> {
        let dir = TempDir::in_memory("sim-manager")?;
        let store = Store::open(
            &crate::data_dir::DataDir::at(dir.path()).state(),
            Codec::ephemeral(),
        )
        .context("cannot open the store")?;
        let key = NodeKey::generate()?;
        let cert_pem = ca.issue(
            &key.csr_pem(node_id)?,
            node_id,
            Role::Manager,
            cluster_id,
            &["127.0.0.1".to_string()],
            CERT_VALIDITY,
        )?;
        let cert = tls::ReloadableCert::new(ca.cert_pem(), &cert_pem, &key)?;
        let client_tls = tls::client_config(ca.cert_pem(), Some(cert.clone()))?;
        let server_tls = tls::server_config(ca.cert_pem(), cert, tls::allow_all())?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();

        let raft = RaftNode::start(dir.path(), store, node_id, client_tls).await?;
        let (raft_slot, slot) = watch::channel(Some(raft.clone()));
        let (stop, shutdown) = shutdown::channel();
        let mut server_shutdown = shutdown.clone();
        let server = tonic::transport::Server::builder()
            .add_service(crate::rpc::limited!(RaftServer::from_arc(Arc::new(
                RaftService { slot }
            ))))
            .serve_with_incoming_shutdown(
                crate::rpc::transport::incoming(listener, server_tls),
                async move { server_shutdown.wait().await },
            );
        let (dispatcher_tx, dispatcher) = watch::channel(None);
        let server = tokio::spawn(async move {
            let _ = server.await;
        });
        let leader_loops = tokio::spawn(crate::leader::run(
            raft.clone(),
            node_id.to_string(),
            dispatcher_tx,
            shutdown,
        ));
        Ok(SimManager {
            node_id: node_id.to_string(),
            addr,
            raft,
            dispatcher,
            stop,
            raft_slot,
            server,
            leader_loops,
            _dir: dir,
        })
    }

    pub fn member(&self) -> Member {
        Member {
            node_id: self.node_id.clone(),
            addr: self.addr.clone(),
        }
    }

    /// This manager's running Raft, as its proposer and Raft service see it.
    pub fn raft_slot(&self) -> crate::raft::Slot {
        self.raft_slot.subscribe()
    }

    pub fn store(&self) -> &Store {
        &self.raft.store
    }

    pub fn leads(&self) -> bool {
        RaftNode::leads(&self.raft.metrics())
    }

    /// Join the membership through the managers at `known`, retrying
    /// until the leader has added this one as a voter.
    pub async fn join(&self, known: &[String], timeout: Duration) -> anyhow::Result<()> {
        let me = self.member();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match crate::raft::ask_to_join(&self.raft, known, &me).await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    anyhow::bail!("{} cannot join the membership: {e}", self.node_id)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Stop everything at once, as a crashed process would: the leader
    /// loops, the gRPC server, and Raft.
    pub async fn kill(self) {
        self.raft_slot.send_replace(None);
        self.stop.trigger();
        self.raft.shutdown().await;
        // Let the leader loops end on their own: they empty the dispatcher
        // slot, which tells this manager's workers to look elsewhere.
        let mut loops = self.leader_loops;
        if tokio::time::timeout(Duration::from_secs(10), &mut loops)
            .await
            .is_err()
        {
            loops.abort();
        }
        // A graceful server stop waits for peers to close their
        // connections, which they keep open: cut it instead. Connections
        // already open stay, but find no Raft behind them.
        self.server.abort();
    }
}
