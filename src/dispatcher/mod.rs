//! The dispatcher (every manager): one session per node. A session carries
//! the node's assignments down (the full set of its tasks, re-sent when it
//! changes) and the node's task status up, batched into store writes.
//!
//! The node is named by the caller of `session`, which takes it from the
//! node's identity (today the local node; with mTLS, its certificate). A
//! status report for a task that is not assigned to that node is dropped.

mod assignments;
mod heartbeat;

pub use heartbeat::{watch_nodes, Heartbeats};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::shutdown::Shutdown;
use crate::store::{Change, Proposer, Store};
use crate::types::{Task, TaskStatus};

/// Status writes are batched: one store write per this period at most.
const BATCH_PERIOD: Duration = Duration::from_millis(100);

/// The node's view of its work: every task assigned to it.
pub type Assignments = Arc<Vec<Task>>;

/// A status report from a node: (task id, status).
pub type StatusReport = (String, TaskStatus);

#[derive(Clone)]
pub struct Dispatcher {
    store: Store,
    proposer: Arc<dyn Proposer>,
    shutdown: Shutdown,
    /// One status batcher per node. std Mutex: never held across .await.
    reporters: Arc<Mutex<HashMap<String, mpsc::Sender<StatusReport>>>>,
    /// Every node's assignments, kept once for all sessions.
    hub: Arc<assignments::Hub>,
    pub heartbeats: Arc<Heartbeats>,
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("task {task} is not assigned to node {node}")]
    NotAssigned { task: String, node: String },
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

impl Dispatcher {
    pub fn new(store: Store, proposer: Arc<dyn Proposer>, shutdown: Shutdown) -> Dispatcher {
        Dispatcher {
            store,
            proposer,
            shutdown,
            reporters: Default::default(),
            hub: Default::default(),
            heartbeats: Arc::new(Heartbeats::default()),
        }
    }

    /// A watch of `node_id`'s assignments: the full set, re-sent when it
    /// changes.
    pub fn session(&self, node_id: &str) -> watch::Receiver<Assignments> {
        self.hub.session(node_id, &self.store, &self.shutdown)
    }

    /// The sender for `node_id`'s status reports (the local agent's path;
    /// reports are checked again when they are written).
    pub fn reporter(&self, node_id: &str) -> mpsc::Sender<StatusReport> {
        let mut map = self.reporters.lock().expect("reporters lock");
        if let Some(tx) = map.get(node_id).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(self.clone().write_status(node_id.to_string(), rx));
        map.insert(node_id.to_string(), tx.clone());
        tx
    }

    /// A remote node's reports. Refused whole if any names a task that is
    /// not assigned to the node: the caller is the node in its certificate.
    pub async fn report(
        &self,
        node_id: &str,
        updates: Vec<StatusReport>,
    ) -> Result<(), DispatchError> {
        {
            let view = self.store.read()?;
            for (id, _) in &updates {
                let assigned = view
                    .task(id)?
                    .is_none_or(|t| t.node_id.as_deref() == Some(node_id));
                if !assigned {
                    return Err(DispatchError::NotAssigned {
                        task: id.clone(),
                        node: node_id.to_string(),
                    });
                }
            }
        }
        let tx = self.reporter(node_id);
        for u in updates {
            // Closed only at shutdown.
            let _ = tx.send(u).await;
        }
        Ok(())
    }

    async fn write_status(self, node_id: String, mut rx: mpsc::Receiver<StatusReport>) {
        let mut pending: HashMap<String, TaskStatus> = HashMap::new();
        loop {
            let first = tokio::select! {
                r = rx.recv() => r,
                _ = tokio::time::sleep(BATCH_PERIOD), if !pending.is_empty() => None,
            };
            match first {
                Some((id, st)) => {
                    merge(&mut pending, id, st);
                    if pending.len() < 10_000 {
                        continue;
                    }
                }
                None if pending.is_empty() => return, // closed
                None => {}
            }
            let batch = std::mem::take(&mut pending);
            self.flush(&node_id, batch).await;
        }
    }

    async fn flush(&self, node_id: &str, batch: HashMap<String, TaskStatus>) {
        let view = match self.store.read() {
            Ok(v) => v,
            Err(e) => return warn!(error = %e, "cannot read store for status"),
        };
        let mut changes = Vec::new();
        for (id, status) in batch {
            match view.task(&id) {
                Ok(Some(t)) if t.node_id.as_deref() == Some(node_id) => {
                    changes.push(Change::TaskStatus { id, status })
                }
                Ok(Some(_)) => {
                    warn!(node = %node_id, task = %id, "refused status for a task not assigned to the node")
                }
                _ => debug!(task = %id, "status for a task that is gone"),
            }
        }
        drop(view);
        if changes.is_empty() {
            return;
        }
        if let Err(e) = self.proposer.propose(changes).await {
            warn!(node = %node_id, error = %e, "status write failed");
        }
    }
}

/// Keep the furthest state per task: reports that move backwards are moot.
fn merge(pending: &mut HashMap<String, TaskStatus>, id: String, st: TaskStatus) {
    match pending.get(&id) {
        Some(cur) if cur.state > st.state => {}
        _ => {
            pending.insert(id, st);
        }
    }
}
