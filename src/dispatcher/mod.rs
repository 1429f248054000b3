//! The dispatcher (every manager): one session per node. A session carries
//! the node's assignments down (the full set of its tasks, re-sent when it
//! changes) and the node's task status up, batched with every other node's
//! into store writes.
//!
//! The node is named by the caller: a remote node by its mTLS certificate
//! (`rpc::dispatch`), the manager's own agent by its identity. A status
//! report for a task that is not assigned to that node is dropped.

mod assignments;
mod blobs;
mod heartbeat;
mod session;
mod status;

pub use blobs::{Sources, HOLD, WAIT_AGAIN};
pub use heartbeat::{watch_nodes, Heartbeats};
pub use session::{check_member, heartbeat_period, SessionEnd};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;

use crate::shutdown::Shutdown;
use crate::store::{Proposer, Store};

pub use crate::types::{Assignments, StatusReport};

#[derive(Clone)]
pub struct Dispatcher {
    store: Store,
    proposer: Arc<dyn Proposer>,
    shutdown: Shutdown,
    /// Each node's status channel. std Mutex: never held across .await.
    reporters: Arc<Mutex<HashMap<String, mpsc::Sender<StatusReport>>>>,
    /// The one status writer all nodes' channels feed, started on first use.
    writer: Arc<OnceLock<mpsc::Sender<status::NodeReports>>>,
    /// Every node's assignments, kept once for all sessions.
    hub: Arc<assignments::Hub>,
    pub heartbeats: Arc<Heartbeats>,
    /// Which node holds which image blob (leader's memory only).
    /// std Mutex: never held across .await.
    blobs: Arc<Mutex<blobs::BlobIndex>>,
    /// Told when a node reports blobs it now holds.
    blob_added: Arc<tokio::sync::Notify>,
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("task {task} is not assigned to node {node}")]
    NotAssigned { task: String, node: String },
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("the status was not written (this manager may have stopped leading); send it again")]
    NotWritten,
}

pub use crate::types::NetView;

impl Dispatcher {
    pub fn new(store: Store, proposer: Arc<dyn Proposer>, shutdown: Shutdown) -> Dispatcher {
        Dispatcher {
            store,
            proposer,
            shutdown,
            reporters: Default::default(),
            writer: Default::default(),
            hub: Default::default(),
            heartbeats: Arc::new(Heartbeats::default()),
            blobs: Default::default(),
            blob_added: Default::default(),
        }
    }

    /// The proposer this dispatcher writes with (the leader's).
    pub fn proposer(&self) -> &Arc<dyn Proposer> {
        &self.proposer
    }

    /// Resolves when this dispatcher stops (its manager stops leading).
    pub fn ended(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// A watch of `node_id`'s assignments: the full set, re-sent when it
    /// changes.
    pub fn session(&self, node_id: &str) -> watch::Receiver<Assignments> {
        self.hub.session(node_id, &self.store, &self.shutdown)
    }

    /// What `node_id` needs to know of the networks of its tasks: for each,
    /// the addresses of its tasks on other nodes, and the services with a
    /// virtual IP on it with their tasks' addresses; and, for every node,
    /// the ports published in ingress mode with the tasks behind them.
    pub fn net_view(&self, node_id: &str) -> NetView {
        let networks = self.hub.networks_of(node_id);
        let catalog = match self.hub.catalog(&self.store) {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot read services for the nodes' networks");
                Default::default()
            }
        };
        let services = &catalog.services;
        let ingress = self.hub.ingress_views(services);
        if networks.is_empty() {
            return NetView {
                ingress,
                ..NetView::default()
            };
        }
        NetView {
            members: self.hub.remote_members(node_id, &catalog.plain),
            services: self.hub.service_views(&networks, services),
            ingress,
        }
    }

    /// The sender for `node_id`'s status reports (the local agent's path;
    /// reports are checked again when they are written).
    pub fn reporter(&self, node_id: &str) -> mpsc::Sender<StatusReport> {
        let mut map = self.reporters.lock().expect("reporters lock");
        if let Some(tx) = map.get(node_id).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(status::forward(node_id.to_string(), rx, self.writer()));
        map.insert(node_id.to_string(), tx.clone());
        tx
    }

    /// A remote node's reports. Refused whole if any names a task that is
    /// assigned to another node: the caller is the node in its certificate.
    /// A report of a task that is no node's (gone, or not yet assigned) is
    /// dropped when it is applied.
    /// Returns once they are committed, so the node keeps (and sends again)
    /// whatever was not.
    pub async fn report(
        &self,
        node_id: &str,
        updates: Vec<StatusReport>,
    ) -> Result<(), DispatchError> {
        // The writer applies a report only to the node's own task anyway;
        // this answers a node that reports another's with a refusal. The
        // index answers without decoding tasks; the store, before the
        // index exists.
        let mut view = None;
        for r in &updates {
            let id = &r.task_id;
            let holder = match self.hub.holder_of(id) {
                Some(h) => h,
                None => {
                    if view.is_none() {
                        view = Some(self.store.read()?);
                    }
                    let view = view.as_ref().expect("just read");
                    view.task(id)?.and_then(|t| t.node_id)
                }
            };
            if holder.is_some_and(|h| h != node_id) {
                return Err(DispatchError::NotAssigned {
                    task: id.clone(),
                    node: node_id.to_string(),
                });
            }
        }
        let (committed, written) = oneshot::channel();
        let reports = status::NodeReports {
            node: node_id.to_string(),
            updates,
            committed: Some(committed),
        };
        if self.writer().send(reports).await.is_err() {
            return Err(DispatchError::NotWritten);
        }
        match written.await {
            Ok(true) => Ok(()),
            _ => Err(DispatchError::NotWritten),
        }
    }

    /// The one status writer, started on first use.
    fn writer(&self) -> mpsc::Sender<status::NodeReports> {
        self.writer
            .get_or_init(|| {
                let (tx, rx) = mpsc::channel(status::MAX_BATCH);
                tokio::spawn(status::write(self.proposer.clone(), rx));
                tx
            })
            .clone()
    }
}
