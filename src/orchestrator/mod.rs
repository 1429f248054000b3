//! The orchestrator (leader-only): services → tasks. Each pass reads one
//! snapshot, runs the pure decisions (`replicated`, `global`, `reaper`) and
//! proposes the result as one batch. Passes run on every commit (debounced)
//! and when a restart delay runs out.

mod global;
mod plan;
mod reaper;
mod replicated;
mod restart;
#[cfg(test)]
mod testutil;

#[cfg(test)]
pub use plan::{new_task, probe_task};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

use crate::scheduler::eligible_for_global;
use crate::shutdown::Shutdown;
use crate::store::{Change, Kind, Proposer, Store, StoreError, TaskMirror};
use crate::types::{now_ms, Availability, NodeState, ServiceMode, Task, TaskState};
use plan::Plan;

/// Coalesce bursts of commits into one pass.
const DEBOUNCE: Duration = Duration::from_millis(50);

pub async fn run(store: Store, proposer: Arc<dyn Proposer>, mut shutdown: Shutdown) {
    let mut events = store.watch();
    let mut tasks = TaskMirror::new(&store);
    loop {
        let wake = match pass(&store, proposer.as_ref(), &mut tasks).await {
            Ok(wake) => wake,
            Err(e) => {
                warn!(error = %e, "orchestrator pass failed; retrying");
                Some(now_ms() + 1_000)
            }
        };
        let sleep = wake.map(|at| Duration::from_millis((at - now_ms()).max(0) as u64));
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = events.recv() => {}
            _ = tokio::time::sleep(sleep.unwrap_or(Duration::from_secs(3600))), if sleep.is_some() => {}
        }
        tokio::time::sleep(DEBOUNCE).await;
        // Drain what piled up: the next pass reads the latest state anyway.
        while events.try_recv().is_ok() {}
    }
}

/// One reconcile pass. Returns when the next pass is due, if a timer runs.
async fn pass(
    store: &Store,
    proposer: &dyn Proposer,
    mirror: &mut TaskMirror,
) -> Result<Option<i64>, StoreError> {
    let view = store.read()?;
    let Some(cluster) = view.cluster()? else {
        return Ok(None);
    };
    let services = view.services()?;
    let nodes = view.nodes()?;
    mirror.update(&view).await?;
    drop(view);
    // In id order, as the store lists them: the same state plans the same.
    let mut tasks: Vec<&Task> = mirror.tasks().collect();
    tasks.sort_by(|a, b| a.id.cmp(&b.id));

    let now = now_ms();
    let mut by_service: HashMap<&str, Vec<Task>> = HashMap::new();
    for t in &tasks {
        by_service
            .entry(&t.service_id)
            .or_default()
            .push((*t).clone());
    }
    let unavailable = replicated::Unavailable {
        down: nodes
            .iter()
            .filter(|n| n.status.state == NodeState::Down)
            .map(|n| n.id.clone())
            .collect(),
        drained: nodes
            .iter()
            .filter(|n| n.spec.availability == Availability::Drain)
            .map(|n| n.id.clone())
            .collect(),
    };
    let mut plan = Plan::default();
    for s in &services {
        let ts = by_service.remove(s.id.as_str()).unwrap_or_default();
        plan.merge(match s.spec.mode {
            ServiceMode::Replicated { replicas } => {
                replicated::reconcile(s, replicas, &ts, &unavailable, now)
            }
            ServiceMode::Global => {
                global::reconcile(s, &eligible_for_global(&nodes, &s.spec.task), &ts, now)
            }
        });
    }
    // Tasks of removed services.
    for t in by_service.values().flatten() {
        if t.desired_state < TaskState::Remove {
            plan.desire.push((t.id.clone(), TaskState::Remove));
        }
    }
    let wake = plan.wake_at_ms;
    // Prune history as it will be once this plan is applied, so that a slot
    // never holds more than the limit, not even for a moment.
    let projected = project(&tasks, &plan, now);
    let mut changes = plan.into_changes();
    for id in reaper::prune(&projected, cluster.task_history_limit as usize) {
        changes.push(Change::Delete {
            kind: Kind::Task,
            id,
            expected_version: None,
        });
    }
    if !changes.is_empty() {
        debug!(changes = changes.len(), "orchestrator proposes");
        // All parts at once: Raft appends them together and commits them
        // in order; one after the other, each waits for the last one's
        // commit, and a plan of thousands of tasks takes that many times
        // longer. A pass is level-triggered: what failed is planned again.
        let parts = in_parts(changes, &services)
            .into_iter()
            .map(|part| proposer.propose(part));
        for result in futures::future::join_all(parts).await {
            result?;
        }
    }
    Ok(wake)
}

/// The most one proposal carries: a plan for thousands of tasks goes in
/// parts, each far below what one Raft entry may hold.
const PROPOSAL_BYTES: usize = 1024 * 1024;

/// `changes` in parts of at most `PROPOSAL_BYTES`, in order. A new task is
/// about its service's spec in size (measured once per service); the other
/// changes are small. A pass is level-triggered: a part that fails is
/// planned again by the next pass.
fn in_parts(changes: Vec<Change>, services: &[crate::types::Service]) -> Vec<Vec<Change>> {
    let index: HashMap<&str, &crate::types::Service> =
        services.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut spec_bytes: HashMap<&str, usize> = HashMap::new();
    let mut size_of = |c: &Change| match c {
        Change::Create(crate::store::Object::Task(t)) => match index.get(t.service_id.as_str()) {
            Some(s) => {
                512 + *spec_bytes
                    .entry(s.id.as_str())
                    .or_insert_with(|| crate::format::encode(&s.spec.task).len())
            }
            None => 512,
        },
        _ => 256,
    };
    let mut parts = Vec::new();
    let mut part = Vec::new();
    let mut bytes = 0;
    for change in changes {
        let n = size_of(&change);
        if !part.is_empty() && bytes + n > PROPOSAL_BYTES {
            parts.push(std::mem::take(&mut part));
            bytes = 0;
        }
        bytes += n;
        part.push(change);
    }
    if !part.is_empty() {
        parts.push(part);
    }
    parts
}

/// The tasks as they will be after `plan`: desired states changed, new
/// tasks added (stamped `now`, so they count as the newest).
fn project(tasks: &[&Task], plan: &Plan, now: i64) -> Vec<Task> {
    let mut out: Vec<Task> = tasks.iter().map(|t| (*t).clone()).collect();
    // By id: a scale-down of thousands of tasks must not be quadratic.
    let at: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    for (id, state) in &plan.desire {
        if let Some(&i) = at.get(id.as_str()) {
            out[i].desired_state = (*state).max(out[i].desired_state);
        }
    }
    out.extend(plan.create.iter().cloned().map(|mut t| {
        t.meta.created_ms = now;
        t
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use testutil::{service, task_in};

    #[test]
    fn the_projection_applies_the_plan() {
        let tasks = [task_in(1, 1), task_in(2, 1)];
        let plan = Plan {
            create: vec![new_task(&service(3), 3, None, 0, 0)],
            desire: vec![
                (tasks[1].id.clone(), TaskState::Remove),
                ("gone".into(), TaskState::Remove),
            ],
            wake_at_ms: None,
        };
        let out = project(&[&tasks[0], &tasks[1]], &plan, 42);
        let states: Vec<TaskState> = out.iter().map(|t| t.desired_state).collect();
        assert_eq!(
            states,
            [TaskState::Running, TaskState::Remove, TaskState::Running]
        );
        assert_eq!(out[2].meta.created_ms, 42);
    }
}
