//! The scheduler (leader-only): pending tasks → nodes. Placement is a list
//! of small filters, then spread: the node with the fewest tasks of this
//! service, then the fewest tasks overall. A task that fits nowhere keeps
//! `pending` with a status message that says why.

mod constraint;
mod depends;
mod filters;
mod placer;
mod rebalance;

pub use constraint::Constraint;
pub use filters::{eligible_for_global, Unplaceable};
pub use placer::Placer;
pub use rebalance::moves as rebalance_moves;

use std::borrow::Borrow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

use crate::shutdown::Shutdown;
use crate::store::{Change, Kind, Mirror, Proposer, Store, StoreError};
use crate::types::{now_ms, Node, Task, TaskState, TaskStatus};
use filters::{constraints, explain, fits, has_image, has_volumes, runtime_up, volumes_held};

const DEBOUNCE: Duration = Duration::from_millis(20);

/// Where `task` should run, or why it can run nowhere.
/// `load` counts live tasks per node: (per service id, total).
pub fn place<N: Borrow<Node>>(
    task: &Task,
    nodes: &[N],
    load: &Load,
) -> Result<String, Unplaceable> {
    let constraints = constraints(&task.spec)?;
    let held = volumes_held(&task.spec, nodes);
    let mut best: Option<(&Node, (usize, bool, usize))> = None;
    let mut misfits = Vec::new();
    for node in nodes.iter().map(Borrow::borrow) {
        if let Some(want) = &task.node_id {
            if *want != node.id {
                continue;
            }
        }
        let fit = fits(&task.spec, &constraints, node)
            .and_then(|()| has_volumes(&held, node))
            .and_then(|()| runtime_up(node));
        match fit {
            Ok(()) => {
                let (per_service, total) = load.of(&node.id, &task.service_id);
                // Spread first; among equals, a node with the image.
                let key = (per_service, !has_image(&task.spec, node), total);
                if best.is_none_or(|(b, k)| key < k || (key == k && node.id < b.id)) {
                    best = Some((node, key));
                }
            }
            Err(why) => misfits.push(why),
        }
    }
    match best {
        Some((node, _)) => Ok(node.id.clone()),
        None => Err(explain(&misfits)),
    }
}

/// Live tasks per node, overall and per service.
#[derive(Default)]
pub struct Load {
    total: HashMap<String, usize>,
    /// service id → node id → count; nested so that a lookup by `&str`
    /// allocates nothing.
    per_service: HashMap<String, HashMap<String, usize>>,
}

impl Load {
    #[cfg(test)]
    pub fn from_tasks(tasks: &[Task]) -> Load {
        let mut load = Load::default();
        for t in tasks.iter().filter(|t| t.is_live()) {
            if let Some(n) = &t.node_id {
                load.add(n, &t.service_id);
            }
        }
        load
    }

    #[cfg(test)]
    pub fn add(&mut self, node: &str, service: &str) {
        *self.total.entry(node.to_string()).or_default() += 1;
        *self
            .per_service
            .entry(service.to_string())
            .or_default()
            .entry(node.to_string())
            .or_default() += 1;
    }

    fn of(&self, node: &str, service: &str) -> (usize, usize) {
        (
            self.per_service
                .get(service)
                .and_then(|m| m.get(node))
                .copied()
                .unwrap_or(0),
            self.total.get(node).copied().unwrap_or(0),
        )
    }
}

pub async fn run(store: Store, proposer: Arc<dyn Proposer>, mut shutdown: Shutdown) {
    let mut events = store.watch();
    let mut mirrors = Mirrors::new(&store);
    loop {
        if let Err(e) = pass(&store, proposer.as_ref(), &mut mirrors).await {
            warn!(error = %e, "scheduler pass failed; retrying");
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = events.recv() => {}
            // Nodes come and go: look again now and then even when idle.
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        tokio::time::sleep(DEBOUNCE).await;
        while events.try_recv().is_ok() {}
    }
}

/// The scheduler's copies of the tasks and the nodes.
struct Mirrors {
    tasks: Mirror,
    nodes: Mirror,
}

impl Mirrors {
    fn new(store: &Store) -> Mirrors {
        Mirrors {
            tasks: Mirror::new(store, Kind::Task),
            nodes: Mirror::new(store, Kind::Node),
        }
    }
}

async fn pass(
    store: &Store,
    proposer: &dyn Proposer,
    mirrors: &mut Mirrors,
) -> Result<(), StoreError> {
    let view = store.read()?;
    mirrors.nodes.update(&view).await?;
    mirrors.tasks.update(&view).await?;
    let nodes: Vec<&Node> = mirrors.nodes.nodes().collect();
    let tasks: Vec<&Task> = mirrors.tasks.tasks().collect();
    // In id order, as the store lists them: the same state places the same.
    let mut pending: Vec<&Task> = tasks
        .iter()
        .copied()
        .filter(|t| t.status.state == TaskState::Pending && t.desired_state <= TaskState::Running)
        .collect();
    if pending.is_empty() {
        // Most passes (a status report, a heartbeat) have nothing to place:
        // the load of every node is not worth counting for them.
        return Ok(());
    }
    let services = view.services()?;
    drop(view);
    let mut gate = depends::Gate::new(&services, &tasks);
    pending.sort_by(|a, b| a.id.cmp(&b.id));
    let mut placer = Placer::new(&nodes, &tasks);
    let mut changes = Vec::new();
    for task in pending {
        let placed = match gate.waits(task) {
            Some(why) => Err(Unplaceable(why)),
            None => placer.place(task),
        };
        match placed {
            Ok(node) => {
                placer.add(&node, task);
                let waited = (now_ms() - task.meta.created_ms).max(0) as f64 / 1000.0;
                crate::counters::global().scheduling_latency.observe(waited);
                changes.push(Change::TaskAssign {
                    id: task.id.clone(),
                    node_id: node,
                });
            }
            Err(why) if why.0 != task.status.message => changes.push(Change::TaskStatus {
                id: task.id.clone(),
                status: TaskStatus {
                    state: TaskState::Pending,
                    timestamp_ms: now_ms(),
                    message: why.0,
                    ..Default::default()
                },
                node: None,
            }),
            Err(_) => {}
        }
    }
    if !changes.is_empty() {
        debug!(changes = changes.len(), "scheduler proposes");
        proposer.propose(changes).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
