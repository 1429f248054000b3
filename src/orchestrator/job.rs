//! Jobs as a pure decision (Swarm's replicated and global jobs): tasks that
//! run to completion. A run of the job is the service's spec version: a
//! change of the task spec (`service update --force` included) runs it
//! again from nothing, and the tasks of an earlier run are history.
//!
//! - Replicated: slots 1..=completions each need one task that succeeded
//!   (exited 0); at most `max_concurrent` tasks run at once, the lowest
//!   slots first.
//! - Global: every eligible node needs one task that succeeded, nodes that
//!   become eligible later included.
//! - A task that failed follows the restart policy (a job's is on-failure
//!   or none; the API refuses `any`, which would run a success again).

use std::borrow::Borrow;
use std::collections::BTreeMap;

use super::plan::{new_task, Plan};
use super::replicated::Unavailable;
use super::restart::{decide, rejected_in_a_row, Restart};
use crate::types::{Service, Task, TaskState};

/// What one unit (a slot, a node) of the current run needs.
enum Need {
    /// Nothing: it succeeded, or it cannot be started again.
    Nothing,
    /// A task of it is meant to run and has not ended (or is stopping).
    Active,
    /// A new task, with this restart count.
    Start(u64),
}

/// The current run's tasks of one unit, newest first: what it needs, and
/// the desired-state changes that go with it.
fn need(
    service: &Service,
    ts: &[&Task],
    nodes: &Unavailable,
    now_ms: i64,
    plan: &mut Plan,
) -> Need {
    if ts.iter().any(|t| t.status.succeeded()) {
        return Need::Nothing;
    }
    let meant: Vec<&&Task> = ts
        .iter()
        .filter(|t| t.desired_state <= TaskState::Running)
        .collect();
    for extra in meant.iter().skip(1) {
        plan.desire.push((extra.id.clone(), TaskState::Shutdown));
    }
    let restarts = ts.iter().map(|t| t.restarts).max().unwrap_or(0);
    let Some(current) = meant.first() else {
        // A task that is still stopping (a drained node) keeps its unit.
        let stopping = ts.iter().any(|t| {
            t.desired_state > TaskState::Running
                && t.status.state >= TaskState::Assigned
                && !t.status.state.is_terminal()
                && !nodes.down(t)
        });
        return if stopping {
            Need::Active
        } else {
            Need::Start(restarts)
        };
    };
    if !current.status.state.is_terminal() {
        if nodes.down(current) {
            plan.desire.push((current.id.clone(), TaskState::Shutdown));
            return Need::Start(restarts);
        }
        if nodes.drained(current) {
            plan.desire.push((current.id.clone(), TaskState::Shutdown));
        }
        return Need::Active;
    }
    match decide(
        &service.spec.task.restart,
        current,
        rejected_in_a_row(ts.iter().copied()),
        now_ms,
    ) {
        Restart::Now => {
            plan.desire.push((current.id.clone(), TaskState::Shutdown));
            Need::Start(current.restarts + 1)
        }
        Restart::At(at) => {
            plan.wake(at);
            Need::Nothing
        }
        Restart::Never => Need::Nothing,
    }
}

/// The tasks of earlier runs that are still meant to run are stopped; the
/// current run's are returned, grouped by `key`, newest first.
fn current_run<'a, K: Ord>(
    service: &Service,
    tasks: &'a [impl Borrow<Task>],
    plan: &mut Plan,
    key: impl Fn(&Task) -> K,
) -> BTreeMap<K, Vec<&'a Task>> {
    let mut units: BTreeMap<K, Vec<&Task>> = BTreeMap::new();
    for t in tasks.iter().map(Borrow::borrow) {
        if t.spec_version == service.spec_version {
            units.entry(key(t)).or_default().push(t);
        } else if t.desired_state <= TaskState::Running {
            plan.desire.push((t.id.clone(), TaskState::Shutdown));
        }
    }
    for ts in units.values_mut() {
        ts.sort_by_key(|t| std::cmp::Reverse((t.meta.created_ms, t.meta.version)));
    }
    units
}

pub fn replicated(
    service: &Service,
    completions: u64,
    max_concurrent: u64,
    tasks: &[impl Borrow<Task>],
    nodes: &Unavailable,
    now_ms: i64,
) -> Plan {
    let mut plan = Plan::default();
    let slots = current_run(service, tasks, &mut plan, |t| t.slot);
    // Fewer completions asked for: the slots above stop.
    for (_, ts) in slots.range(completions + 1..) {
        for t in ts.iter().filter(|t| t.desired_state <= TaskState::Running) {
            plan.desire.push((t.id.clone(), TaskState::Remove));
        }
    }
    let mut active = 0;
    let mut start = Vec::new();
    for slot in 1..=completions {
        let ts = slots.get(&slot).map(Vec::as_slice).unwrap_or(&[]);
        match need(service, ts, nodes, now_ms, &mut plan) {
            Need::Nothing => {}
            Need::Active => active += 1,
            Need::Start(restarts) => start.push((slot, restarts)),
        }
    }
    let room = max_concurrent.max(1).saturating_sub(active) as usize;
    for (slot, restarts) in start.into_iter().take(room) {
        plan.create
            .push(new_task(service, slot, None, restarts, now_ms));
    }
    plan
}

