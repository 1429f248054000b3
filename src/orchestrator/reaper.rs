//! Which old tasks to delete, as a pure decision. Deleting a task is what
//! makes its node remove the container, so history stays bounded.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use crate::types::{Task, TaskState};

/// Ids of tasks to delete:
/// - tasks meant to be removed (scale down, service removed) once they
///   have stopped, or if they never reached a node;
/// - per slot (per node for global services), finished tasks beyond
///   `history_limit` tasks, the oldest first.
pub fn prune(tasks: &[impl Borrow<Task>], history_limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut slots: BTreeMap<(&str, u64, &str), Vec<&Task>> = BTreeMap::new();
    for t in tasks.iter().map(Borrow::borrow) {
        let stopped = t.status.state.is_terminal() || t.status.state < TaskState::Assigned;
        if t.desired_state >= TaskState::Remove && stopped {
            out.push(t.id.clone());
            continue;
        }
        let node = if t.slot == 0 {
            t.node_id.as_deref().unwrap_or("")
        } else {
            ""
        };
        slots
            .entry((t.service_id.as_str(), t.slot, node))
            .or_default()
            .push(t);
    }
    for ts in slots.values_mut() {
        if ts.len() <= history_limit {
            continue;
        }
        ts.sort_by_key(|t| (t.meta.created_ms, t.meta.version));
        let mut excess = ts.len() - history_limit;
        for t in ts.iter() {
            if excess == 0 {
                break;
            }
            if t.desired_state > TaskState::Running && t.status.state.is_terminal() {
                out.push(t.id.clone());
                excess -= 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::testutil::task_in;

    fn old(n: i64) -> Task {
        let mut t = task_in(1, 1);
        t.meta.created_ms = n;
        t.desired_state = TaskState::Shutdown;
        t.status.state = TaskState::Failed;
        t
    }

    #[test]
    fn keeps_five_tasks_per_slot_dropping_the_oldest() {
        let mut ts: Vec<Task> = (0..7).map(old).collect();
        let mut live = task_in(1, 1);
        live.meta.created_ms = 100;
        live.status.state = TaskState::Running;
        ts.push(live);
        let gone = prune(&ts, 5);
        assert_eq!(
            gone,
            vec![ts[0].id.clone(), ts[1].id.clone(), ts[2].id.clone()]
        );
    }

    #[test]
    fn removed_tasks_go_once_stopped() {
        let mut running = task_in(2, 1);
        running.desired_state = TaskState::Remove;
        running.status.state = TaskState::Running;
        let mut stopped = running.clone();
        stopped.id = "stopped".into();
        stopped.status.state = TaskState::Shutdown;
        assert_eq!(prune(&[running, stopped], 5), vec!["stopped".to_string()]);
    }
}
