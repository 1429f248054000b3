//! A worker's components, wiring only: the node-to-node gRPC server that
//! managers reach for its tasks' logs, certificate renewal, and the agent
//! with its session with the managers (mTLS, reconnecting).

use std::sync::Arc;

use anyhow::Context;

use super::Node;
use crate::pki::NodeTls;
use crate::rpc::compat::V1;
use crate::rpc::node_agent::NodeAgentService;
use crate::rpc::pb::{v1, v2};
use crate::shutdown::Shutdown;

pub(super) async fn run(mut node: Node, shutdown: Shutdown) -> anyhow::Result<()> {
    let parts = node.parts.clone();
    // Autolock covers managers only: a demoted manager's keys go back in
    // the clear, so that the worker restarts unattended.
    parts
        .keys
        .seal_with(None)
        .context("cannot unseal this node's keys")?;
    let node_tls = Arc::new(
        NodeTls::load(&parts.data_dir, &parts.keys)
            .context("cannot load this node's TLS material")?,
    );
    // Managers reach this node directly for its tasks' logs.
    let server_tls = crate::tls::server_config(
        &node_tls.ca_pem,
        node_tls.cert.clone(),
        crate::tls::allow_all(),
    )?;
    let listener = tokio::net::TcpListener::bind(&parts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", parts.listen))?;
    let mut server_shutdown = shutdown.clone();
    let node_agent = Arc::new(NodeAgentService {
        data_dir: parts.data_dir.clone(),
        images: parts.images.clone(),
        keeper: parts.image_keeper.clone(),
        exec: parts.exec.clone(),
    });
    // Both formats: shoal.v1 for managers of 254a909.
    let server = tonic::transport::Server::builder()
        .add_service(crate::rpc::limited!(
            v2::node_agent_server::NodeAgentServer::from_arc(node_agent.clone(),)
        ))
        .add_service(crate::rpc::limited!(
            v1::node_agent_server::NodeAgentServer::new(V1(node_agent))
        ))
        .serve_with_incoming_shutdown(
            crate::rpc::transport::incoming(listener, server_tls),
            async move { server_shutdown.wait().await },
        );
    let g = tokio::spawn(server);
    let renew_dir = parts.data_dir.clone();
    let r = tokio::spawn(crate::renewal::run(
        node_tls.clone(),
        crate::renewal::Issuer::Remote(Arc::new(move || super::load_managers(&renew_dir))),
        shutdown.clone(),
    ));
    let managers = super::load_managers(&parts.data_dir);
    let agent = super::agent::run(&mut node, &node_tls, managers, shutdown)?;
    let _ = tokio::join!(agent, g, r);
    Ok(())
}
