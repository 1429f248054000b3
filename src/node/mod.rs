//! The node's life: which cluster it is in, in which role, and the
//! components that role runs (a manager's Raft, gRPC server and leader
//! loops; every node's agent). One supervisor owns all of it. The control
//! API and the agent's session ask it for a change by sending a command
//! (start, leave, relaunch, a new role), so that nothing else starts or
//! stops the components, and one change ends before the next begins.

mod agent;
mod identity;
mod leave;
mod manager;
mod refresh;
mod worker;

pub use identity::{load as load_identity, load_managers, save_managers, Identity};
pub use leave::Left;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::executor::{Executor, ImageStore};
use crate::keyring::Keyring;
use crate::raft::RaftNode;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::store::{Proposer, Store};
use crate::types::NodeRole;

/// What the node's components share, opened once by the daemon.
pub struct Parts {
    pub store: Store,
    /// This node's keys at rest (the data key, and the sealing of keys
    /// when the cluster is autolocked).
    pub keys: Arc<Keyring>,
    /// The one write path: through this manager's Raft, once it runs.
    pub proposer: Arc<dyn Proposer>,
    /// The node's containers (containerd, or a simulated runtime).
    pub exec: Arc<dyn Executor>,
    /// The node's images, behind the same runtime.
    pub images: Arc<dyn ImageStore>,
    /// The node's images as a whole: in use or not, GC, prune.
    pub image_keeper: Arc<crate::agent::images::ImageKeeper>,
    pub data_dir: PathBuf,
    /// `--advertise` as given on the daemon's command line.
    pub advertise: Option<String>,
    pub listen: String,
    /// `--fetch-from-peers`: task pulls ask other nodes first.
    pub fetch_from_peers: bool,
    /// This manager's running Raft, while its components run.
    pub raft: watch::Sender<Option<Arc<RaftNode>>>,
    /// `--overlay-port`: the UDP port of the node's WireGuard (0: any).
    pub overlay_port: u16,
    /// The node's overlay endpoint, once its agent has made the overlay:
    /// part of every description the node writes of itself.
    pub overlay: Arc<std::sync::OnceLock<crate::types::OverlayEndpoint>>,
}

impl Parts {
    /// The managers' membership, through this manager's Raft.
    pub fn membership(&self) -> crate::raft::Membership {
        crate::raft::Membership::new(self.raft.subscribe())
    }

    /// The address this node advertises: `--advertise`, or detected.
    pub fn advertise_addr(&self) -> String {
        self.advertise.clone().unwrap_or_else(|| {
            crate::netaddr::detect_advertise(&self.listen).unwrap_or_else(|_| self.listen.clone())
        })
    }
}

/// How a manager's components start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// As they were: after a restart, a join or a role change.
    Resume,
    /// `init`: start a new one-member Raft.
    Bootstrap,
    /// `init --force-new-cluster`: make this manager the only member of
    /// its Raft first, keeping its copy of the cluster state.
    ForceNewCluster,
}

/// Why the supervisor refused a command.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("this node is already part of cluster {cluster_id} (node {node_id})")]
    AlreadyInCluster { cluster_id: String, node_id: String },
    #[error("this node is not part of a cluster")]
    NotInCluster,
    #[error("this node is a manager: it holds the cluster's state and cannot leave (demote it first with `shoal node demote`; the cluster's only manager cannot leave)")]
    ManagerCannotLeave,
    #[error("the daemon is stopping")]
    Stopping,
    #[error("{0}")]
    Failed(String),
}

enum Command {
    /// Join a cluster as `identity` (after `init` or `join` made it).
    Start {
        identity: Identity,
        launch: Launch,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    /// Leave the cluster: stop, remove the containers and forget it all.
    Leave {
        force: bool,
        reply: oneshot::Sender<Result<Left, NodeError>>,
    },
    /// Restart the components the way `launch` says.
    Relaunch {
        launch: Launch,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    /// The managers gave this node another role.
    RoleChanged(NodeRole),
    /// The certificate for the new role is in place: restart as it.
    RoleReady(NodeRole),
    /// The node's images changed: tell the managers.
    Refresh(oneshot::Sender<()>),
}

/// What the API and the agent hold: the node's identity, and a way to ask
/// the supervisor for a change.
#[derive(Clone)]
pub struct Handle {
    identity: watch::Receiver<Option<Identity>>,
    failure: watch::Receiver<Option<String>>,
    commands: mpsc::Sender<Command>,
}

impl Handle {
    /// Who this node is; None while it is in no cluster.
    pub fn identity(&self) -> Option<Identity> {
        self.identity.borrow().clone()
    }

    /// Why the components of this node's role failed to start, if they did:
    /// the API says it rather than that they do not run.
    pub fn failure(&self) -> Option<String> {
        self.failure.borrow().clone()
    }

    /// Become `identity` and start its components. Refused when the node
    /// is in a cluster already.
    pub async fn start(&self, identity: Identity, launch: Launch) -> Result<(), NodeError> {
        self.ask(|reply| Command::Start {
            identity,
            launch,
            reply,
        })
        .await
    }

    /// Leave the cluster; `force` does not wait for containers to stop.
    pub async fn leave(&self, force: bool) -> Result<Left, NodeError> {
        self.ask(|reply| Command::Leave { force, reply }).await
    }

    /// Stop the components and start them again as `launch` says.
    pub async fn relaunch(&self, launch: Launch) -> Result<(), NodeError> {
        self.ask(|reply| Command::Relaunch { launch, reply }).await
    }

    /// Tell the managers what this node now has; returns once they know,
    /// or after `REFRESH_WAIT` when no manager answers (they learn it at
    /// the next session).
    pub async fn refresh(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Refresh(tx)).await.is_ok() {
            let _ = tokio::time::timeout(REFRESH_WAIT, rx).await;
        }
    }

    /// Called from the agent's session: never blocks it.
    fn role_changed(&self, role: NodeRole) {
        let _ = self.commands.try_send(Command::RoleChanged(role));
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, NodeError>>) -> Command,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .await
            .map_err(|_| NodeError::Stopping)?;
        rx.await.map_err(|_| NodeError::Stopping)?
    }
}

