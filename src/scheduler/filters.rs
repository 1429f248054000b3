//! The placement filters. Each says whether a node can take a task, and if
//! not, a short reason that is counted into the task's status message.

use std::collections::BTreeMap;

use crate::types::{Availability, Node, NodeState, Task};

pub fn fits(_task: &Task, node: &Node) -> Result<(), &'static str> {
    if node.status.state != NodeState::Ready {
        return Err("not ready");
    }
    if node.spec.availability != Availability::Active {
        return Err("not active");
    }
    Ok(())
}

/// "no suitable node (1 node not ready, 2 nodes not active)"
pub fn explain(misfits: &[&'static str]) -> String {
    if misfits.is_empty() {
        return "no suitable node (no nodes)".into();
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for m in misfits {
        *counts.entry(m).or_default() += 1;
    }
    let parts: Vec<String> = counts
        .into_iter()
        .map(|(why, n)| format!("{n} node{} {why}", if n == 1 { "" } else { "s" }))
        .collect();
    format!("no suitable node ({})", parts.join(", "))
}

/// Nodes that should run a task of every global service.
pub fn eligible_for_global(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| {
            n.status.state == NodeState::Ready && n.spec.availability == Availability::Active
        })
        .map(|n| n.id.clone())
        .collect()
}
