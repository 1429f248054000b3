//! `shoal daemon`: wiring only. Opens the store, connects to containerd,
//! serves the control API on the unix socket and, once this node is part of
//! a cluster, starts the cluster components: the leader-only loops
//! (orchestrator, scheduler), the dispatcher and the agent. On SIGTERM it
//! stops them and leaves containers running, to be re-adopted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::net::UnixListener;
use tracing::{error, info, warn};

use crate::api::{self, Ctx, Identity};
use crate::executor::containerd::{Containerd, ContainerdConfig};
use crate::executor::ImageStore;
use crate::keyring::{Keyring, Locked, Opened};
use crate::shutdown::{self, Shutdown};
use crate::store::{Change, Object, Proposer, Store};
use crate::types::*;

/// The daemon's validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub containerd: PathBuf,
    pub namespace: String,
    pub listen: String,
    pub advertise: Option<String>,
    /// Log through a plain `file://` URI instead of shoal's log driver.
    pub log_to_file: bool,
    /// Serve Prometheus `/metrics` here, if set.
    pub metrics_addr: Option<String>,
}

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    if cfg.namespace == "default" {
        bail!("--containerd-namespace default is refused: it belongs to other containerd clients");
    }
    create_private_dir(&cfg.data_dir)?;
    // A locked manager binds its socket early, to serve `unlock`, and keeps
    // it: clients that connect meanwhile wait in the backlog.
    let mut bound = None;
    let keys = match Keyring::open(&cfg.data_dir)? {
        Opened::Ready(keys) => keys,
        Opened::Locked(locked) => {
            let listener = bind_socket(&cfg.socket)?.into_std()?;
            let dup = UnixListener::from_std(listener.try_clone()?)?;
            match wait_for_unlock(&cfg.socket, dup, locked).await? {
                Some(keys) => {
                    bound = Some(UnixListener::from_std(listener)?);
                    keys
                }
                None => return Ok(()),
            }
        }
    };
    let keys = Arc::new(keys);
    let store = Store::open(
        &crate::data_dir::DataDir::at(&cfg.data_dir).state(),
        keys.codec(),
    )
    .with_context(|| format!("cannot open the store in {}", cfg.data_dir.display()))?;
    // Writes go through this manager's Raft, once its components run it.
    let (raft, slot) = tokio::sync::watch::channel(None);
    let proposer: Arc<dyn Proposer> = Arc::new(crate::raft::RaftProposer { slot });
    let containerd = Arc::new(
        Containerd::connect(ContainerdConfig {
            socket: cfg.containerd.clone(),
            namespace: cfg.namespace.clone(),
            data_dir: cfg.data_dir.clone(),
            log_binary: std::env::current_exe().context("cannot find the shoal binary")?,
            log_max_bytes: 10 * 1024 * 1024,
            node_name: hostname(),
            log_to_file: cfg.log_to_file,
        })
        .await?,
    );

    let identity = load_identity(&cfg.data_dir)?;
    let manager = identity
        .as_ref()
        .is_some_and(|i| i.role == NodeRole::Manager);
    if manager
        && !crate::data_dir::DataDir::at(&cfg.data_dir)
            .raft_log()
            .exists()
    {
        bail!(
            "{} names a cluster but there is no raft.redb: the data dir is damaged",
            identity_path(&cfg.data_dir).display()
        );
    }
    let (identity_tx, _) = tokio::sync::watch::channel(identity);
    let (components_running, _) = tokio::sync::watch::channel(false);
    let ctx = Arc::new(Ctx {
        store,
        keys,
        proposer,
        exec: containerd.clone(),
        images: containerd,
        data_dir: cfg.data_dir.clone(),
        advertise: cfg.advertise.clone(),
        listen: cfg.listen.clone(),
        identity: identity_tx,
        components_running,
        raft,
        bootstrap: Default::default(),
        force_new_cluster: Default::default(),
    });

    let listener = match bound {
        Some(l) => l,
        None => bind_socket(&cfg.socket)?,
    };
    let (trigger, shutdown) = shutdown::channel();
    let mut api_shutdown = shutdown.clone();
    let server = axum::serve(listener, api::router(ctx.clone()))
        .with_graceful_shutdown(async move { api_shutdown.wait().await });
    let api_task = tokio::spawn(async move { server.await });
    let cluster_task = tokio::spawn(start_cluster(ctx.clone(), shutdown.clone()));
    if let Some(addr) = cfg.metrics_addr.clone() {
        let (store, shutdown) = (ctx.store.clone(), shutdown.clone());
        let raft = ctx.raft.subscribe();
        tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(addr, store, raft, shutdown).await {
                error!(error = format!("{e:#}"), "metrics endpoint failed");
            }
        });
    }
    info!(socket = %cfg.socket.display(), "shoal daemon ready");
    crate::notify::ready();

    wait_for_signal().await;
    crate::notify::stopping();
    info!("stopping; containers keep running");
    trigger.trigger();
    let _ = api_task.await;
    let _ = cluster_task.await;
    let _ = std::fs::remove_file(&cfg.socket);
    Ok(())
}

/// A manager of an autolocked cluster starts with its keys sealed: serve
/// only `shoal unlock` until it is given the key. None: stopped by a signal.
async fn wait_for_unlock(
    socket: &Path,
    listener: UnixListener,
    locked: Locked,
) -> anyhow::Result<Option<Keyring>> {
    warn!("this manager is locked: its keys are sealed; run `shoal unlock` and give it the unlock key");
    // Started, as far as systemd is concerned: it serves `unlock`.
    crate::notify::ready();
    tokio::select! {
        keys = api::serve_locked(listener, locked) => {
            info!("unlocked");
            Ok(Some(keys?))
        }
        _ = wait_for_signal() => {
            let _ = std::fs::remove_file(socket);
            Ok(None)
        }
    }
}

