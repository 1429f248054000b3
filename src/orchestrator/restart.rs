//! The restart policy as a pure decision: a task in a slot has ended while
//! it was meant to run; does a new one start, and when?

use crate::types::{RestartCondition, RestartPolicy, Task, TaskState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Start a replacement now.
    Now,
    /// Start a replacement at this time (ms since epoch).
    At(i64),
    /// Leave the slot as it is.
    Never,
}

/// The longest a slot waits between rejected tasks: a node that lacks an
/// image (or cannot start a container at all) is asked again at least this
/// often, but not in a tight loop.
pub const MAX_REJECTED_DELAY_MS: u64 = 5 * 60 * 1000;

/// How many tasks of one slot, newest first, were rejected in a row (the
/// slot's history, as the store keeps it).
pub fn rejected_in_a_row<'a>(history: impl IntoIterator<Item = &'a Task>) -> u32 {
    let mut ts: Vec<&Task> = history.into_iter().collect();
    ts.sort_by_key(|t| std::cmp::Reverse((t.meta.created_ms, t.meta.version)));
    ts.iter()
        .take_while(|t| t.status.state == TaskState::Rejected)
        .count() as u32
}

/// `ended` is a task whose observed state is terminal and whose desired
/// state is still `running`. `rejected` is how many tasks of its slot in a
/// row, `ended` included, were rejected (a node could not start them, as
/// when no node has the image): each one doubles the delay, up to
/// `MAX_REJECTED_DELAY_MS`, so that what cannot start is not retried every
/// few seconds forever.
pub fn decide(policy: &RestartPolicy, ended: &Task, rejected: u32, now_ms: i64) -> Restart {
    let failed = match ended.status.state {
        TaskState::Complete => ended.status.exit_code.unwrap_or(0) != 0,
        // Shut down without being asked (the node stopped it, or it vanished).
        TaskState::Shutdown => false,
        _ => true,
    };
    let wanted = match policy.condition {
        RestartCondition::Any => true,
        RestartCondition::OnFailure => failed,
        RestartCondition::None => false,
    };
    if !wanted {
        return Restart::Never;
    }
    if policy.max_attempts.is_some_and(|max| ended.restarts >= max) {
        return Restart::Never;
    }
    // Saturating: a delay beyond i64 (refused at the API, but maybe stored
    // by an older release) means "not in our lifetime", never "now".
    let delay_ms = match rejected {
        0 | 1 => policy.delay_ms,
        n => policy
            .delay_ms
            .saturating_mul(1 << (n - 1).min(16))
            .min(MAX_REJECTED_DELAY_MS.max(policy.delay_ms)),
    };
    let due = ended
        .status
        .timestamp_ms
        .saturating_add(i64::try_from(delay_ms).unwrap_or(i64::MAX));
    if now_ms >= due {
        Restart::Now
    } else {
        Restart::At(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::testutil::task_in;

    fn ended(state: TaskState, code: i32, restarts: u64) -> Task {
        let mut t = task_in(1, 1);
        t.status.state = state;
        t.status.exit_code = Some(code);
        t.status.timestamp_ms = 1_000;
        t.restarts = restarts;
        t
    }

    fn policy(condition: RestartCondition, max: Option<u64>) -> RestartPolicy {
        RestartPolicy {
            condition,
            delay_ms: 5_000,
            max_attempts: max,
        }
    }

    #[test]
    fn any_restarts_after_the_delay() {
        let p = policy(RestartCondition::Any, None);
        let t = ended(TaskState::Complete, 0, 0);
        assert_eq!(decide(&p, &t, 0, 2_000), Restart::At(6_000));
        assert_eq!(decide(&p, &t, 0, 6_000), Restart::Now);
    }

    #[test]
    fn on_failure_restarts_only_failures() {
        let p = policy(RestartCondition::OnFailure, None);
        assert_eq!(
            decide(&p, &ended(TaskState::Complete, 0, 0), 0, 9_000),
            Restart::Never
        );
        assert_eq!(
            decide(&p, &ended(TaskState::Failed, 137, 0), 0, 9_000),
            Restart::Now
        );
        assert_eq!(
            decide(&p, &ended(TaskState::Complete, 3, 0), 0, 9_000),
            Restart::Now
        );
    }

    #[test]
    fn a_huge_delay_never_wraps_into_a_restart_now() {
        let mut p = policy(RestartCondition::Any, None);
        p.delay_ms = 300_000_000 * 365 * 24 * 3600 * 1000;
        let t = ended(TaskState::Complete, 0, 0);
        assert!(matches!(decide(&p, &t, 0, 9_000), Restart::At(due) if due > 9_000));
        p.delay_ms = u64::MAX;
        assert_eq!(decide(&p, &t, 0, 9_000), Restart::At(i64::MAX));
    }

    #[test]
    fn none_never_restarts() {
        let p = policy(RestartCondition::None, None);
        assert_eq!(
            decide(&p, &ended(TaskState::Failed, 1, 0), 0, 9_000),
            Restart::Never
        );
    }

    #[test]
    fn max_attempts_stops_restarts() {
        let p = policy(RestartCondition::Any, Some(2));
        assert_eq!(
            decide(&p, &ended(TaskState::Failed, 1, 1), 0, 9_000),
            Restart::Now
        );
        assert_eq!(
            decide(&p, &ended(TaskState::Failed, 1, 2), 0, 9_000),
            Restart::Never
        );
    }

    #[test]
    fn rejections_in_a_row_back_off_up_to_a_bound() {
        let p = policy(RestartCondition::Any, None);
        let t = ended(TaskState::Rejected, 0, 0);
        // 5 s, then 10 s, 20 s, …, never more than 5 minutes.
        assert_eq!(decide(&p, &t, 1, 2_000), Restart::At(6_000));
        assert_eq!(decide(&p, &t, 2, 2_000), Restart::At(11_000));
        assert_eq!(decide(&p, &t, 3, 2_000), Restart::At(21_000));
        assert_eq!(
            decide(&p, &t, 40, 2_000),
            Restart::At(1_000 + MAX_REJECTED_DELAY_MS as i64)
        );
        // A delay set above the bound is kept.
        let mut long = p.clone();
        long.delay_ms = 10 * 60 * 1000;
        assert_eq!(
            decide(&long, &t, 5, 2_000),
            Restart::At(1_000 + 10 * 60 * 1000)
        );
    }

    #[test]
    fn only_the_latest_rejections_count() {
        let mk = |state, created| {
            let mut t = ended(state, 1, 0);
            t.meta.created_ms = created;
            t
        };
        let ts = [
            mk(TaskState::Rejected, 1),
            mk(TaskState::Failed, 2),
            mk(TaskState::Rejected, 3),
            mk(TaskState::Rejected, 4),
        ];
        assert_eq!(rejected_in_a_row(ts.iter()), 2);
        assert_eq!(rejected_in_a_row(ts[..2].iter()), 0);
    }
}
