//! This node's agent and its session with the managers: the same on a
//! worker and on a manager (whose own agent talks to the leader too).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::{Handle, Node};
use crate::agent::local::LocalState;
use crate::agent::peers::Peers;
use crate::agent::registries::Registries;
use crate::agent::session::Session;
use crate::agent::{Agent, Runtime};
use crate::executor::Executor;
use crate::pki::NodeTls;
use crate::shutdown::Shutdown;

pub(super) fn run(
    node: &mut Node,
    node_tls: &Arc<NodeTls>,
    managers: Vec<String>,
    shutdown: Shutdown,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let parts = &node.parts;
    let client_tls = crate::tls::client_config(&node_tls.ca_pem, Some(node_tls.cert.clone()))?;
    let local = LocalState::open(
        &crate::data_dir::DataDir::at(&parts.data_dir).agent(),
        parts.keys.codec(),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the agent's state: {e}"))?;
    // Start from the last known assignments: containers are re-adopted even
    // when no manager answers.
    let known = local.load().unwrap_or_default();
    let (assign_tx, assign_rx) = watch::channel(Arc::new(known));
    let (report_tx, report_rx) = mpsc::channel(1024);
    let data_dir = parts.data_dir.clone();
    let images = parts.images.clone();
    let handle = node.handle.clone();
    // Registry access the managers send with the assignments: filled by
    // the session, read by the task workers' pulls; in memory only.
    let registries = Registries::default();
    // Named for the data dir: several daemons may share a machine.
    let files = crate::agent::files::Files::new(&{
        use sha2::Digest;
        let path = parts.data_dir.to_string_lossy().into_owned();
        hex::encode(&sha2::Sha256::digest(path.as_bytes())[..8])
    });
    let peers = Peers::new(client_tls.clone(), parts.images.clone());
    let keeper = parts.image_keeper.clone();
    keeper.attach(assign_rx.clone());
    let gc_keeper = keeper.clone();
    let node_id = node
        .handle
        .identity()
        .map(|i| i.node_id)
        .ok_or_else(|| anyhow::anyhow!("the agent started in no cluster"))?;
    let overlay = crate::agent::nets::OverlayConfig {
        key_file: crate::data_dir::DataDir::at(&parts.data_dir).overlay_key(),
        ifname: crate::tasknet::overlay_name(&node_id),
        port: parts.overlay_port,
        endpoint: parts.overlay.clone(),
    };
    let nets = crate::agent::nets::TaskNets::new(
        crate::data_dir::DataDir::at(&parts.data_dir).bridge_subnet(),
        Some(overlay),
    );
    let nets_subnet = nets.clone();
    let nets_peers = nets.clone();
    let nets_members = nets.clone();
    let nets_describe = nets.clone();
    let describe_dir = parts.data_dir.clone();
    let pulled = keeper.clone();
    let session = Session {
        tls: client_tls,
        managers,
        ca_digest: crate::pki::ca_digest(&node_tls.ca_pem)?,
        local,
        addr: parts.advertise_addr(),
        on_managers: Box::new(move |m| super::save_managers(&data_dir, m)),
        on_role: Box::new(move |role| handle.role_changed(role)),
        on_image_gc: Box::new(move |gc| gc_keeper.set_policy(gc)),
        on_bridge_subnet: Box::new(move |s| nets_subnet.set_subnet(s)),
        on_overlay_peers: Box::new(move |p| nets_peers.set_peers(p)),
        on_net_view: Box::new(move |v| nets_members.set_net_view(v)),
        describe: Box::new(move || {
            let (images, nets) = (images.clone(), nets_describe.clone());
            let data_dir = describe_dir.clone();
            Box::pin(async move {
                let mut d = crate::host::describe(images.as_ref(), &data_dir).await;
                d.overlay = nets.overlay_endpoint().await;
                d
            })
        }),
        redescribe: node
            .redescribe
            .take()
            .ok_or_else(|| anyhow::anyhow!("the agent was started twice"))?,
        daemon_stopping: node.daemon_stopping.clone(),
        registries: registries.clone(),
        files: files.clone(),
        peers: peers.clone(),
    };
    let refresher = node.handle.clone();
    let reporter = peers.clone();
    let peers_report = peers.clone();
    let rt = Runtime {
        exec: parts.exec.clone(),
        images: parts.images.clone(),
        registries,
        // The node still reports and serves its blobs: others may ask it.
        peers: parts.fetch_from_peers.then_some(peers),
        node_name: crate::host::hostname(),
        images_changed: Box::new(move || {
            let h = refresher.clone();
            tokio::spawn(async move { h.refresh().await });
            reporter.report();
            pulled.pulled();
        }),
        nets: Some(nets),
        files: Some(files),
        volumes: Some(crate::agent::volumes::Volumes::at(&parts.data_dir)),
    };
    let agent = Agent::new(rt, report_tx);
    let s = tokio::spawn(session.run(assign_tx, report_rx, shutdown.clone()));
    let r = tokio::spawn(watch_runtime(
        parts.exec.clone(),
        node.handle.clone(),
        shutdown.clone(),
    ));
    let gc = tokio::spawn(keeper.clone().run(shutdown.clone()));
    // Removed images (GC, prune, rm) leave the node's description and its
    // blob report behind: send both again.
    let (h, p, mut stop) = (node.handle.clone(), peers_report, shutdown.clone());
    let told = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.wait() => return,
                _ = keeper.images_removed() => {
                    h.refresh().await;
                    p.report();
                }
            }
        }
    });
    let d = tokio::spawn(watch_devices(
        node.handle.clone(),
        parts.data_dir.clone(),
        shutdown.clone(),
    ));
    let a = tokio::spawn(agent.run(assign_rx, shutdown));
    Ok(tokio::spawn(async move {
        let _ = tokio::join!(s, r, a, gc, told, d);
    }))
}