pub fn global(
    service: &Service,
    eligible: &[String],
    tasks: &[impl Borrow<Task>],
    now_ms: i64,
) -> Plan {
    let mut plan = Plan::default();
    let by_node = current_run(service, tasks, &mut plan, |t| {
        t.node_id.clone().unwrap_or_default()
    });
    for (node, ts) in &by_node {
        if !eligible.contains(node) {
            for t in ts.iter().filter(|t| t.is_live()) {
                plan.desire.push((t.id.clone(), TaskState::Shutdown));
            }
        }
    }
    for node in eligible {
        let ts = by_node.get(node).map(Vec::as_slice).unwrap_or(&[]);
        if let Need::Start(restarts) = need(service, ts, &Unavailable::default(), now_ms, &mut plan)
        {
            plan.create
                .push(new_task(service, 0, Some(node.clone()), restarts, now_ms));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::testutil::{service, task_in};
    use crate::types::{RestartCondition, ServiceMode};

    fn job(completions: u64, max_concurrent: u64) -> Service {
        let mut s = service(0);
        s.spec.mode = ServiceMode::ReplicatedJob {
            completions,
            max_concurrent,
        };
        s.spec.task.restart.condition = RestartCondition::OnFailure;
        s.spec.task.restart.delay_ms = 0;
        s
    }

    fn ended(slot: u64, code: i32) -> Task {
        let mut t = task_in(slot, 1);
        t.status.state = TaskState::Complete;
        t.status.exit_code = Some(code);
        t
    }

    fn running(slot: u64) -> Task {
        let mut t = task_in(slot, 1);
        t.status.state = TaskState::Running;
        t
    }

    fn rec(s: &Service, ts: &[Task]) -> Plan {
        let ServiceMode::ReplicatedJob {
            completions,
            max_concurrent,
        } = s.spec.mode
        else {
            unreachable!()
        };
        replicated(
            s,
            completions,
            max_concurrent,
            ts,
            &Unavailable::default(),
            0,
        )
    }

    fn slots(plan: &Plan) -> Vec<u64> {
        plan.create.iter().map(|t| t.slot).collect()
    }

    #[test]
    fn a_job_starts_no_more_than_max_concurrent_tasks() {
        let s = job(4, 2);
        assert_eq!(slots(&rec(&s, &[])), vec![1, 2]);
        // Two run: nothing more starts.
        assert!(rec(&s, &[running(1), running(2)]).is_empty());
        // One succeeded: the next slot starts, and the success stays.
        let plan = rec(&s, &[ended(1, 0), running(2)]);
        assert_eq!(slots(&plan), vec![3]);
        assert!(plan.desire.is_empty());
    }

    #[test]
    fn a_job_that_succeeded_everywhere_is_done() {
        let s = job(2, 2);
        assert!(rec(&s, &[ended(1, 0), ended(2, 0)]).is_empty());
    }

    #[test]
    fn a_failed_run_is_restarted_in_its_slot_and_counts_its_restarts() {
        let s = job(2, 1);
        let failed = ended(1, 3);
        let plan = rec(&s, std::slice::from_ref(&failed));
        assert_eq!(slots(&plan), vec![1]);
        assert_eq!(plan.create[0].restarts, 1);
        assert_eq!(plan.desire, vec![(failed.id, TaskState::Shutdown)]);
    }

    #[test]
    fn restart_condition_none_leaves_a_failure_as_it_is() {
        let mut s = job(2, 2);
        s.spec.task.restart.condition = RestartCondition::None;
        let plan = rec(&s, &[ended(1, 1), ended(2, 0)]);
        assert!(plan.is_empty());
    }

    #[test]
    fn a_new_spec_version_runs_the_job_again() {
        let mut s = job(2, 2);
        let old = [ended(1, 0), ended(2, 0)];
        s.spec_version = 2;
        let plan = rec(&s, &old);
        assert_eq!(slots(&plan), vec![1, 2]);
        assert!(plan.create.iter().all(|t| t.spec_version == 2));
        // The old run's tasks become history.
        assert_eq!(plan.desire.len(), 2);
    }

    #[test]
    fn a_global_job_runs_once_on_each_eligible_node() {
        let mut s = job(0, 0);
        s.spec.mode = ServiceMode::GlobalJob;
        let mut done = ended(0, 0);
        done.node_id = Some("a".into());
        let plan = global(&s, &["a".into(), "b".into()], &[done], 0);
        assert_eq!(plan.create.len(), 1);
        assert_eq!(plan.create[0].node_id.as_deref(), Some("b"));
    }
}
