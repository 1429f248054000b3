//! The agent (every node): runs what the dispatcher assigns. One worker
//! per task drives the executor one step at a time (`worker.rs`); when a
//! task leaves the assignment set, its worker stops and removes the
//! container. On start the agent re-adopts containers of assigned tasks
//! and removes containers that belong to no assigned task.

pub mod local;
pub mod session;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::dispatcher::{Assignments, StatusReport};
use crate::executor::Executor;
use crate::shutdown::Shutdown;
use crate::types::Task;

pub struct Agent {
    exec: Arc<dyn Executor>,
    /// The node's hostname, for messages such as "image X not found on node Y".
    node_name: String,
    reports: mpsc::Sender<StatusReport>,
}

struct Worker {
    /// Sends the task's newest version; dropping it tells the worker the
    /// task was removed.
    tx: watch::Sender<Task>,
    handle: JoinHandle<()>,
}

impl Agent {
    pub fn new(
        exec: Arc<dyn Executor>,
        node_name: String,
        reports: mpsc::Sender<StatusReport>,
    ) -> Self {
        Agent {
            exec,
            node_name,
            reports,
        }
    }

    pub async fn run(self, mut assignments: watch::Receiver<Assignments>, mut shutdown: Shutdown) {
        let mut workers: HashMap<String, Worker> = HashMap::new();
        let first = assignments.borrow_and_update().clone();
        self.remove_orphans(&first).await;
        self.sync(&mut workers, &first);
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                r = assignments.changed() => {
                    if r.is_err() {
                        break;
                    }
                    let set = assignments.borrow_and_update().clone();
                    self.sync(&mut workers, &set);
                }
            }
        }
        // Leave containers running: a restarted daemon re-adopts them.
        for (_, w) in workers {
            w.handle.abort();
        }
    }

    fn sync(&self, workers: &mut HashMap<String, Worker>, set: &[Task]) {
        // Dropping a worker's sender is its signal to stop and remove the
        // container; a worker that died is started again below.
        workers.retain(|id, w| set.iter().any(|t| &t.id == id) && !w.handle.is_finished());
        for task in set {
            match workers.get(&task.id) {
                Some(w) => {
                    w.tx.send_if_modified(|cur| {
                        let changed = cur != task;
                        if changed {
                            *cur = task.clone();
                        }
                        changed
                    });
                }
                None => {
                    let (tx, rx) = watch::channel(task.clone());
                    let handle = tokio::spawn(worker::drive(
                        self.exec.clone(),
                        rx,
                        self.reports.clone(),
                        self.node_name.clone(),
                    ));
                    workers.insert(task.id.clone(), Worker { tx, handle });
                }
            }
        }
    }

    /// Containers that no assigned task owns: left by a task that was
    /// deleted while the daemon was down.
    async fn remove_orphans(&self, set: &[Task]) {
        let ids = match self.exec.list().await {
            Ok(ids) => ids,
            Err(e) => return warn!(error = %e, "cannot list containers"),
        };
        for id in ids.iter().filter(|id| !set.iter().any(|t| &t.id == *id)) {
            info!(container = %id, "removing container of no assigned task");
            if let Err(e) = self.exec.stop(id, "SIGKILL", Default::default()).await {
                warn!(container = %id, error = %e, "cannot stop orphan");
            }
            if let Err(e) = self.exec.remove(id).await {
                warn!(container = %id, error = %e, "cannot remove orphan");
            }
        }
    }
}
