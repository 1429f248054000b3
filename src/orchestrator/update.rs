//! Rollouts as a pure decision (Docker's update and rollback policies):
//! which out-of-date tasks to replace now, and where the service's rollout
//! stands. The callers (`replicated`, `global`) say what each of their
//! units (slots, nodes) holds; this module knows nothing of slots.
//!
//! - At most `parallelism` units are busy at once (0: no limit): a unit
//!   is busy from when its old task is told to stop (or its new one is
//!   created, start-first) until its new task runs.
//! - After a new task runs, the next ones wait `delay`.
//! - A new task that fails or is rejected while the rollout is in progress
//!   is a failure; once more than `max_failure_ratio` of the units failed,
//!   the failure action runs: pause (nothing more is replaced until the
//!   next `service update`), continue, or roll back.
//! - The rollout is complete when every unit runs a current task and
//!   `monitor` has passed since the last one started running.

use std::borrow::Borrow;

use super::plan::Plan;
use crate::types::{
    FailureAction, Service, Task, TaskState, UpdateOrder, UpdateState, UpdateStatus,
};

/// What a caller counted of its units.
pub struct Units<'a> {
    pub total: usize,
    /// Units whose task does not run yet (or whose old task still runs
    /// beside a new one that does not).
    pub busy: usize,
    /// The units' running tasks of an older spec, in the order to replace
    /// them.
    pub outdated: Vec<&'a Task>,
    /// Their tasks of an older spec that do not run (pending, starting):
    /// replaced at once, as they serve nothing, and not counted as busy.
    /// Counted as busy, one that can never start (it waits for room that
    /// only the new spec frees) would hold the rollout forever.
    pub stale: Vec<&'a Task>,
}

/// A change of the service's rollout, for the orchestrator to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Rollout {
    /// The rollout's new status.
    Status(UpdateStatus),
    /// Go back to the previous spec: the failure action said so.
    Rollback { message: String },
}

#[derive(Debug, Default)]
pub struct Step<'a> {
    /// Old tasks to replace now.
    pub replace: Vec<&'a Task>,
    /// Decide again then (a delay or the monitor period runs out).
    pub wake_at_ms: Option<i64>,
    pub rollout: Option<Rollout>,
}

/// Runs `step` and puts what it decided into `plan`: each old task to
/// replace stops (stop-first: its unit is refilled once it has stopped) or
/// gets its replacement, made by `new`, at once (start-first: the old one
/// stops once the new one runs).
pub fn roll<'a>(
    service: &Service,
    units: Units<'a>,
    tasks: &[impl Borrow<Task>],
    now_ms: i64,
    plan: &mut Plan,
    new: impl Fn(&Task) -> Task,
) {
    let step = step(service, units, tasks, now_ms);
    for old in step.replace {
        match service.rollout_policy().order {
            UpdateOrder::StopFirst => plan.desire.push((old.id.clone(), TaskState::Shutdown)),
            UpdateOrder::StartFirst => plan.create.push(new(old)),
        }
    }
    if let Some(at) = step.wake_at_ms {
        plan.wake(at);
    }
    if let Some(r) = step.rollout {
        plan.rollouts.push((service.id.clone(), r));
    }
}