/// How long `refresh` waits for the managers to have the news.
const REFRESH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long after the replicated store stopped (a full disk, say) the
/// supervisor starts it again; again and again, until it runs.
const RELAUNCH_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// What the components of a role are given.
struct Node {
    parts: Arc<Parts>,
    handle: Handle,
    /// For the agent's session (taken by `agent::run`).
    redescribe: Option<mpsc::Receiver<oneshot::Sender<()>>>,
    /// The daemon's stop, which the agent's session tells the managers of.
    daemon_stopping: Shutdown,
}

/// The components of the current role, running.
struct Running {
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<()>,
}

pub struct Supervisor {
    parts: Arc<Parts>,
    identity: watch::Sender<Option<Identity>>,
    failure: watch::Sender<Option<String>>,
    commands: mpsc::Receiver<Command>,
    handle: Handle,
    running: Option<Running>,
    /// The role whose certificate is being fetched, if any.
    changing_to: Option<NodeRole>,
    /// Asks the running agent's session to describe this node again.
    redescribe: Option<mpsc::Sender<oneshot::Sender<()>>>,
    /// The daemon's stop, once `run` is given it.
    daemon_stopping: Option<Shutdown>,
}

impl Supervisor {
    pub fn new(parts: Arc<Parts>, identity: Option<Identity>) -> (Supervisor, Handle) {
        let (identity, identity_rx) = watch::channel(identity);
        let (failure, failure_rx) = watch::channel(None);
        // A few commands at most wait at once: the API's are one per
        // request, and a role change is sent again with the next message.
        let (tx, commands) = mpsc::channel(16);
        let handle = Handle {
            identity: identity_rx,
            failure: failure_rx,
            commands: tx,
        };
        let supervisor = Supervisor {
            parts,
            identity,
            failure,
            commands,
            handle: handle.clone(),
            running: None,
            changing_to: None,
            redescribe: None,
            daemon_stopping: None,
        };
        (supervisor, handle)
    }

    /// Run the node until shutdown: its components, if it is in a cluster,
    /// and every change it is asked for.
    pub async fn run(mut self, mut shutdown: Shutdown) {
        self.daemon_stopping = Some(shutdown.clone());
        if self.current().is_some() {
            self.launch(Launch::Resume);
        }
        loop {
            let command = tokio::select! {
                _ = shutdown.wait() => break,
                c = self.commands.recv() => match c {
                    Some(c) => c,
                    None => break,
                },
            };
            self.handle_command(command, &shutdown).await;
        }
        self.stop().await;
    }

    fn current(&self) -> Option<Identity> {
        self.identity.borrow().clone()
    }

    async fn handle_command(&mut self, command: Command, shutdown: &Shutdown) {
        match command {
            Command::Start {
                identity,
                launch,
                reply,
            } => {
                let _ = reply.send(self.start(identity, launch));
            }
            Command::Leave { force, reply } => {
                let _ = reply.send(self.leave(force).await);
            }
            Command::Relaunch { launch, reply } => {
                let result = match self.current() {
                    None => Err(NodeError::NotInCluster),
                    Some(_) => {
                        self.stop().await;
                        self.launch(launch);
                        Ok(())
                    }
                };
                let _ = reply.send(result);
            }
            Command::RoleChanged(role) => self.role_changed(role, shutdown),
            Command::RoleReady(role) => self.take_role(role).await,
            Command::Refresh(done) => match self.current() {
                Some(identity) if identity.role == NodeRole::Manager && self.running.is_some() => {
                    let parts = self.parts.clone();
                    tokio::spawn(async move {
                        refresh::refresh(&parts, &identity.node_id).await;
                        let _ = done.send(());
                    });
                }
                // A worker has no store to write to: its session opens
                // again, and the new description goes with it.
                Some(_) => {
                    if let Some(session) = &self.redescribe {
                        let _ = session.try_send(done);
                    }
                }
                None => {}
            },
        }
    }

