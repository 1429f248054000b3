//! Global services as a pure decision: one live task on every eligible node.
//! Tasks on nodes that are no longer eligible (drained, down, gone) stop.
//! A new spec rolls out node by node, as the update policy says.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use super::plan::{new_task, Plan};
use super::restart::{decide, rejected_in_a_row, Restart};
use super::update;
use crate::types::{Service, Task, TaskState};

pub fn reconcile(
    service: &Service,
    eligible: &[String],
    tasks: &[impl Borrow<Task>],
    now_ms: i64,
) -> Plan {
    let mut plan = Plan::default();
    let mut by_node: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
    for t in tasks
        .iter()
        .map(Borrow::borrow)
        .filter(|t| t.desired_state <= TaskState::Running)
    {
        by_node
            .entry(t.node_id.as_deref().unwrap_or(""))
            .or_default()
            .push(t);
    }
    for (node, ts) in &by_node {
        if !eligible.iter().any(|e| e == node) {
            for t in ts {
                plan.desire.push((t.id.clone(), TaskState::Shutdown));
            }
        }
    }
    let mut outdated = Vec::new();
    let mut stale = Vec::new();
    let mut busy = 0;
    for node in eligible {
        let mut meant = by_node.get(node.as_str()).cloned().unwrap_or_default();
        meant.sort_by_key(|t| std::cmp::Reverse((t.meta.created_ms, t.meta.version)));
        // Start-first: the old task keeps running until the new one does.
        let newest_runs = meant
            .first()
            .is_some_and(|t| t.status.state == TaskState::Running);
        for extra in meant.iter().skip(1) {
            if !newest_runs && extra.status.state == TaskState::Running {
                busy += 1;
            } else {
                plan.desire.push((extra.id.clone(), TaskState::Shutdown));
            }
        }
        let Some(current) = meant.first() else {
            busy += 1;
            // Stop-first: the node's old task stops before the new starts.
            let stopping = tasks.iter().map(Borrow::borrow).any(|t| {
                t.node_id.as_deref() == Some(node.as_str())
                    && t.desired_state > TaskState::Running
                    && t.status.state >= TaskState::Assigned
                    && !t.status.state.is_terminal()
            });
            if !stopping {
                plan.create
                    .push(new_task(service, 0, Some(node.clone()), 0, now_ms));
            }
            continue;
        };
        if current.status.state.is_terminal() {
            busy += 1;
            let history = tasks
                .iter()
                .map(Borrow::borrow)
                .filter(|t| t.node_id.as_deref() == Some(node.as_str()));
            let rejected = rejected_in_a_row(history);
            match decide(&service.spec.task.restart, current, rejected, now_ms) {
                Restart::Now => {
                    plan.desire.push((current.id.clone(), TaskState::Shutdown));
                    let restarts = current.restarts + 1;
                    plan.create
                        .push(new_task(service, 0, Some(node.clone()), restarts, now_ms));
                }
                Restart::At(t) => plan.wake(t),
                Restart::Never => {}
            }
            continue;
        }
        let runs = current.status.state == TaskState::Running;
        match (service.is_current(current), runs) {
            (true, true) => {}
            (true, false) => busy += 1,
            (false, true) => outdated.push(*current),
            (false, false) => stale.push(*current),
        }
    }
    // The rollout, node by node, as the update policy says.
    update::roll(
        service,
        update::Units {
            total: eligible.len(),
            busy,
            outdated,
            stale,
        },
        tasks,
        now_ms,
        &mut plan,
        |old| new_task(service, 0, old.node_id.clone(), 0, now_ms),
    );
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::testutil::{service, task_in};

    #[test]
    fn one_task_per_eligible_node() {
        let s = service(0);
        let mut on_a = task_in(0, 1);
        on_a.node_id = Some("a".into());
        on_a.status.state = TaskState::Running;
        let mut on_gone = task_in(0, 1);
        on_gone.node_id = Some("gone".into());
        let plan = reconcile(&s, &["a".into(), "b".into()], &[on_a, on_gone.clone()], 0);
        assert_eq!(plan.create.len(), 1);
        assert_eq!(plan.create[0].node_id.as_deref(), Some("b"));
        assert_eq!(plan.desire, vec![(on_gone.id, TaskState::Shutdown)]);
    }
}
