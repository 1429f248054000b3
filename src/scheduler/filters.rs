//! The placement filters. Each says whether a node can take a task, and if
//! not, a short reason that is counted into the task's status message.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use super::constraint::Constraint;
use crate::registry::ImagePlatform;
use crate::types::{Availability, Node, NodeState, TaskSpec};

/// Why one node cannot take a task. Displayed for many nodes ("2 nodes
/// not ready"); `singular` words it for one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Misfit {
    NotReady,
    NotActive,
    NoMatch(String),
    Platform(String),
    /// The service's image, as its registry listed it, has nothing for
    /// the node's platform.
    ImagePlatform(String),
    /// The node's agent cannot reach its container runtime.
    NoRuntime,
    /// The node runs a shoal that cannot give a task a network of its own.
    NoNetworks,
    /// The node runs a shoal that cannot give a task secrets or configs.
    NoFiles,
    /// The node runs a shoal that would leave out some of the task's
    /// options (mounts, capabilities, devices, …).
    NoOptions,
    /// The node has no such device.
    NoDevice(String),
    /// The task's volume is on another node.
    NoVolume(String),
}

impl std::fmt::Display for Misfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Misfit::NotReady => write!(f, "not ready"),
            Misfit::NotActive => write!(f, "not active"),
            Misfit::NoMatch(c) => write!(f, "do not match {c}"),
            Misfit::Platform(p) => write!(f, "have an unsupported platform ({p})"),
            Misfit::ImagePlatform(p) => write!(f, ": image has no {p}"),
            Misfit::NoRuntime => write!(f, "cannot reach their container runtime"),
            Misfit::NoNetworks => write!(f, "run an older shoal without task networks"),
            Misfit::NoFiles => write!(f, "run an older shoal without secrets and configs"),
            Misfit::NoOptions => write!(f, "run an older shoal without the task's options"),
            Misfit::NoDevice(d) => write!(f, "do not have device {d}"),
            Misfit::NoVolume(v) => write!(f, "do not have volume {v}"),
        }
    }
}

impl Misfit {
    fn singular(&self) -> String {
        match self {
            Misfit::NotReady | Misfit::NotActive => self.to_string(),
            Misfit::NoMatch(c) => format!("does not match {c}"),
            Misfit::Platform(p) => format!("has an unsupported platform ({p})"),
            Misfit::ImagePlatform(_) => self.to_string(),
            Misfit::NoRuntime => "cannot reach its container runtime".into(),
            Misfit::NoNetworks => "runs an older shoal without task networks".into(),
            Misfit::NoFiles => "runs an older shoal without secrets and configs".into(),
            Misfit::NoOptions => "runs an older shoal without the task's options".into(),
            Misfit::NoDevice(d) => format!("does not have device {d}"),
            Misfit::NoVolume(v) => format!("does not have volume {v}"),
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
/// why not. A node need not have the image (it pulls it), but it must be
/// of a platform the image has: as the registry listed them when the
/// service's tag was resolved, or as the node's own copy says.
pub fn fits(spec: &TaskSpec, constraints: &[Constraint], node: &Node) -> Result<(), Misfit> {
    if node.status.state != NodeState::Ready {
        return Err(Misfit::NotReady);
    }
    if node.spec.availability != Availability::Active {
        return Err(Misfit::NotActive);
    }
    if let Some(c) = constraints.iter().find(|c| !c.matches(node)) {
        return Err(Misfit::NoMatch(c.to_string()));
    }
    // An older node would run the task on the host's network, which is
    // not what the spec says: its ports could clash, and it would join
    // none of its networks.
    if !spec.network.is_host() && node.description.level < crate::LEVEL_NETWORKS {
        return Err(Misfit::NoNetworks);
    }
    // An older node would run the task without its files.
    if spec.file_ids().next().is_some() && node.description.level < crate::LEVEL_SECRETS {
        return Err(Misfit::NoFiles);
    }
    let options = spec.container.has_options() || !spec.mounts.is_empty();
    if options && node.description.level < crate::LEVEL_OPTIONS {
        return Err(Misfit::NoOptions);
    }
    if let Some(d) = spec
        .container
        .devices
        .iter()
        .find(|d| !crate::types::node_has_device(&node.description.devices, &d.host))
    {
        return Err(Misfit::NoDevice(d.host.clone()));
    }
    let p = &node.description.platform;
    let here = ImagePlatform::new(&p.os, &p.arch, "");
    let listed = &spec.container.image_platforms;
    if !listed.is_empty() {
        let runs = listed
            .iter()
            .filter_map(|s| ImagePlatform::parse(s).ok())
            .any(|i| i.runs_on(&here));
        if !runs {
            return Err(Misfit::ImagePlatform(here.to_string()));
        }
        return Ok(());
    }
    let image = &spec.container.image;
    if let Some(info) = node.description.images.iter().find(|i| &i.name == image) {
        let platform = p.to_string();
        if !info.platforms.is_empty() && !info.platforms.contains(&platform) {
            return Err(Misfit::Platform(platform));
        }
    }
    Ok(())
}

/// The task's named volumes that some node of `nodes` has: a task that
/// uses one goes only where it is (a volume is a node's directory). One
/// that no node has yet is made where the task lands.
pub fn volumes_held<'a, N: Borrow<Node>>(spec: &'a TaskSpec, nodes: &[N]) -> Vec<&'a str> {
    spec.volume_names()
        .filter(|v| {
            nodes
                .iter()
                .any(|n| n.borrow().description.volumes.iter().any(|x| x == v))
        })
        .collect()
}

/// Whether `node` has every volume of `held` (see `volumes_held`).
pub fn has_volumes(held: &[&str], node: &Node) -> Result<(), Misfit> {
    match held
        .iter()
        .find(|v| !node.description.volumes.iter().any(|x| x == *v))
    {
        Some(v) => Err(Misfit::NoVolume(v.to_string())),
        None => Ok(()),
    }
}

/// Whether `node` has the task's image (by name, or by the pinned
/// digest): such nodes are preferred, as they start it without a pull.
pub fn has_image(spec: &TaskSpec, node: &Node) -> bool {
    let c = &spec.container;
    node.description
        .images
        .iter()
        .any(|i| i.name == c.image || c.image_digest.as_ref() == Some(&i.digest))
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
            // ": image has no linux/arm" reads after the count directly.
            let sep = if why.starts_with(':') { "" } else { " " };
            if n == 1 {
                format!("1 node{sep}{}", m.singular())
            } else {
                format!("{n} nodes{sep}{why}")
            }
        })
        .collect();
    Unplaceable(format!("no suitable node ({})", parts.join(", ")))
}

/// Nodes that should run a task of a global service with this spec: the
/// ready, active nodes that pass its filters.
pub fn eligible_for_global<N: Borrow<Node>>(nodes: &[N], spec: &TaskSpec) -> Vec<String> {
    let Ok(constraints) = constraints(spec) else {
        return Vec::new();
    };
    nodes
        .iter()
        .map(Borrow::borrow)
        .filter(|n| fits(spec, &constraints, n).is_ok())
        .map(|n| n.id.clone())
        .collect()
}
