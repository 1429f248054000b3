//! A manager's components, wiring only: its Raft (the replicated store),
//! the node-to-node gRPC server on `--listen` over mTLS (announced over
//! mDNS), the loops that run only while this manager leads (`leader`), and
//! this node's own agent, which, like a worker's, keeps a session with the
//! leader.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{Identity, Launch, Node, Parts};
use crate::pki::NodeTls;
use crate::raft::{Member, RaftNode, RaftService};
use crate::rpc::ca::CaService;
use crate::rpc::compat::V1;
use crate::rpc::dispatch::DispatcherService;
use crate::rpc::node_agent::NodeAgentService;
use crate::rpc::pb::{v1, v2};
use crate::shutdown::Shutdown;
use crate::tls::{self, PeerFilter};

pub(super) async fn run(
    mut node: Node,
    identity: Identity,
    launch: Launch,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let parts = node.parts.clone();
    let store = parts.store.clone();
    let node_tls = Arc::new(
        NodeTls::load(&parts.data_dir, &parts.keys)
            .context("cannot load this node's TLS material")?,
    );
    let client_tls = tls::client_config(&node_tls.ca_pem, Some(node_tls.cert.clone()))?;
    let advertise = parts.advertise_addr();
    // Checked before Raft opens it, to say what to do about a damaged file
    // rather than that Raft could not start.
    let raft_log = crate::data_dir::DataDir::at(&parts.data_dir).raft_log();
    if let Err(e) = crate::data_dir::open_redb(&raft_log) {
        if crate::data_dir::is_damaged(&e) {
            anyhow::bail!(
                "{} is damaged: {e}. {}",
                raft_log.display(),
                crate::data_dir::recovery(&parts.data_dir)
            );
        }
    }
    if launch == Launch::ForceNewCluster {
        crate::raft::force_new_cluster(&parts.data_dir, &store, &identity.node_id, &advertise)
            .await
            .context("cannot force a new cluster")?;
    }
    // After the store stopped on a failed write (a full disk), the state
    // file is opened again, and the Raft is started again below; both fail
    // the same way, and are tried again later, while the cause remains.
    store
        .reopen_if_failed()
        .map_err(|e| StoreStopped(format!("cannot open the state again: {e}")))?;
    let raft = RaftNode::start(
        &parts.data_dir,
        store.clone(),
        &identity.node_id,
        client_tls,
    )
    .await
    .map_err(|e| StoreStopped(format!("cannot start it: {e:#}")))?;
    if launch == Launch::Bootstrap {
        raft.bootstrap(&advertise).await?;
    }
    parts.raft.send_replace(Some(raft.clone()));
    // The components stop with the node's, or when the Raft stops for good
    // (a log write failed: a full disk), so that the supervisor starts
    // them again once the cause may be gone.
    let (stop, components) = crate::shutdown::channel();
    let stopped = raft.raft.metrics();
    let mut outer = shutdown.clone();
    let watcher = tokio::spawn(async move {
        let mut metrics = stopped;
        let fatal = tokio::select! {
            _ = outer.wait() => None,
            r = metrics.wait_for(|m| m.running_state.is_err()) => Some(match r {
                Ok(m) => m.running_state.clone().err().map_or_else(String::new, |e| e.to_string()),
                Err(_) => "it ended".to_string(),
            }),
        };
        stop.trigger();
        fatal
    });
    let result = serve(
        &mut node, &identity, &node_tls, &raft, &advertise, components,
    )
    .await;
    let fatal = if shutdown.is_set() {
        watcher.abort();
        None
    } else {
        watcher.await.ok().flatten()
    };
    parts.raft.send_replace(None);
    raft.shutdown().await;
    result?;
    match fatal {
        Some(why) => Err(StoreStopped(why).into()),
        None => Ok(()),
    }
}

/// The replicated store stopped while the node was running (a log write
/// failed, as on a full disk): the supervisor starts the components again
/// after a pause.
#[derive(Debug, thiserror::Error)]
#[error("the replicated store stopped: {0}")]
pub struct StoreStopped(pub String);