/// Wait until this node is in a cluster, then run its components until
/// shutdown.
async fn start_cluster(ctx: Arc<Ctx>, mut shutdown: Shutdown) {
    let mut ids = ctx.identity.subscribe();
    loop {
        let identity = tokio::select! {
            _ = shutdown.wait() => return,
            id = ids.wait_for(|i| i.is_some()) => match id {
                Ok(id) => id.clone().expect("waited for Some"),
                Err(_) => return,
            },
        };
        // The components stop on daemon shutdown, or when the node leaves
        // its cluster (its identity is cleared).
        let (trigger, components) = shutdown::channel();
        let current = Some(identity.clone());
        let run = async {
            let result = match identity.role {
                NodeRole::Manager => crate::manager::run(ctx.clone(), identity, components).await,
                NodeRole::Worker => crate::worker::run(ctx.clone(), identity, components).await,
            };
            if let Err(e) = result {
                // The API keeps serving, so the operator can see what is wrong.
                error!(
                    error = format!("{e:#}"),
                    "cluster components failed to start"
                );
            }
        };
        tokio::pin!(run);
        ctx.components_running.send_replace(true);
        let mut ended = false;
        tokio::select! {
            _ = &mut run => ended = true,
            _ = shutdown.wait() => {}
            // Left the cluster, or promoted/demoted.
            _ = ids.wait_for(|i| *i != current) => {}
        }
        trigger.trigger();
        if !ended {
            run.await;
        }
        ctx.components_running.send_replace(false);
        if shutdown.is_set() {
            return;
        }
        // Failed to start: wait for the identity to change before retrying.
        if ended {
            let _ = ids.wait_for(|i| *i != current).await;
        }
    }
}

/// The managers made this node a manager or a worker: get a certificate
/// for the new role, then restart the components as that role (see
/// `start_cluster`). Retried until it works, as the node cannot do its new
/// job without the certificate.
pub async fn take_role(ctx: &Arc<Ctx>, node_tls: &Arc<crate::pki::NodeTls>, role: NodeRole) {
    let Some(mut identity) = ctx.identity.borrow().clone() else {
        return;
    };
    info!(
        role = role.as_str(),
        "this node's role changed; renewing its certificate"
    );
    let dir = ctx.data_dir.clone();
    let issuer =
        crate::renewal::Issuer::Remote(Arc::new(move || crate::worker::load_managers(&dir)));
    while let Err(e) = crate::renewal::renew(node_tls, &issuer).await {
        warn!(error = %e, "cannot get a certificate for the new role; retrying");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    identity.role = role;
    if let Err(e) = save_identity(&ctx.data_dir, &identity) {
        error!(error = %e, "cannot save the node's new role");
        return;
    }
    ctx.identity.send_replace(Some(identity));
}

pub async fn refresh_periodically(ctx: Arc<Ctx>, mut shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => refresh_node(&ctx).await,
        }
    }
}

/// What this machine is: hostname, platform, size and local images.
pub async fn describe_node(images: &dyn ImageStore) -> NodeDescription {
    let images = match images.images().await {
        Ok(i) => i,
        Err(e) => {
            warn!(error = %e, "cannot list images");
            Vec::new()
        }
    };
    NodeDescription {
        hostname: hostname(),
        platform: Platform::local(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        memory_bytes: memory_bytes(),
        images,
    }
}

/// Write this node's description and readiness to the store, if they
/// changed. Writes are skipped when nothing changed: on an SD card every
/// write counts.
pub async fn refresh_node(ctx: &Ctx) {
    let Ok(identity) = ctx.identity() else { return };
    let description = describe_node(ctx.images.as_ref()).await;
    for _ in 0..5 {
        let node = match ctx.store.read().and_then(|v| v.node(&identity.node_id)) {
            Ok(Some(n)) => n,
            Ok(None) => return warn!(node = %identity.node_id, "this node is not in the store"),
            Err(e) => return warn!(error = %e, "cannot read node"),
        };
        let mut updated = node.clone();
        updated.description = description.clone();
        updated.status.state = NodeState::Ready;
        updated.version = crate::VERSION.to_string();
        // A manager restarted on a new address (a Pi that changed IP) must
        // not keep handing out the old one to its workers.
        let addr = ctx
            .advertise
            .clone()
            .or_else(|| crate::netaddr::detect_advertise(&ctx.listen).ok());
        if let Some(addr) = addr {
            updated.status.addr = addr;
        }
        if updated == node {
            return;
        }
        match ctx
            .proposer
            .propose(vec![Change::Update(Object::Node(updated))])
            .await
        {
            Ok(_) => return,
            Err(e) => warn!(error = %e, "node update failed; retrying"),
        }
    }
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        })
        .unwrap_or(0)
}

fn identity_path(data_dir: &Path) -> PathBuf {
    crate::data_dir::DataDir::at(data_dir).identity()
}

fn load_identity(data_dir: &Path) -> anyhow::Result<Option<Identity>> {
    let path = identity_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("cannot read {}", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Written atomically (temp file + rename): a crash leaves the old file or
/// the new one, never half of one.
pub fn save_identity(data_dir: &Path, identity: &Identity) -> std::io::Result<()> {
    let path = identity_path(data_dir);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(identity)?)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Bind the control socket with mode 0600. A stale socket file (no daemon
/// behind it) is replaced; a live one means another daemon runs.
fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another shoal daemon is serving {}", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    // Bind under a umask that leaves the socket private from the start.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    listener.with_context(|| format!("cannot listen on {}", path.display()))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
