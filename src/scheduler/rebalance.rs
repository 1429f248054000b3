//! `service rebalance` as a pure decision: which of a replicated service's
//! tasks to move so that they spread evenly again. The scheduler never
//! moves a running task by itself (as Swarm, a node that comes back stays
//! empty until new tasks come); the user asks, and the tasks chosen here
//! are replaced as an update replaces them, the scheduler placing each new
//! one on the node with the fewest.

use std::collections::BTreeMap;

use crate::types::Task;

/// The ids of the tasks to move, from `live` (the service's tasks meant to
/// run, placed) given the nodes that may run them. Every task on a node
/// that may no longer run it moves; then each eligible node keeps as many
/// as an even spread gives it (the busiest nodes keep the remainder), the
/// others move, the highest slots first. Empty when there is nothing to do
/// or nowhere to go.
pub fn moves(live: &[&Task], eligible: &[String]) -> Vec<String> {
    if eligible.is_empty() {
        return Vec::new();
    }
    let mut by_node: BTreeMap<&str, Vec<&Task>> =
        eligible.iter().map(|n| (n.as_str(), Vec::new())).collect();
    let mut out = Vec::new();
    for t in live {
        match t.node_id.as_deref().and_then(|n| by_node.get_mut(n)) {
            Some(ts) => ts.push(t),
            None => out.push(t.id.clone()),
        }
    }
    let k = eligible.len();
    let n = live.len();
    // Busiest first: they keep the remainder of the division, so that no
    // more tasks move than an even spread needs.
    let mut nodes: Vec<(&str, Vec<&Task>)> = by_node.into_iter().collect();
    nodes.sort_by_key(|(id, ts)| (std::cmp::Reverse(ts.len()), *id));
    for (i, (_, ts)) in nodes.iter_mut().enumerate() {
        let keep = n / k + usize::from(i < n % k);
        ts.sort_by_key(|t| t.slot);
        out.extend(ts.iter().skip(keep).map(|t| t.id.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(node: &str, slot: u64) -> Task {
        let mut t = crate::orchestrator::probe_task();
        t.id = format!("{node}{slot}");
        t.slot = slot;
        t.node_id = Some(node.into());
        t
    }

    fn nodes(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_node_that_came_back_gets_its_share() {
        let ts: Vec<Task> = (1..=4).map(|s| on("a", s)).collect();
        let live: Vec<&Task> = ts.iter().collect();
        // Two of four move, the highest slots.
        assert_eq!(moves(&live, &nodes(&["a", "b"])), vec!["a3", "a4"]);
    }

    #[test]
    fn an_even_spread_moves_nothing() {
        let ts = [on("a", 1), on("b", 2), on("a", 3)];
        let live: Vec<&Task> = ts.iter().collect();
        assert!(moves(&live, &nodes(&["a", "b"])).is_empty());
        assert!(moves(&live, &[]).is_empty());
    }

    #[test]
    fn tasks_on_nodes_that_may_not_run_them_move() {
        let ts = [on("a", 1), on("gone", 2), on("b", 3)];
        let live: Vec<&Task> = ts.iter().collect();
        assert_eq!(moves(&live, &nodes(&["a", "b"])), vec!["gone2"]);
    }

    #[test]
    fn five_over_three_nodes_keeps_two_two_one() {
        let ts: Vec<Task> = (1..=5).map(|s| on("a", s)).collect();
        let live: Vec<&Task> = ts.iter().collect();
        assert_eq!(moves(&live, &nodes(&["a", "b", "c"])).len(), 3);
    }
}
