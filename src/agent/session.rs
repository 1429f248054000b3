//! A worker's session with the managers, over mTLS: assignments come down
//! (a full set, then increments), status goes up in batches, heartbeats keep
//! the node ready. It reconnects with backoff to any known manager, and
//! when every known address is stale, looks for managers over mDNS (Pis
//! change IPs). While cut off, the agent keeps running what it has.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::local::LocalState;
use super::registries::Registries;
use crate::rpc::compat::DispatcherClient;
use crate::rpc::messages::*;
use crate::rpc::transport::connect;
use crate::shutdown::Shutdown;
use crate::tls::MANAGER_SERVER_NAME;
use crate::types::{Assignments, NodeDescription, StatusReport, Task, TaskStatus};

/// Status reports are sent at most this often, in one batch.
const STATUS_PERIOD: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Called with the new list when the known managers change.
pub type OnManagers = Box<dyn Fn(&[String]) + Send + Sync>;
/// Called with the role the managers say this node has.
pub type OnRole = Box<dyn Fn(crate::types::NodeRole) + Send + Sync>;
/// Describes this node (hostname, platform, images) for the manager.
pub type Describe =
    Box<dyn Fn() -> futures::future::BoxFuture<'static, NodeDescription> + Send + Sync>;

pub type OnNetView = Box<dyn Fn(crate::types::NetView) + Send + Sync>;

pub struct Session {
    pub tls: Arc<rustls::ClientConfig>,
    /// Known managers; refreshed from the managers and from mDNS.
    pub managers: Vec<String>,
    pub ca_digest: String,
    pub local: LocalState,
    pub addr: String,
    /// Saves the manager list when it changes.
    pub on_managers: OnManagers,
    pub on_role: OnRole,
    /// The cluster's image GC policy, as the managers send it.
    pub on_image_gc: Box<dyn Fn(crate::types::ImageGc) + Send + Sync>,
    /// The subnet of this node's bridge, as the managers allocated it.
    pub on_bridge_subnet: Box<dyn Fn(Option<String>) + Send + Sync>,
    /// The other nodes, for this node's overlay.
    pub on_overlay_peers: Box<dyn Fn(Vec<crate::types::OverlayPeer>) + Send + Sync>,
    /// Other nodes' tasks, and services' virtual IPs, on the networks of
    /// this node's tasks; the cluster's ingress ports.
    pub on_net_view: OnNetView,
    pub describe: Describe,
    /// Asks that the session be opened again with a new description, as
    /// SwarmKit's agent does when its node changed (its images). The
    /// sender is told once a manager has the new description.
    pub redescribe: mpsc::Receiver<oneshot::Sender<()>>,
    /// The daemon's own stop (SIGTERM), as opposed to a stop of this
    /// node's components for a change of role: the session then tells the
    /// manager that the node restarts, so that its tasks are held.
    pub daemon_stopping: Shutdown,
    /// The registry access sent with the assignments, for the task workers'
    /// pulls. In memory only: never saved with the assignments.
    pub registries: Registries,
    /// The secrets and configs sent with the assignments. In memory only.
    pub files: crate::agent::files::Files,
    /// Told when a session opens and ends: the leader learns which image
    /// blobs this node holds, and pulls ask it who holds one.
    pub peers: Arc<crate::agent::peers::Peers>,
}

/// Tells the peers when a session ends, however it ends.
struct Closed<'a>(&'a crate::agent::peers::Peers);

impl Drop for Closed<'_> {
    fn drop(&mut self) {
        self.0.closed();
    }
}

/// How long a stopping daemon waits for the manager to take note.
const RESTART_NOTICE_WITHIN: Duration = Duration::from_secs(2);

/// Why a session with one manager ended.
enum Ended {
    /// It never opened: the manager could not be reached or refused.
    NotOpened(String),
    /// It was open and broke, so the manager was reachable a moment ago.
    Lost(String),
    /// This node changed: open it again with the new description.
    Redescribe,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::NotOpened(e) => write!(f, "{e}"),
            Ended::Lost(e) => write!(f, "session lost: {e}"),
            Ended::Redescribe => write!(f, "this node changed; describing it again"),
        }
    }
}

