//! Replicated services as a pure decision: given a service and its tasks,
//! which tasks to create and which to stop so that slots 1..=N each have one
//! live task of the current spec.
//!
//! - A slot with no task gets one.
//! - A slot whose task ended while meant to run follows the restart policy.
//! - Slots above N are removed (scale down).
//! - Out-of-date tasks are replaced as the service's update policy says
//!   (`update`): so many slots at a time, stop-first or start-first.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashSet};

use super::plan::{new_task, Plan};
use super::restart::{decide, rejected_in_a_row, Restart};
use super::update;
use crate::types::{Service, Task, TaskState};

/// Nodes whose tasks must move: `down` ones are lost (their tasks are
/// replaced at once), `drained` ones are alive (their tasks stop first).
#[derive(Debug, Default)]
pub struct Unavailable {
    pub down: HashSet<String>,
    pub drained: HashSet<String>,
}

impl Unavailable {
    pub(super) fn down(&self, t: &Task) -> bool {
        t.node_id.as_ref().is_some_and(|n| self.down.contains(n))
    }

    pub(super) fn drained(&self, t: &Task) -> bool {
        t.node_id.as_ref().is_some_and(|n| self.drained.contains(n))
    }
}

pub fn reconcile(
    service: &Service,
    replicas: u64,
    tasks: &[impl Borrow<Task>],
    nodes: &Unavailable,
    now_ms: i64,
) -> Plan {
    let mut plan = Plan::default();
    let mut slots: BTreeMap<u64, Vec<&Task>> = BTreeMap::new();
    for t in tasks.iter().map(Borrow::borrow) {
        slots.entry(t.slot).or_default().push(t);
    }

    // Scale down: every task meant to run in a slot above N is removed.
    for (_, ts) in slots.range(replicas + 1..) {
        for t in ts.iter().filter(|t| t.desired_state <= TaskState::Running) {
            plan.desire.push((t.id.clone(), TaskState::Remove));
        }
    }

    let mut outdated = Vec::new();
    let mut stale = Vec::new();
    let mut busy = 0;
    for slot in 1..=replicas {
        let ts = slots.get(&slot).map(Vec::as_slice).unwrap_or(&[]);
        // The tasks meant to run, newest first. Normally there is one.
        let mut meant: Vec<&&Task> = ts
            .iter()
            .filter(|t| t.desired_state <= TaskState::Running)
            .collect();
        meant.sort_by_key(|t| std::cmp::Reverse((t.meta.created_ms, t.meta.version)));
        // Start-first: the old task keeps running until the new one does.
        let newest_runs = meant
            .first()
            .is_some_and(|t| t.status.state == TaskState::Running);
        for extra in meant.iter().skip(1) {
            let waits = !newest_runs
                && extra.status.state == TaskState::Running
                && !nodes.down(extra)
                && !nodes.drained(extra);
            if waits {
                busy += 1;
            } else {
                plan.desire.push((extra.id.clone(), TaskState::Shutdown));
            }
        }
        let Some(current) = meant.first() else {
            busy += 1;
            // Stop-first: a task that is still stopping keeps its slot
            // until it has stopped.
            if ts.iter().any(|t| stopping(t) && !nodes.down(t)) {
                continue;
            }
            // Empty slot, or its last task was shut down on purpose.
            let restarts = ts.iter().map(|t| t.restarts).max().unwrap_or(0);
            plan.create
                .push(new_task(service, slot, None, restarts, now_ms));
            continue;
        };
        if nodes.down(current) && !current.status.state.is_terminal() {
            // Its node is gone: replace it now, wherever the scheduler can.
            busy += 1;
            plan.desire.push((current.id.clone(), TaskState::Shutdown));
            plan.create
                .push(new_task(service, slot, None, current.restarts, now_ms));
            continue;
        }
        if nodes.drained(current) {
            busy += 1;
            plan.desire.push((current.id.clone(), TaskState::Shutdown));
            continue;
        }
        if current.status.state.is_terminal() {
            busy += 1;
            let rejected = rejected_in_a_row(ts.iter().copied());
            match decide(&service.spec.task.restart, current, rejected, now_ms) {
                Restart::Now => {
                    plan.desire.push((current.id.clone(), TaskState::Shutdown));
                    plan.create
                        .push(new_task(service, slot, None, current.restarts + 1, now_ms));
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
            (false, true) => outdated.push(**current),
            (false, false) => stale.push(**current),
        }
    }

    // The rollout: the lowest out-of-date slots first, as many as the
    // policy lets. Stop-first: the slot is refilled with the new spec
    // once its old task has stopped. Start-first: its new task starts
    // now, and the old one stops once the new one runs.
    update::roll(
        service,
        update::Units {
            total: replicas as usize,
            busy,
            outdated,
            stale,
        },
        tasks,
        now_ms,
        &mut plan,
        |old| new_task(service, old.slot, None, old.restarts, now_ms),
    );
    plan
}

/// Asked to stop, on a node, and not stopped yet.
fn stopping(t: &Task) -> bool {
    t.desired_state > TaskState::Running
        && t.status.state >= TaskState::Assigned
        && !t.status.state.is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::testutil::{service, task_in};

    fn rec(s: &Service, n: u64, ts: &[Task], now: i64) -> Plan {
        reconcile(s, n, ts, &Unavailable::default(), now)
    }

    fn running(slot: u64, version: u64) -> Task {
        let mut t = task_in(slot, version);
        t.status.state = TaskState::Running;
        t
    }

    #[test]
    fn empty_service_gets_one_task_per_slot() {
        let s = service(3);
        let plan = rec(&s, 3, &[], 0);
        let slots: Vec<u64> = plan.create.iter().map(|t| t.slot).collect();
        assert_eq!(slots, vec![1, 2, 3]);
        assert!(plan.desire.is_empty());
    }

    #[test]
    fn a_converged_service_needs_nothing() {
        let s = service(2);
        let plan = rec(&s, 2, &[running(1, 1), running(2, 1)], 0);
        assert!(plan.is_empty());
    }

    #[test]
    fn scaling_down_removes_the_high_slots() {
        let s = service(1);
        let ts = [running(1, 1), running(2, 1), running(3, 1)];
        let plan = rec(&s, 1, &ts, 0);
        assert!(plan.create.is_empty());
        assert_eq!(
            plan.desire,
            vec![
                (ts[1].id.clone(), TaskState::Remove),
                (ts[2].id.clone(), TaskState::Remove)
            ]
        );
    }

    #[test]
    fn a_dead_task_is_replaced_in_its_slot_after_the_delay() {
        let mut s = service(1);
        s.spec.task.restart.delay_ms = 1_000;
        let mut dead = running(1, 1);
        dead.status.state = TaskState::Failed;
        dead.status.timestamp_ms = 10_000;
        let early = rec(&s, 1, &[dead.clone()], 10_500);
        assert!(early.create.is_empty());
        assert_eq!(early.wake_at_ms, Some(11_000));
        let plan = rec(&s, 1, &[dead.clone()], 11_000);
        assert_eq!(plan.desire, vec![(dead.id.clone(), TaskState::Shutdown)]);
        assert_eq!(plan.create.len(), 1);
        assert_eq!(plan.create[0].slot, 1);
        assert_eq!(plan.create[0].restarts, 1);
    }

    #[test]
    fn an_update_replaces_one_slot_at_a_time() {
        let mut s = service(2);
        s.spec_version = 2;
        s.spec.task.container.image = "new".into();
        let ts = [running(1, 1), running(2, 1)];
        let plan = rec(&s, 2, &ts, 0);
        assert_eq!(plan.desire, vec![(ts[0].id.clone(), TaskState::Shutdown)]);
        assert!(plan.create.is_empty(), "stop-first: nothing starts yet");

        // While the old task stops, its slot stays empty.
        let mut old = ts[0].clone();
        old.desired_state = TaskState::Shutdown;
        assert!(rec(&s, 2, &[old.clone(), ts[1].clone()], 0).is_empty());

        // Once it stopped, the slot gets a task of the new spec.
        old.status.state = TaskState::Shutdown;
        let plan = rec(&s, 2, &[old.clone(), ts[1].clone()], 0);
        assert_eq!(plan.create.len(), 1);
        assert_eq!((plan.create[0].slot, plan.create[0].spec_version), (1, 2));

        // While the new task of slot 1 starts, slot 2 waits.
        let mut new = task_in(1, 2);
        new.spec = s.spec.task.clone();
        new.status.state = TaskState::Starting;
        let plan = rec(&s, 2, &[old.clone(), new.clone(), ts[1].clone()], 0);
        assert!(plan.is_empty());

        // Once it runs, slot 2 goes.
        new.status.state = TaskState::Running;
        let plan = rec(&s, 2, &[old, new, ts[1].clone()], 0);
        assert_eq!(plan.desire, vec![(ts[1].id.clone(), TaskState::Shutdown)]);
    }
}

#[cfg(test)]
mod node_loss_tests {
    use super::*;
    use crate::orchestrator::testutil::{service, task_in};

    fn on(node: &str, state: TaskState) -> Task {
        let mut t = task_in(1, 1);
        t.node_id = Some(node.into());
        t.status.state = state;
        t
    }

    #[test]
    fn a_task_on_a_down_node_is_replaced_at_once() {
        let s = service(1);
        let t = on("n1", TaskState::Running);
        let nodes = Unavailable {
            down: ["n1".to_string()].into(),
            ..Default::default()
        };
        let plan = reconcile(&s, 1, std::slice::from_ref(&t), &nodes, 0);
        assert_eq!(plan.desire, vec![(t.id.clone(), TaskState::Shutdown)]);
        assert_eq!(plan.create.len(), 1);
        // And the lost task does not hold its slot while "stopping".
        let mut lost = t;
        lost.desired_state = TaskState::Shutdown;
        let plan = reconcile(&s, 1, &[lost], &nodes, 0);
        assert_eq!(plan.create.len(), 1);
    }

    #[test]
    fn a_task_on_a_drained_node_stops_first() {
        let s = service(1);
        let t = on("n1", TaskState::Running);
        let nodes = Unavailable {
            drained: ["n1".to_string()].into(),
            ..Default::default()
        };
        let plan = reconcile(&s, 1, std::slice::from_ref(&t), &nodes, 0);
        assert_eq!(plan.desire, vec![(t.id.clone(), TaskState::Shutdown)]);
        assert!(plan.create.is_empty());
    }
}
