//! The agent (every node): runs what the dispatcher assigns. One worker
//! per task drives the executor one step at a time (`worker.rs`); when a
//! task leaves the assignment set, its worker stops and removes the
//! container. On start the agent re-adopts containers of assigned tasks
//! and removes containers that belong to no assigned task.

pub mod files;
pub mod images;
pub mod local;
pub mod nets;
pub mod peers;
pub mod registries;
pub mod session;
pub mod volumes;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::executor::{Executor, ImageStore};
use crate::shutdown::Shutdown;
use crate::types::{Assignments, StatusReport, Task, TaskState};

pub struct Agent {
    rt: Arc<Runtime>,
    reports: mpsc::Sender<StatusReport>,
}

/// What every task worker of a node shares.
pub struct Runtime {
    pub exec: Arc<dyn Executor>,
    /// Where a task's image is pulled into (the same containerd).
    pub images: Arc<dyn ImageStore>,
    /// Registry access the managers sent with the node's tasks.
    pub registries: registries::Registries,
    /// The other nodes, as sources of image blobs (None: registry only).
    pub peers: Option<Arc<dyn crate::executor::BlobPeers>>,
    /// The node's hostname, for messages such as "image X not found on node Y".
    pub node_name: String,
    /// Called after a pull: the node's image list changed, and the
    /// scheduler prefers nodes that have an image.
    pub images_changed: Box<dyn Fn() + Send + Sync>,
    /// The node's task networks. None on the simulated worker, whose tasks
    /// have no network to set up.
    pub nets: Option<Arc<nets::TaskNets>>,
    /// The node's secrets and configs (data in memory, a tmpfs per task).
    /// None on the simulated worker, which mounts nothing.
    pub files: Option<files::Files>,
    /// The node's named volumes. None on the simulated worker.
    pub volumes: Option<volumes::Volumes>,
}

struct Worker {
    /// Sends the task's newest version; dropping it tells the worker the
    /// task was removed.
    tx: watch::Sender<Task>,
    handle: JoinHandle<()>,
    /// Set once the task's process is gone (its container is kept for its
    /// logs until the task is removed).
    stopped: Arc<AtomicBool>,
}

/// How often a task that waits for its slot's old task to stop looks again.
const RECHECK: Duration = Duration::from_millis(200);

impl Agent {
    pub fn new(rt: Runtime, reports: mpsc::Sender<StatusReport>) -> Self {
        Agent {
            rt: Arc::new(rt),
            reports,
        }
    }

    pub async fn run(self, mut assignments: watch::Receiver<Assignments>, mut shutdown: Shutdown) {
        let mut workers: HashMap<String, Worker> = HashMap::new();
        let first = assignments.borrow_and_update().clone();
        self.remove_orphans(&first).await;
        let mut waiting = self.sync(&mut workers, &first);
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                r = assignments.changed() => {
                    if r.is_err() {
                        break;
                    }
                    let set = assignments.borrow_and_update().clone();
                    waiting = self.sync(&mut workers, &set);
                }
                _ = tokio::time::sleep(RECHECK), if waiting => {
                    let set = assignments.borrow().clone();
                    waiting = self.sync(&mut workers, &set);
                }
            }
        }
        // Leave containers running: a restarted daemon re-adopts them.
        for (_, w) in workers {
            w.handle.abort();
        }
    }

    /// Bring the workers to `set`. Returns whether a task waits for the old
    /// task of its slot to stop.
    fn sync(&self, workers: &mut HashMap<String, Worker>, set: &[Task]) -> bool {
        // Dropping a worker's sender is its signal to stop and remove the
        // container; a worker that died is started again below.
        workers.retain(|id, w| set.iter().any(|t| &t.id == id) && !w.handle.is_finished());
        // Existing workers first, so that a slot's old task is known to be
        // stopping before its replacement is looked at.
        for task in set {
            if let Some(w) = workers.get(&task.id) {
                w.tx.send_if_modified(|cur| {
                    let changed = cur != task;
                    if changed {
                        *cur = task.clone();
                    }
                    changed
                });
            }
        }
        let mut waiting = false;
        for task in set {
            if workers.contains_key(&task.id) {
                continue;
            }
            if slot_busy(workers, task) {
                waiting = true;
                continue;
            }
            let (tx, rx) = watch::channel(task.clone());
            let stopped = Arc::new(AtomicBool::new(false));
            let handle = tokio::spawn(worker::drive(
                self.rt.clone(),
                rx,
                self.reports.clone(),
                stopped.clone(),
            ));
            workers.insert(
                task.id.clone(),
                Worker {
                    tx,
                    handle,
                    stopped,
                },
            );
        }
        waiting
    }

    /// Containers and task networks that no assigned task owns: left by a
    /// task that was deleted while the daemon was down.
    async fn remove_orphans(&self, set: &[Task]) {
        let keep: Vec<String> = set.iter().map(|t| t.id.clone()).collect();
        if let Some(nets) = &self.rt.nets {
            nets.detach_others(&keep).await;
        }
        if let Some(files) = &self.rt.files {
            files.unmount_others(&keep);
        }
        let ids = match self.rt.exec.list().await {
            Ok(ids) => ids,
            Err(e) => return warn!(error = %e, "cannot list containers"),
        };
        for id in ids.iter().filter(|id| !set.iter().any(|t| &t.id == *id)) {
            info!(container = %id, "removing container of no assigned task");
            if let Err(e) = self.rt.exec.stop(id, "SIGKILL", Default::default()).await {
                warn!(container = %id, error = %e, "cannot stop orphan");
            }
            if let Err(e) = self.rt.exec.remove(id).await {
                warn!(container = %id, error = %e, "cannot remove orphan");
            }
        }
    }
}

/// Whether another task of `task`'s slot is still being stopped on this
/// node. Its replacement starts only once it has stopped, so that a slot
/// never runs twice here: a node that comes back after its tasks were
/// replaced gets the old ones (to stop) and the new ones at once.
fn slot_busy(workers: &HashMap<String, Worker>, task: &Task) -> bool {
    workers.iter().any(|(id, w)| {
        let other = w.tx.borrow();
        *id != task.id
            && other.service_id == task.service_id
            && other.slot == task.slot
            && other.desired_state > TaskState::Running
            && !w.stopped.load(Ordering::SeqCst)
            && !w.handle.is_finished()
    })
}