impl Session {
    pub async fn run(
        mut self,
        assignments: watch::Sender<Assignments>,
        mut reports: mpsc::Receiver<StatusReport>,
        mut shutdown: Shutdown,
    ) {
        let mut pending: HashMap<String, TaskStatus> = HashMap::new();
        let mut waiting = Vec::new();
        let mut backoff = Duration::from_millis(200);
        loop {
            let mut connected = false;
            for addr in self.managers.clone() {
                loop {
                    if shutdown.is_set() {
                        return;
                    }
                    let ended = self
                        .serve_one(
                            &addr,
                            &assignments,
                            &mut reports,
                            &mut pending,
                            &mut waiting,
                            &mut shutdown,
                        )
                        .await;
                    match ended {
                        Ok(()) => return, // shutdown
                        Err(Ended::Redescribe) => {
                            info!(manager = %addr, "this node changed; opening its session again");
                            continue;
                        }
                        Err(e) => {
                            warn!(manager = %addr, error = %e, "session with manager ended");
                            connected |= matches!(e, Ended::Lost(_));
                        }
                    }
                    break;
                }
            }
            if connected {
                backoff = Duration::from_millis(200);
            } else if let Ok(found) =
                crate::discovery::find_managers(&self.ca_digest, Duration::from_secs(2)).await
            {
                let found: Vec<String> = found.iter().map(|a| a.to_string()).collect();
                if !found.is_empty() && found != self.managers {
                    info!(managers = ?found, "found managers over mDNS");
                    self.managers = found;
                    (self.on_managers)(&self.managers);
                }
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Tell the manager this node restarts, in bounded time: the daemon is
    /// stopping, and a manager that does not answer must not hold it up.
    async fn say_restarting(&self, client: &mut DispatcherClient, addr: &str) {
        match tokio::time::timeout(RESTART_NOTICE_WITHIN, client.restarting(Empty {})).await {
            Ok(Ok(_)) => info!(manager = %addr, "told the managers this node restarts"),
            Ok(Err(e)) => {
                warn!(manager = %addr, error = %e.message(), "could not say this node restarts")
            }
            Err(_) => {
                warn!(manager = %addr, "the manager did not take note of the restart in time")
            }
        }
    }

    /// One session with one manager. `Ok` only at shutdown.
    async fn serve_one(
        &mut self,
        addr: &str,
        assignments: &watch::Sender<Assignments>,
        reports: &mut mpsc::Receiver<StatusReport>,
        pending: &mut HashMap<String, TaskStatus>,
        waiting: &mut Vec<oneshot::Sender<()>>,
        shutdown: &mut Shutdown,
    ) -> Result<(), Ended> {
        let channel = connect(addr, self.tls.clone(), MANAGER_SERVER_NAME)
            .await
            .map_err(|e| Ended::NotOpened(format!("connect: {e}")))?;
        let mut client = DispatcherClient::new(channel);
        let req = SessionRequest {
            description: (self.describe)().await,
            addr: self.addr.clone(),
            version: crate::VERSION.to_string(),
        };
        let mut stream = client
            .session(req)
            .await
            .map_err(|e| Ended::NotOpened(format!("open session: {}", e.message())))?
            .into_inner();
        info!(manager = %addr, "session opened");
        self.peers.opened(client.clone());
        let _closed = Closed(&self.peers);
        // The manager stored the description before it opened the session.
        for w in waiting.drain(..) {
            let _ = w.send(());
        }
        let mut known: HashMap<String, Task> = HashMap::new();
        let mut period = Duration::from_secs(1);
        let mut beat = tokio::time::interval(period);
        let mut flush = tokio::time::interval(STATUS_PERIOD);
        // A send waits until the leader has committed the batch (about a
        // batching period and an fsync; seconds without a quorum), so it
        // runs beside the loop, which keeps receiving reports and sending
        // heartbeats. One send at a time; its reports stay pending until
        // it is acknowledged, so a lost session loses none of them.
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sending: Option<StatusSend> = None;
        loop {
            tokio::select! {
                _ = shutdown.wait() => {
                    if self.daemon_stopping.is_set() {
                        self.say_restarting(&mut client, addr).await;
                    }
                    return Ok(());
                }
                Some(w) = self.redescribe.recv() => {
                    waiting.push(w);
                    return Err(Ended::Redescribe);
                }
                msg = stream.message() => match msg {
                    Ok(Some(SessionMessage::Assignments { full, tasks, removed, registries, files })) => {
                        // Before the tasks, so that a worker that starts one
                        // finds the access its pull needs, and its files.
                        if full {
                            known.clear();
                            self.registries.replace(registries);
                            self.files.replace(files);
                        } else {
                            self.registries.update(registries);
                            self.files.update(files);
                        }
                        for id in removed {
                            known.remove(&id);
                        }
                        for t in tasks {
                            known.insert(t.id.clone(), t);
                        }
                        let mut set: Vec<Task> = known.values().cloned().collect();
                        set.sort_by(|a, b| a.id.cmp(&b.id));
                        // What no task still to run uses leaves memory.
                        self.files.retain_used(&set);
                        if let Err(e) = self.local.save(&set) {
                            warn!(error = %e, "cannot save assignments locally");
                        }
                        assignments.send_replace(Arc::new(set));
                    }
                    Ok(Some(SessionMessage::Cluster { managers, heartbeat_period_ms, role, image_gc, bridge_subnet, overlay_peers, remote_members, services, ingress })) => {
                        (self.on_role)(role);
                        (self.on_image_gc)(image_gc);
                        (self.on_bridge_subnet)(bridge_subnet);
                        (self.on_overlay_peers)(overlay_peers);
                        (self.on_net_view)(crate::types::NetView {
                            members: remote_members,
                            services,
                            ingress,
                        });
                        period = Duration::from_millis(heartbeat_period_ms.max(100));
                        beat = tokio::time::interval(period);
                        if !managers.is_empty() && managers != self.managers {
                            self.managers = managers;
                            (self.on_managers)(&self.managers);
                        }
                    }
                    Ok(None) => return Err(Ended::Lost("the manager closed it".into())),
                    Err(e) => return Err(Ended::Lost(e.message().into())),
                },
                _ = beat.tick() => {
                    match client.heartbeat(Empty {}).await {
                        // `cluster update --heartbeat-period` reaches nodes here.
                        Ok(r) => {
                            let p = Duration::from_millis(r.into_inner().period_ms.max(100));
                            if p != period {
                                period = p;
                                beat = tokio::time::interval(period);
                            }
                        }
                        Err(e) => return Err(Ended::Lost(format!("heartbeat: {}", e.message()))),
                    }
                }
                r = reports.recv() => match r {
                    Some(r) => keep_furthest(pending, r),
                    None => return Ok(()),
                },
                _ = flush.tick(), if !pending.is_empty() && sending.is_none() => {
                    // Send all that is queued, not only what the loop saw.
                    while let Ok(r) = reports.try_recv() {
                        keep_furthest(pending, r);
                    }
                    let updates: Vec<StatusReport> = pending
                        .iter()
                        .map(|(id, st)| StatusReport { task_id: id.clone(), status: st.clone() })
                        .collect();
                    let mut client = client.clone();
                    sending = Some(Box::pin(async move {
                        let result = client.update_status(StatusBatch { updates: updates.clone() }).await.map(|_| ());
                        (updates, result)
                    }));
                }
                (sent, result) = async { sending.as_mut().expect("guarded").await }, if sending.is_some() => {
                    sending = None;
                    match result {
                        Ok(()) => forget_sent(pending, sent),
                        Err(e) if e.code() == tonic::Code::PermissionDenied => {
                            warn!(error = %e.message(), "manager refused status; dropping it");
                            forget_sent(pending, sent);
                        }
                        Err(e) => return Err(Ended::Lost(format!("status: {}", e.message()))),
                    }
                }
            }
        }
    }
}

/// A status send in flight: the reports it carries, and how it ended.
type StatusSend = std::pin::Pin<
    Box<dyn std::future::Future<Output = (Vec<StatusReport>, Result<(), tonic::Status>)> + Send>,
>;

/// Drop the reports that were sent, unless a newer one replaced them
/// while the send was in flight.
fn forget_sent(pending: &mut HashMap<String, TaskStatus>, sent: Vec<StatusReport>) {
    for r in sent {
        if pending.get(&r.task_id) == Some(&r.status) {
            pending.remove(&r.task_id);
        }
    }
}

/// A task's report replaces the pending one unless it moves backwards.
fn keep_furthest(pending: &mut HashMap<String, TaskStatus>, r: StatusReport) {
    if pending
        .get(&r.task_id)
        .is_none_or(|cur| cur.state <= r.status.state)
    {
        pending.insert(r.task_id, r.status);
    }
}
