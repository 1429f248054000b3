//! `shoal daemon`: wiring only. Opens the store, connects to containerd,
//! starts the node's supervisor (`node`, which runs the cluster components
//! once this node is in a cluster) and serves the control API on the unix
//! socket. On SIGTERM it stops them and leaves containers running, to be
//! re-adopted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::net::UnixListener;
use tracing::{error, info, warn};

use crate::api::{self, Ctx};
use crate::executor::containerd::{Containerd, ContainerdConfig};
use crate::keyring::{Keyring, Locked, Opened};
use crate::node::{Parts, Supervisor};
use crate::shutdown;
use crate::store::{Proposer, Store};
use crate::types::NodeRole;

/// How long a stop may take before the daemon exits regardless.
const STOP_WITHIN: std::time::Duration = std::time::Duration::from_secs(20);

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
    /// Ask other nodes for image blobs before the registry.
    pub fetch_from_peers: bool,
    /// The UDP port of the node's WireGuard overlay (0: any free one).
    pub overlay_port: u16,
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
    let store = match Store::open(
        &crate::data_dir::DataDir::at(&cfg.data_dir).state(),
        keys.codec(),
    ) {
        Ok(store) => store,
        Err(e @ crate::store::StoreError::Damaged { .. }) => {
            bail!("{e}. {}", crate::data_dir::recovery(&cfg.data_dir))
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot open the store in {}", cfg.data_dir.display()))
        }
    };
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
            node_name: crate::host::hostname(),
            log_to_file: cfg.log_to_file,
        })
        .await?,
    );

    let identity = crate::node::load_identity(&cfg.data_dir)?;
    let manager = identity
        .as_ref()
        .is_some_and(|i| i.role == NodeRole::Manager);
    let dir = crate::data_dir::DataDir::at(&cfg.data_dir);
    if manager && !dir.raft_log().exists() {
        bail!(
            "{} names a cluster but there is no raft.redb: the data dir is damaged",
            dir.identity().display()
        );
    }
    let parts = Arc::new(Parts {
        store,
        keys,
        proposer,
        exec: containerd.clone(),
        image_keeper: crate::agent::images::ImageKeeper::new(containerd.clone()),
        images: containerd,
        data_dir: cfg.data_dir.clone(),
        advertise: cfg.advertise.clone(),
        listen: cfg.listen.clone(),
        fetch_from_peers: cfg.fetch_from_peers,
        raft,
        overlay_port: cfg.overlay_port,
        overlay: Default::default(),
    });
    let (supervisor, node) = Supervisor::new(parts.clone(), identity);
    let events = crate::events::EventLog::new();
    let ctx = Arc::new(Ctx {
        parts,
        node,
        events: events.clone(),
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
    let node_task = tokio::spawn(supervisor.run(shutdown.clone()));
    tokio::spawn(events.record(ctx.store.clone(), shutdown.clone()));
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
    // Every step of a stop is bounded: a component stuck on a peer that is
    // gone must not keep the daemon (and systemd's restart) waiting.
    let stopped = tokio::time::timeout(STOP_WITHIN, async {
        let _ = api_task.await;
        let _ = node_task.await;
    })
    .await;
    if stopped.is_err() {
        warn!("the node's components did not stop within {STOP_WITHIN:?}; stopping anyway");
    }
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