/// How often the node looks for devices plugged in or taken out.
const DEVICE_CHECK: Duration = Duration::from_secs(10);

/// Describe the node again when its devices change (a USB serial adapter
/// plugged in), or its volumes (made by a task, removed): tasks that wait
/// for a device are then placed on it, and those of a volume where it is.
async fn watch_devices(handle: Handle, data_dir: std::path::PathBuf, mut shutdown: Shutdown) {
    let scan = move || {
        (
            crate::devices::scan(std::path::Path::new("/dev")),
            crate::agent::volumes::Volumes::at(&data_dir).names(),
        )
    };
    let mut seen = tokio::task::spawn_blocking(scan.clone())
        .await
        .unwrap_or_default();
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(DEVICE_CHECK) => {}
        }
        let Ok(now) = tokio::task::spawn_blocking(scan.clone()).await else {
            continue;
        };
        if now != seen {
            info!(
                devices = now.0.len(),
                volumes = now.1.len(),
                "the node's devices or volumes changed"
            );
            seen = now;
            handle.refresh().await;
        }
    }
}

/// How often the agent checks that it reaches its container runtime.
const RUNTIME_CHECK: Duration = Duration::from_secs(2);

/// Describe the node again whenever the container runtime goes away or
/// comes back: while it is away the description says so
/// (`runtime_error`), and the scheduler gives the node no new task.
async fn watch_runtime(exec: Arc<dyn Executor>, handle: Handle, mut shutdown: Shutdown) {
    let mut up = true;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(RUNTIME_CHECK) => {}
        }
        let now_up = matches!(
            tokio::time::timeout(RUNTIME_CHECK, exec.ping()).await,
            Ok(Ok(()))
        );
        if now_up == up {
            continue;
        }
        up = now_up;
        if up {
            info!("the container runtime is back: this node takes tasks again");
        } else {
            warn!("the container runtime cannot be reached: this node takes no new task until it is back");
        }
        handle.refresh().await;
    }
}