    fn start(&mut self, identity: Identity, launch: Launch) -> Result<(), NodeError> {
        if let Some(id) = self.current() {
            return Err(NodeError::AlreadyInCluster {
                cluster_id: id.cluster_id,
                node_id: id.node_id,
            });
        }
        identity::save(&self.parts.data_dir, &identity)
            .map_err(|e| NodeError::Failed(format!("cannot save node identity: {e}")))?;
        self.identity.send_replace(Some(identity));
        self.launch(launch);
        Ok(())
    }

    async fn leave(&mut self, force: bool) -> Result<Left, NodeError> {
        let identity = self.current().ok_or(NodeError::NotInCluster)?;
        if identity.role == NodeRole::Manager {
            return Err(NodeError::ManagerCannotLeave);
        }
        self.stop().await;
        self.identity.send_replace(None);
        leave::forget(&self.parts, identity, force).await
    }

    /// Fetch a certificate for the new role, beside the running
    /// components: the node cannot do its new job without it, so this is
    /// retried until it works or the daemon stops.
    fn role_changed(&mut self, role: NodeRole, shutdown: &Shutdown) {
        let current = self.current().map(|i| i.role);
        if current.is_none_or(|c| c == role) || self.changing_to == Some(role) {
            return;
        }
        info!(
            role = role.as_str(),
            "this node's role changed; renewing its certificate"
        );
        self.changing_to = Some(role);
        let (parts, handle, mut shutdown) =
            (self.parts.clone(), self.handle.clone(), shutdown.clone());
        tokio::spawn(async move {
            let dir = parts.data_dir.clone();
            let issuer = crate::renewal::Issuer::Remote(Arc::new(move || load_managers(&dir)));
            loop {
                let renewed = match crate::pki::NodeTls::load(&parts.data_dir, &parts.keys) {
                    Ok(tls) => crate::renewal::renew(&tls, &issuer).await,
                    Err(e) => Err(e.into()),
                };
                match renewed {
                    Ok(()) => break,
                    Err(e) => {
                        warn!(error = %e, "cannot get a certificate for the new role; retrying")
                    }
                }
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
            let _ = handle.commands.send(Command::RoleReady(role)).await;
        });
    }

    /// Restart the components as the new role. A demoted manager keeps no
    /// copy of the cluster state.
    async fn take_role(&mut self, role: NodeRole) {
        self.changing_to = None;
        let Some(mut identity) = self.current() else {
            return;
        };
        if identity.role == role {
            return;
        }
        self.stop().await;
        let was_manager = identity.role == NodeRole::Manager;
        identity.role = role;
        if let Err(e) = identity::save(&self.parts.data_dir, &identity) {
            error!(error = %e, "cannot save the node's new role");
        }
        self.identity.send_replace(Some(identity));
        if was_manager {
            manager::forget_replicated_state(&self.parts);
        }
        self.launch(Launch::Resume);
    }

    fn launch(&mut self, launch: Launch) {
        let Some(identity) = self.current() else {
            return;
        };
        let (trigger, components) = shutdown::channel();
        let (redescribe, requests) = mpsc::channel(4);
        self.redescribe = Some(redescribe);
        let node = Node {
            parts: self.parts.clone(),
            handle: self.handle.clone(),
            redescribe: Some(requests),
            // Never set outside `run` (a dropped trigger is not a stop).
            daemon_stopping: self
                .daemon_stopping
                .clone()
                .unwrap_or_else(|| shutdown::channel().1),
        };
        self.failure.send_replace(None);
        let failure = self.failure.clone();
        let handle = self.handle.clone();
        let task = tokio::spawn(async move {
            let result = match identity.role {
                NodeRole::Manager => manager::run(node, identity, launch, components).await,
                NodeRole::Worker => worker::run(node, components).await,
            };
            if let Err(e) = result {
                let stopped = e.downcast_ref::<manager::StoreStopped>().is_some();
                // The API keeps serving, so the operator can see what is
                // wrong; the next change of role or identity retries.
                let e = format!("{e:#}");
                error!(error = %e, "cluster components failed to start");
                failure.send_replace(Some(e));
                if stopped {
                    // Asked from a task of its own: the supervisor waits for
                    // this one to end before it launches again.
                    tokio::spawn(async move {
                        tokio::time::sleep(RELAUNCH_AFTER).await;
                        info!("starting the replicated store again");
                        let _ = handle.relaunch(Launch::Resume).await;
                    });
                }
            }
        });
        self.running = Some(Running { trigger, task });
    }

    async fn stop(&mut self) {
        self.redescribe = None;
        if let Some(running) = self.running.take() {
            running.trigger.trigger();
            let _ = running.task.await;
        }
    }
}
