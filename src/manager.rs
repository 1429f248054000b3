//! A manager's components, wiring only: the leader-only loops
//! (orchestrator, scheduler, node liveness), the dispatcher, this node's own
//! agent (in-process session), and the node-to-node gRPC server on
//! `--listen` over mTLS, announced over mDNS.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::agent::Agent;
use crate::api::{Ctx, Identity};
use crate::dispatcher::Dispatcher;
use crate::pki::NodeTls;
use crate::rpc::ca::CaService;
use crate::rpc::dispatch::DispatcherService;
use crate::rpc::node_agent::NodeAgentService;
use crate::rpc::pb::ca_server::CaServer;
use crate::rpc::pb::dispatcher_server::DispatcherServer;
use crate::rpc::pb::node_agent_server::NodeAgentServer;
use crate::shutdown::Shutdown;
use crate::tls::{self, PeerFilter};

pub async fn run(ctx: Arc<Ctx>, identity: Identity, shutdown: Shutdown) -> anyhow::Result<()> {
    crate::daemon::refresh_node(&ctx).await;
    let store = ctx.store.clone();
    let proposer = ctx.proposer.clone();
    let dispatcher = Dispatcher::new(store.clone(), proposer.clone(), shutdown.clone());

    let node_tls =
        Arc::new(NodeTls::load(&ctx.data_dir).context("cannot load this node's TLS material")?);
    // Removed nodes are refused at the handshake.
    let filter_store = store.clone();
    let filter: PeerFilter = Arc::new(move |peer| {
        filter_store
            .read()
            .ok()
            .and_then(|v| v.cluster().ok().flatten())
            .is_none_or(|c| !c.removed_nodes.contains(&peer.node_id))
    });
    let server_tls = tls::server_config(&node_tls.ca_pem, node_tls.cert.clone(), filter)?;
    let listener = TcpListener::bind(&ctx.listen)
        .await
        .with_context(|| format!("cannot listen on {}", ctx.listen))?;
    let port = listener.local_addr()?.port();
    let mut server_shutdown = shutdown.clone();
    let server = tonic::transport::Server::builder()
        .add_service(CaServer::new(CaService {
            store: store.clone(),
            proposer: proposer.clone(),
        }))
        .add_service(DispatcherServer::new(DispatcherService {
            store: store.clone(),
            proposer: proposer.clone(),
            dispatcher: dispatcher.clone(),
        }))
        .add_service(NodeAgentServer::new(NodeAgentService {
            data_dir: ctx.data_dir.clone(),
        }))
        .serve_with_incoming_shutdown(
            crate::rpc::transport::incoming(listener, server_tls),
            async move { server_shutdown.wait().await },
        );
    info!(listen = %ctx.listen, "serving node-to-node gRPC over mTLS");

    // mDNS is best effort: a node without multicast still joins by address.
    let ca_digest = crate::pki::ca_digest(&node_tls.ca_pem).ok();
    let _announcement = ca_digest.and_then(|digest| {
        crate::discovery::announce(&identity.node_id, &identity.cluster_id, &digest, port)
            .map_err(|e| warn!(error = %e, "cannot announce over mDNS"))
            .ok()
    });

    // Leader-only loops: with one manager, this node always leads.
    let mut tasks = vec![
        tokio::spawn(crate::orchestrator::run(
            store.clone(),
            proposer.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(crate::scheduler::run(
            store.clone(),
            proposer.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(crate::dispatcher::watch_nodes(
            store.clone(),
            proposer.clone(),
            dispatcher.heartbeats.clone(),
            identity.node_id.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(async move {
            if let Err(e) = server.await {
                warn!(error = %e, "gRPC server stopped");
            }
        }),
    ];
    tasks.push(tokio::spawn(crate::renewal::run(
        node_tls.clone(),
        crate::renewal::Issuer::Local(store.clone()),
        shutdown.clone(),
    )));
    let assignments = dispatcher.session(&identity.node_id);
    let reports = dispatcher.reporter(&identity.node_id);
    let agent = Agent::new(ctx.exec.clone(), crate::daemon::hostname(), reports);
    tasks.push(tokio::spawn(agent.run(assignments, shutdown.clone())));
    tasks.push(tokio::spawn(crate::daemon::refresh_periodically(
        ctx.clone(),
        shutdown,
    )));
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