/// A demoted manager keeps no copy of the cluster state: if it is promoted
/// again, it joins the membership afresh and is sent a snapshot.
pub(super) fn forget_replicated_state(parts: &Parts) {
    let dir = crate::data_dir::DataDir::at(&parts.data_dir);
    for f in [dir.raft_log(), dir.raft_snapshot()] {
        let _ = std::fs::remove_file(f);
    }
    if let Err(e) = parts.store.clear() {
        warn!(error = %e, "cannot clear the demoted manager's store");
    }
    info!("demoted: this node's copy of the cluster state is gone");
}

async fn serve(
    node: &mut Node,
    identity: &Identity,
    node_tls: &Arc<NodeTls>,
    raft: &Arc<RaftNode>,
    advertise: &str,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let parts = node.parts.clone();
    let parts = &parts;
    let store = parts.store.clone();
    let proposer = parts.proposer.clone();
    // Removed nodes are refused at the handshake.
    let filter_store = store.clone();
    let filter: PeerFilter = Arc::new(move |peer| {
        filter_store
            .read()
            .ok()
            .and_then(|v| v.cluster().ok().flatten())
            .is_none_or(|c| !c.is_removed(&peer.node_id))
    });
    let server_tls = tls::server_config(&node_tls.ca_pem, node_tls.cert.clone(), filter)?;
    let listener = TcpListener::bind(&parts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", parts.listen))?;
    let port = listener.local_addr()?.port();
    let (dispatcher_tx, dispatcher_rx) = watch::channel(None);
    let mut server_shutdown = shutdown.clone();
    let ca = Arc::new(CaService {
        store: store.clone(),
        proposer: proposer.clone(),
    });
    let dispatch = Arc::new(DispatcherService {
        store: store.clone(),
        dispatcher: dispatcher_rx,
    });
    let node_agent = Arc::new(NodeAgentService {
        data_dir: parts.data_dir.clone(),
        images: parts.images.clone(),
        keeper: parts.image_keeper.clone(),
        exec: parts.exec.clone(),
    });
    let raft_rpc = Arc::new(RaftService {
        slot: parts.raft.subscribe(),
    });
    // Every service in both formats: shoal.v1 for nodes of 254a909.
    let server = tonic::transport::Server::builder()
        .add_service(crate::rpc::limited!(v2::ca_server::CaServer::from_arc(
            ca.clone()
        )))
        .add_service(crate::rpc::limited!(v1::ca_server::CaServer::new(V1(ca))))
        .add_service(crate::rpc::limited!(
            v2::dispatcher_server::DispatcherServer::from_arc(dispatch.clone(),)
        ))
        .add_service(crate::rpc::limited!(
            v1::dispatcher_server::DispatcherServer::new(V1(dispatch))
        ))
        .add_service(crate::rpc::limited!(
            v2::node_agent_server::NodeAgentServer::from_arc(node_agent.clone(),)
        ))
        .add_service(crate::rpc::limited!(
            v1::node_agent_server::NodeAgentServer::new(V1(node_agent))
        ))
        .add_service(crate::rpc::limited!(v2::raft_server::RaftServer::from_arc(
            raft_rpc.clone()
        )))
        .add_service(crate::rpc::limited!(v1::raft_server::RaftServer::from_arc(
            raft_rpc
        )))
        .serve_with_incoming_shutdown(
            crate::rpc::transport::incoming(listener, server_tls),
            async move { server_shutdown.wait().await },
        );
    info!(listen = %parts.listen, "serving node-to-node gRPC over mTLS");

    // mDNS is best effort: a node without multicast still joins by address.
    let ca_digest = crate::pki::ca_digest(&node_tls.ca_pem).ok();
    let _announcement = ca_digest.and_then(|digest| {
        crate::discovery::announce(&identity.node_id, &identity.cluster_id, &digest, port)
            .map_err(|e| warn!(error = %e, "cannot announce over mDNS"))
            .ok()
    });

    let mut tasks = vec![tokio::spawn(async move {
        if let Err(e) = server.await {
            warn!(error = %e, "gRPC server stopped");
        }
    })];
    tasks.push(tokio::spawn(crate::leader::run(
        raft.clone(),
        identity.node_id.clone(),
        dispatcher_tx,
        shutdown.clone(),
    )));
    if !raft.raft.is_initialized().await? {
        tasks.push(tokio::spawn(join_membership(
            parts.clone(),
            raft.clone(),
            Member {
                node_id: identity.node_id.clone(),
                addr: advertise.to_string(),
            },
            shutdown.clone(),
        )));
    }
    tasks.push(tokio::spawn(crate::renewal::run(
        node_tls.clone(),
        crate::renewal::Issuer::Local(store.clone()),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(keep_keys_sealed(
        parts.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(crate::raft::snapshots(
        raft.clone(),
        shutdown.clone(),
    )));
    let mut managers = store
        .read()
        .and_then(|v| v.manager_addrs())
        .unwrap_or_default();
    for m in super::load_managers(&parts.data_dir) {
        if !managers.contains(&m) {
            managers.push(m);
        }
    }
    if !managers.iter().any(|m| m == advertise) {
        managers.insert(0, advertise.to_string());
    }
    tasks.push(super::agent::run(
        node,
        node_tls,
        managers,
        shutdown.clone(),
    )?);
    super::refresh::refresh(parts, &identity.node_id).await;
    let (refresh_parts, node_id) = (parts.clone(), identity.node_id.clone());
    tasks.push(tokio::spawn(async move {
        super::refresh::periodically(&refresh_parts, &node_id, shutdown).await
    }));
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// Keep this manager's keys sealed with the cluster's unlock key while the
/// cluster is autolocked, and in the clear while it is not: every manager
/// follows each change as it applies it.
async fn keep_keys_sealed(parts: Arc<Parts>, mut shutdown: Shutdown) {
    let mut commits = parts.store.watch();
    loop {
        let wanted = parts
            .store
            .read()
            .and_then(|v| v.cluster())
            .map(|c| c.and_then(|c| c.unlock_key));
        match wanted {
            Ok(key) => {
                let key = match key.map(|k| crate::seal::UnlockKey::parse(&k)).transpose() {
                    Ok(key) => key,
                    // Never unseal on a key that cannot be read.
                    Err(e) => {
                        warn!(error = %e, "the cluster's unlock key is damaged; keys left as they are");
                        parts.keys.unlock_key()
                    }
                };
                let was_locked = parts.keys.unlock_key().is_some();
                match parts.keys.seal_with(key.as_ref()) {
                    Ok(()) if was_locked != key.is_some() => info!(
                        autolock = key.is_some(),
                        "this manager's keys are now {}",
                        if key.is_some() {
                            "sealed with the unlock key"
                        } else {
                            "in the clear"
                        }
                    ),
                    Ok(()) => {}
                    Err(e) => warn!(error = %e, "cannot reseal this manager's keys"),
                }
            }
            Err(e) => warn!(error = %e, "cannot read the cluster object"),
        }
        // Wait for a commit that touches the cluster object.
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                c = commits.recv() => match c {
                    Ok(c) if !c.changed.iter().any(|ch| ch.is(crate::store::Kind::Cluster)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    _ => break,
                },
            }
        }
    }
}

/// A manager that joined with the manager token asks the leader to make it
/// a voter, through whichever manager answers, until one does.
async fn join_membership(
    parts: Arc<Parts>,
    raft: Arc<RaftNode>,
    me: Member,
    mut shutdown: Shutdown,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let known = super::load_managers(&parts.data_dir);
        match crate::raft::ask_to_join(&raft, &known, &me).await {
            Ok(()) => {
                info!("this manager is now a voting member of the replicated store");
                return;
            }
            Err(e) => warn!(error = %e, "cannot join the replicated store yet"),
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