pub fn step<'a>(
    service: &Service,
    units: Units<'a>,
    tasks: &[impl Borrow<Task>],
    now_ms: i64,
) -> Step<'a> {
    let policy = service.rollout_policy();
    let status = service.update_status.as_ref();
    let state = status.map(|s| s.state);
    if state.is_some_and(UpdateState::is_paused) {
        return Step::default();
    }
    let started = status.map_or(0, |s| s.started_ms);
    // The new tasks of this rollout: made from this very spec version
    // (not from an older one of the same content, which a rollback keeps).
    let new = || {
        tasks
            .iter()
            .map(Borrow::borrow)
            .filter(move |t| t.spec_version == service.spec_version)
    };
    let in_progress = state.is_some_and(UpdateState::in_progress);

    if in_progress {
        // Since the rollout started (or resumed, after a pause).
        let failed: Vec<&Task> = new()
            .filter(|t| matches!(t.status.state, TaskState::Failed | TaskState::Rejected))
            .filter(|t| t.status.timestamp_ms >= started)
            .collect();
        let total = units.total.max(1) as u128;
        let too_many = !failed.is_empty()
            && failed.len() as u128 * 1_000_000 > u128::from(policy.max_failure_ppm) * total;
        if too_many {
            let rollback = state == Some(UpdateState::RollbackStarted);
            let last = failed
                .iter()
                .max_by_key(|t| t.status.timestamp_ms)
                .expect("failed is not empty");
            let what = if rollback { "rollback" } else { "update" };
            let why = format!(
                "{} of {} new tasks failed; the last, {}.{}: {}",
                failed.len(),
                units.total,
                service.spec.name,
                last.slot,
                last.status.message
            );
            match (policy.failure_action, rollback) {
                (FailureAction::Continue, _) => {}
                (FailureAction::Rollback, false) => {
                    return Step {
                        rollout: Some(Rollout::Rollback {
                            message: format!("rollback started: {why}"),
                        }),
                        ..Step::default()
                    }
                }
                _ => {
                    return Step {
                        rollout: Some(Rollout::Status(UpdateStatus {
                            state: if rollback {
                                UpdateState::RollbackPaused
                            } else {
                                UpdateState::Paused
                            },
                            started_ms: started,
                            completed_ms: None,
                            message: format!("{what} paused: {why}"),
                        })),
                        ..Step::default()
                    }
                }
            }
        }
    }

    let last_ran = new()
        .filter(|t| t.status.state == TaskState::Running)
        .map(|t| t.status.timestamp_ms)
        .max();
    if !units.outdated.is_empty() || !units.stale.is_empty() {
        let mut step = Step {
            replace: units.stale,
            ..Step::default()
        };
        if let Some(ran) = last_ran.filter(|_| policy.delay_ms > 0) {
            let next = ran.saturating_add(policy.delay_ms as i64);
            if now_ms < next {
                step.wake_at_ms = Some(next);
                return step;
            }
        }
        let room = match policy.parallelism {
            0 => usize::MAX,
            n => (n as usize).saturating_sub(units.busy),
        };
        step.replace.extend(units.outdated.into_iter().take(room));
        return step;
    }
    if !in_progress || units.busy > 0 {
        return Step::default();
    }
    let until = last_ran
        .unwrap_or(started)
        .saturating_add(policy.monitor_ms as i64);
    if now_ms < until {
        return Step {
            wake_at_ms: Some(until),
            ..Step::default()
        };
    }
    let rollback = state == Some(UpdateState::RollbackStarted);
    Step {
        rollout: Some(Rollout::Status(UpdateStatus {
            state: if rollback {
                UpdateState::RollbackCompleted
            } else {
                UpdateState::Completed
            },
            started_ms: started,
            completed_ms: Some(now_ms),
            // A rollback keeps what started it: why the update failed.
            message: match status.map(|s| s.message.as_str()) {
                Some(why) if rollback && !why.is_empty() => format!("rollback completed ({why})"),
                _ if rollback => "rollback completed".into(),
                _ => "update completed".into(),
            },
        })),
        ..Step::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::replicated::{reconcile, Unavailable};
    use crate::orchestrator::testutil::{service, task_in};
    use crate::types::*;

    /// A service at spec version 2 (a new image), updating since `at`.
    fn updating(replicas: u64, policy: UpdatePolicy, at: i64) -> Service {
        let mut s = service(replicas);
        s.spec.update = policy;
        let mut spec = s.spec.clone();
        spec.task.container.image = "new".into();
        s.set_spec(spec, at);
        s
    }

    fn running(slot: u64, version: u64, since: i64) -> Task {
        let mut t = task_in(slot, version);
        t.status.state = TaskState::Running;
        t.status.timestamp_ms = since;
        t
    }

    /// A task of the new spec (version 2) in `slot`, in `state` since `at`.
    fn new_in(s: &Service, slot: u64, state: TaskState, at: i64) -> Task {
        let mut t = crate::orchestrator::new_task(s, slot, None, 0, at);
        t.id = format!("new{slot}-{at}");
        t.meta.created_ms = at;
        t.status.state = state;
        t.status.timestamp_ms = at;
        t
    }

    fn rec(s: &Service, n: u64, ts: &[Task], now: i64) -> crate::orchestrator::plan::Plan {
        reconcile(s, n, ts, &Unavailable::default(), now)
    }

    fn stopped(p: &crate::orchestrator::plan::Plan) -> Vec<&str> {
        p.desire
            .iter()
            .filter(|(_, st)| *st == TaskState::Shutdown)
            .map(|(id, _)| id.as_str())
            .collect()
    }

    #[test]
    fn parallelism_replaces_that_many_slots_at_once() {
        let s = updating(
            5,
            UpdatePolicy {
                parallelism: 2,
                ..UpdatePolicy::default()
            },
            1_000,
        );
        let ts: Vec<Task> = (1..=5).map(|i| running(i, 1, 0)).collect();
        let plan = rec(&s, 5, &ts, 1_000);
        assert_eq!(stopped(&plan), [ts[0].id.as_str(), ts[1].id.as_str()]);
        assert!(plan.create.is_empty(), "stop-first");
        // 0: every slot at once.
        let all = updating(
            5,
            UpdatePolicy {
                parallelism: 0,
                ..UpdatePolicy::default()
            },
            1_000,
        );
        assert_eq!(stopped(&rec(&all, 5, &ts, 1_000)).len(), 5);
    }

    #[test]
    fn an_old_task_that_does_not_run_is_replaced_at_once() {
        let s = updating(2, UpdatePolicy::default(), 1_000);
        // Slot 1 waits for room that only the new spec would free; slot 2
        // runs. Both go: slot 1 at once, slot 2 as the policy says.
        let mut pending = task_in(1, 1);
        pending.status.state = TaskState::Pending;
        let old2 = running(2, 1, 0);
        let plan = rec(&s, 2, &[pending.clone(), old2.clone()], 1_000);
        assert_eq!(stopped(&plan), [pending.id.as_str(), old2.id.as_str()]);
    }

    #[test]
    fn start_first_keeps_the_old_task_until_the_new_one_runs() {
        let s = updating(
            1,
            UpdatePolicy {
                order: UpdateOrder::StartFirst,
                ..UpdatePolicy::default()
            },
            1_000,
        );
        let old = running(1, 1, 0);
        let plan = rec(&s, 1, std::slice::from_ref(&old), 1_000);
        assert!(plan.desire.is_empty(), "{plan:?}");
        assert_eq!(plan.create.len(), 1);
        assert_eq!((plan.create[0].slot, plan.create[0].spec_version), (1, 2));
        // The new one starts: both stay.
        let new = new_in(&s, 1, TaskState::Starting, 2_000);
        let plan = rec(&s, 1, &[old.clone(), new.clone()], 2_000);
        assert!(plan.is_empty(), "{plan:?}");
        // It runs: the old one stops.
        let new = new_in(&s, 1, TaskState::Running, 3_000);
        let plan = rec(&s, 1, &[old.clone(), new], 3_000);
        assert_eq!(stopped(&plan), [old.id.as_str()]);
    }

    #[test]
    fn the_delay_holds_the_next_slot_after_one_runs() {
        let s = updating(
            2,
            UpdatePolicy {
                delay_ms: 5_000,
                ..UpdatePolicy::default()
            },
            1_000,
        );
        let mut old1 = running(1, 1, 0);
        old1.desired_state = TaskState::Shutdown;
        old1.status.state = TaskState::Shutdown;
        let new1 = new_in(&s, 1, TaskState::Running, 2_000);
        let old2 = running(2, 1, 0);
        let ts = [old1, new1, old2.clone()];
        let early = rec(&s, 2, &ts, 4_000);
        assert!(early.desire.is_empty(), "{early:?}");
        assert_eq!(early.wake_at_ms, Some(7_000));
        assert_eq!(stopped(&rec(&s, 2, &ts, 7_000)), [old2.id.as_str()]);
    }

    #[test]
    fn a_rollout_completes_after_the_monitor_period() {
        let s = updating(1, UpdatePolicy::default(), 1_000);
        let new = new_in(&s, 1, TaskState::Running, 2_000);
        let plan = rec(&s, 1, std::slice::from_ref(&new), 3_000);
        assert!(plan.rollouts.is_empty());
        assert_eq!(plan.wake_at_ms, Some(7_000));
        let plan = rec(&s, 1, &[new], 7_000);
        match &plan.rollouts[..] {
            [(_, super::Rollout::Status(u))] => {
                assert_eq!(u.state, UpdateState::Completed);
                assert_eq!(u.completed_ms, Some(7_000));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn too_many_failures_run_the_failure_action() {
        let policy = |action| UpdatePolicy {
            parallelism: 2,
            failure_action: action,
            max_failure_ppm: 200_000,
            ..UpdatePolicy::default()
        };
        // 1 of 5 failed: 20%, not more than the 0.2 allowed.
        let s = updating(5, policy(FailureAction::Pause), 1_000);
        let mut failed = new_in(&s, 1, TaskState::Failed, 2_000);
        failed.status.message = "exit 3".into();
        let mut ts: Vec<Task> = (2..=5).map(|i| running(i, 1, 0)).collect();
        ts.push(failed.clone());
        assert!(rec(&s, 5, &ts, 2_000).rollouts.is_empty());
        // 2 of 5: pause, and nothing more is replaced.
        let mut second = new_in(&s, 2, TaskState::Rejected, 2_500);
        second.status.message = "no such image".into();
        ts.push(second);
        let plan = rec(&s, 5, &ts, 3_000);
        let [(_, super::Rollout::Status(u))] = &plan.rollouts[..] else {
            panic!("{plan:?}");
        };
        assert_eq!(u.state, UpdateState::Paused);
        assert!(
            u.message.contains("2 of 5 new tasks failed"),
            "{}",
            u.message
        );
        assert!(u.message.contains("web.2: no such image"), "{}", u.message);
        let mut paused = s.clone();
        paused.update_status = Some(u.clone());
        let plan = rec(&paused, 5, &ts, 4_000);
        assert!(
            plan.rollouts.is_empty() && stopped(&plan).is_empty(),
            "{plan:?}"
        );

        // Rollback: the orchestrator is told to roll back.
        let s = updating(5, policy(FailureAction::Rollback), 1_000);
        let plan = rec(&s, 5, &ts, 3_000);
        assert!(
            matches!(&plan.rollouts[..], [(_, super::Rollout::Rollback { .. })]),
            "{plan:?}"
        );
        // Continue: on with the next slots.
        let s = updating(5, policy(FailureAction::Continue), 1_000);
        let plan = rec(&s, 5, &ts, 3_000);
        assert!(plan.rollouts.is_empty(), "{plan:?}");
    }

    #[test]
    fn a_rollback_keeps_the_tasks_that_run_the_spec_it_goes_back_to() {
        let s = updating(2, UpdatePolicy::default(), 1_000);
        // Slot 1 was updated; slot 2 still runs the old spec.
        let new1 = new_in(&s, 1, TaskState::Running, 2_000);
        let old2 = running(2, 1, 0);
        let back = s
            .rolled_back("manually requested rollback".into(), 3_000)
            .unwrap();
        assert_eq!(back.spec_version, 3);
        assert_eq!(back.spec.task.container.image, "");
        let plan = rec(&back, 2, &[new1.clone(), old2], 3_000);
        assert_eq!(
            stopped(&plan),
            [new1.id.as_str()],
            "only the updated slot goes back"
        );
        // A rollback of the rollback goes forward again.
        let forward = back.rolled_back("again".into(), 4_000).unwrap();
        assert_eq!(forward.spec.task.container.image, "new");
        assert!(s.clone().previous_spec.is_some());
        let mut none = service(1);
        none.previous_spec = None;
        assert!(none.rolled_back("x".into(), 0).is_none());
    }

    #[test]
    fn any_update_resumes_a_paused_rollout() {
        let mut s = updating(1, UpdatePolicy::default(), 1_000);
        s.update_status.as_mut().unwrap().state = UpdateState::Paused;
        let mut spec = s.spec.clone();
        spec.labels.insert("a".into(), "b".into());
        s.set_spec(spec, 9_000);
        let u = s.update_status.as_ref().unwrap();
        assert_eq!((u.state, u.started_ms), (UpdateState::Updating, 9_000));
        assert_eq!(s.spec_version, 2, "labels only: no new spec version");
    }
}
