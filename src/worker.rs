//! A worker's components, wiring only: the session with the managers
//! (mTLS, reconnecting) and the agent that runs what they assign.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{mpsc, watch};

use crate::agent::local::LocalState;
use crate::agent::session::Session;
use crate::agent::Agent;
use crate::api::{Ctx, Identity};
use crate::pki::NodeTls;
use crate::rpc::compat::V1;
use crate::rpc::node_agent::NodeAgentService;
use crate::rpc::pb::{v1, v2};
use crate::shutdown::Shutdown;

pub fn managers_path(data_dir: &Path) -> PathBuf {
    crate::data_dir::DataDir::at(data_dir).managers()
}

/// The managers this node knows, as last saved.
pub fn load_managers(data_dir: &Path) -> Vec<String> {
    std::fs::read(managers_path(data_dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn save_managers(data_dir: &Path, managers: &[String]) {
    let bytes = serde_json::to_vec(managers).unwrap_or_default();
    if let Err(e) = crate::tls::write_file_atomic(&managers_path(data_dir), &bytes, 0o644) {
        tracing::warn!(error = %e, "cannot save the list of managers");
    }
}

pub async fn run(ctx: Arc<Ctx>, _identity: Identity, shutdown: Shutdown) -> anyhow::Result<()> {
    // Autolock covers managers only: a demoted manager's keys go back in
    // the clear, so that the worker restarts unattended.
    ctx.keys
        .seal_with(None)
        .context("cannot unseal this node's keys")?;
    let node_tls = Arc::new(
        NodeTls::load(&ctx.data_dir, &ctx.keys).context("cannot load this node's TLS material")?,
    );
    // Managers reach this node directly for its tasks' logs.
    let server_tls = crate::tls::server_config(
        &node_tls.ca_pem,
        node_tls.cert.clone(),
        crate::tls::allow_all(),
    )?;
    let listener = tokio::net::TcpListener::bind(&ctx.listen)
        .await
        .with_context(|| format!("cannot listen on {}", ctx.listen))?;
    let mut server_shutdown = shutdown.clone();
    let node_agent = Arc::new(NodeAgentService {
        data_dir: ctx.data_dir.clone(),
    });
    // Both formats: shoal.v1 for managers of 254a909.
    let server = tonic::transport::Server::builder()
        .add_service(v2::node_agent_server::NodeAgentServer::from_arc(
            node_agent.clone(),
        ))
        .add_service(v1::node_agent_server::NodeAgentServer::new(V1(node_agent)))
        .serve_with_incoming_shutdown(
            crate::rpc::transport::incoming(listener, server_tls),
            async move { server_shutdown.wait().await },
        );
    let g = tokio::spawn(server);
    let renew_dir = ctx.data_dir.clone();
    let r = tokio::spawn(crate::renewal::run(
        node_tls.clone(),
        crate::renewal::Issuer::Remote(Arc::new(move || load_managers(&renew_dir))),
        shutdown.clone(),
    ));
    let agent = run_agent(&ctx, &node_tls, load_managers(&ctx.data_dir), shutdown)?;
    let _ = tokio::join!(agent, g, r);
    Ok(())
}

/// This node's agent and its session with the managers: the same on a
/// worker and on a manager (whose own agent talks to the leader too).
pub fn run_agent(
    ctx: &Arc<Ctx>,
    node_tls: &Arc<NodeTls>,
    managers: Vec<String>,
    shutdown: Shutdown,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let client_tls = crate::tls::client_config(&node_tls.ca_pem, Some(node_tls.cert.clone()))?;
    let local = LocalState::open(
        &crate::data_dir::DataDir::at(&ctx.data_dir).agent(),
        ctx.keys.codec(),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the agent's state: {e}"))?;
    // Start from the last known assignments: containers are re-adopted even
    // when no manager answers.
    let known = local.load().unwrap_or_default();
    let (assign_tx, assign_rx) = watch::channel(Arc::new(known));
    let (report_tx, report_rx) = mpsc::channel(1024);
    let advertise = ctx.advertise_addr();
    let data_dir = ctx.data_dir.clone();
    let images = ctx.images.clone();
    let (role_ctx, role_tls) = (ctx.clone(), node_tls.clone());
    let changing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let session = Session {
        tls: client_tls,
        managers,
        ca_digest: crate::pki::ca_digest(&node_tls.ca_pem)?,
        local,
        addr: advertise,
        on_managers: Box::new(move |m| save_managers(&data_dir, m)),
        on_role: Box::new(move |role| {
            let current = role_ctx.identity.borrow().as_ref().map(|i| i.role);
            if current.is_some_and(|c| c != role)
                && !changing.swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                let (ctx, tls, changing) = (role_ctx.clone(), role_tls.clone(), changing.clone());
                tokio::spawn(async move {
                    crate::daemon::take_role(&ctx, &tls, role).await;
                    changing.store(false, std::sync::atomic::Ordering::SeqCst);
                });
            }
        }),
        describe: Box::new(move || {
            let images = images.clone();
            Box::pin(async move { crate::daemon::describe_node(images.as_ref()).await })
        }),
    };
    let agent = Agent::new(ctx.exec.clone(), crate::daemon::hostname(), report_tx);
    let s = tokio::spawn(session.run(assign_tx, report_rx, shutdown.clone()));
    let a = tokio::spawn(agent.run(assign_rx, shutdown));
    Ok(tokio::spawn(async move {
        let _ = tokio::join!(s, a);
    }))
}
