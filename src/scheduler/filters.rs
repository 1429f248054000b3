//! The placement filters. Each says whether a node can take a task, and if
//! not, a short reason that is counted into the task's status message.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use super::constraint::Constraint;
use crate::types::{Availability, Node, NodeState, TaskSpec};

/// Why one node cannot take a task. Displayed for many nodes ("2 nodes
/// not ready"); `singular` words it for one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Misfit {
    NotReady,
    NotActive,
    NoMatch(String),
    Platform(String),
    LacksImage(String),
    /// The node's agent cannot reach its container runtime.
    NoRuntime,
}

impl std::fmt::Display for Misfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Misfit::NotReady => write!(f, "not ready"),
            Misfit::NotActive => write!(f, "not active"),
            Misfit::NoMatch(c) => write!(f, "do not match {c}"),
            Misfit::Platform(p) => write!(f, "have an unsupported platform ({p})"),
            Misfit::LacksImage(i) => write!(f, "lack image {i}"),
            Misfit::NoRuntime => write!(f, "cannot reach their container runtime"),
        }
    }
}

impl Misfit {
    fn singular(&self) -> String {
        match self {
            Misfit::NotReady | Misfit::NotActive => self.to_string(),
            Misfit::NoMatch(c) => format!("does not match {c}"),
            Misfit::Platform(p) => format!("has an unsupported platform ({p})"),
            Misfit::LacksImage(i) => format!("lacks image {i}"),
            Misfit::NoRuntime => "cannot reach its container runtime".into(),
        }
    }
}

/// Why a task can run nowhere: "no suitable node (1 node not ready, …)",
/// kept as the pending task's status message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unplaceable(pub String);

impl PartialEq<&str> for Unplaceable {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// A task spec's constraints, parsed once for all the nodes it is checked
/// against. The API refuses a bad one; one that is stored anyway (by an
/// older release) places the task nowhere, and says so.
pub fn constraints(spec: &TaskSpec) -> Result<Vec<Constraint>, Unplaceable> {
    spec.placement
        .constraints
        .iter()
        .map(|e| Constraint::parse(e).map_err(|e| Unplaceable(e.to_string())))
        .collect()
}

/// Whether `node` can start a new task: not while its agent cannot reach
/// its container runtime (the task would only be rejected, again and
/// again). Tasks already there stay, and a global service keeps the node.
pub fn runtime_up(node: &Node) -> Result<(), Misfit> {
    match node.description.runtime_error {
        Some(_) => Err(Misfit::NoRuntime),
        None => Ok(()),
    }
}

/// Whether `node` can take a task of `spec` (its `constraints` parsed), or
/// why not. `image_anywhere` says whether any node has the task's image:
/// until registry pulls exist, a node without the image is not eligible,
/// but when no node has it the task goes to a node anyway, which rejects
/// it with "image X not found on node Y".
pub fn fits(
    spec: &TaskSpec,
    constraints: &[Constraint],
    node: &Node,
    image_anywhere: bool,
) -> Result<(), Misfit> {
    if node.status.state != NodeState::Ready {
        return Err(Misfit::NotReady);
    }
    if node.spec.availability != Availability::Active {
        return Err(Misfit::NotActive);
    }
    if let Some(c) = constraints.iter().find(|c| !c.matches(node)) {
        return Err(Misfit::NoMatch(c.to_string()));
    }
    let image = &spec.container.image;
    match node.description.images.iter().find(|i| &i.name == image) {
        Some(info) => {
            let platform = node.description.platform.to_string();
            if !info.platforms.is_empty() && !info.platforms.contains(&platform) {
                return Err(Misfit::Platform(platform));
            }
        }
        None if image_anywhere => return Err(Misfit::LacksImage(image.clone())),
        None => {}
    }
    Ok(())
}

/// "no suitable node (1 node not ready, 2 nodes do not match node.labels.zone==a)"
pub fn explain(misfits: &[Misfit]) -> Unplaceable {
    if misfits.is_empty() {
        return Unplaceable("no suitable node (no nodes)".into());
    }
    let mut counts: BTreeMap<String, (usize, &Misfit)> = BTreeMap::new();
    for m in misfits {
        counts.entry(m.to_string()).or_insert((0, m)).0 += 1;
    }
    let parts: Vec<String> = counts
        .into_iter()
        .map(|(why, (n, m))| {
            if n == 1 {
                format!("1 node {}", m.singular())
            } else {
                format!("{n} nodes {why}")
            }
        })
        .collect();
    Unplaceable(format!("no suitable node ({})", parts.join(", ")))
}

/// Nodes that should run a task of a global service with this spec: the
/// ready, active nodes that pass its filters.
pub fn eligible_for_global<N: Borrow<Node>>(nodes: &[N], spec: &TaskSpec) -> Vec<String> {
    let nodes = || nodes.iter().map(Borrow::borrow);
    let image = &spec.container.image;
    let image_anywhere = nodes().any(|n| n.description.images.iter().any(|i| &i.name == image));
    let Ok(constraints) = constraints(spec) else {
        return Vec::new();
    };
    nodes()
        .filter(|n| fits(spec, &constraints, n, image_anywhere).is_ok())
        .map(|n| n.id.clone())
        .collect()
}
