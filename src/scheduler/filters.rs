//! The placement filters. Each says whether a node can take a task, and if
//! not, a short reason that is counted into the task's status message.

use std::collections::BTreeMap;

use super::constraint::Constraint;
use crate::types::{Availability, Node, NodeState, TaskSpec};

/// Whether `node` can take `task`, or why not. `image_anywhere` says
/// whether any node has the task's image: until registry pulls exist, a node
/// without the image is not eligible, but when no node has it the task goes
/// to a node anyway, which rejects it with "image X not found on node Y".
pub fn fits(spec: &TaskSpec, node: &Node, image_anywhere: bool) -> Result<(), String> {
    if node.status.state != NodeState::Ready {
        return Err("not ready".into());
    }
    if node.spec.availability != Availability::Active {
        return Err("not active".into());
    }
    for expr in &spec.placement.constraints {
        match Constraint::parse(expr) {
            Ok(c) if c.matches(node) => {}
            Ok(c) => return Err(format!("do not match {c}")),
            Err(e) => return Err(e),
        }
    }
    let image = &spec.container.image;
    match node.description.images.iter().find(|i| &i.name == image) {
        Some(info) => {
            let platform = node.description.platform.to_string();
            if !info.platforms.is_empty() && !info.platforms.contains(&platform) {
                return Err(format!("have an unsupported platform ({platform})"));
            }
        }
        None if image_anywhere => return Err(format!("lack image {image}")),
        None => {}
    }
    Ok(())
}

/// "no suitable node (1 node not ready, 2 nodes do not match node.labels.zone==a)"
pub fn explain(misfits: &[String]) -> String {
    if misfits.is_empty() {
        return "no suitable node (no nodes)".into();
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for m in misfits {
        *counts.entry(m).or_default() += 1;
    }
    let parts: Vec<String> = counts
        .into_iter()
        .map(|(why, n)| {
            if n == 1 {
                format!("1 node {}", singular(why))
            } else {
                format!("{n} nodes {why}")
            }
        })
        .collect();
    format!("no suitable node ({})", parts.join(", "))
}

/// "do not match" → "does not match" and so on, for one node.
fn singular(why: &str) -> String {
    for (plural, one) in [
        ("do not ", "does not "),
        ("lack ", "lacks "),
        ("have ", "has "),
    ] {
        if let Some(rest) = why.strip_prefix(plural) {
            return format!("{one}{rest}");
        }
    }
    why.to_string()
}

/// Nodes that should run a task of a global service with this spec: the
/// ready, active nodes that pass its filters.
pub fn eligible_for_global(nodes: &[Node], spec: &TaskSpec) -> Vec<String> {
    let image = &spec.container.image;
    let image_anywhere = nodes
        .iter()
        .any(|n| n.description.images.iter().any(|i| &i.name == image));
    nodes
        .iter()
        .filter(|n| fits(spec, n, image_anywhere).is_ok())
        .map(|n| n.id.clone())
        .collect()
}
