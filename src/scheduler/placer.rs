//! Placement of a whole pass at once. `place` decides one task against
//! every node; with a thousand nodes and ten thousand pending tasks that is
//! ten million filter runs. Tasks with the same image and constraints
//! pass the same filters, so the `Placer` runs the filters once per such
//! group, and keeps the load per node index so that choosing the least
//! loaded eligible node is a scan of integers. The decision is `place`'s:
//! same filters, same spread, same tie-break by node id.

use std::borrow::Borrow;
use std::collections::HashMap;

use super::filters::{constraints, explain, fits, has_image, runtime_up, Unplaceable};
use super::{place, Load};
use crate::types::{Node, Task};

/// What the filters say about one group of tasks.
/// The eligible nodes (by index), each with whether it lacks the image.
/// What decides which nodes fit a task: tasks alike share one filtering.
type GroupKey<'a> = (&'a str, Option<&'a str>, &'a [String], &'a [String]);

type Eligible = Result<Vec<(usize, bool)>, Unplaceable>;

pub struct Placer<'a> {
    /// Sorted by id: the first of equally loaded nodes is the one `place`
    /// picks.
    nodes: Vec<&'a Node>,
    index_of: HashMap<&'a str, usize>,
    /// Filter results per (image, constraints).
    groups: HashMap<GroupKey<'a>, Eligible>,
    total: Vec<usize>,
    /// Live tasks per service, per node index.
    per_service: HashMap<String, Vec<usize>>,
}

impl<'a> Placer<'a> {
    pub fn new<N: Borrow<Node>, T: Borrow<Task>>(nodes: &'a [N], tasks: &[T]) -> Placer<'a> {
        let mut sorted: Vec<&Node> = nodes.iter().map(Borrow::borrow).collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        let index_of = sorted
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let mut placer = Placer {
            total: vec![0; sorted.len()],
            nodes: sorted,
            index_of,
            groups: HashMap::new(),
            per_service: HashMap::new(),
        };
        for t in tasks.iter().map(|t| t.borrow()).filter(|t| t.is_live()) {
            if let Some(n) = &t.node_id {
                placer.add(n, &t.service_id);
            }
        }
        placer
    }

    /// Where `task` should run, or why it can run nowhere; the same answer
    /// as `place` with the load so far. Call `add` for a task placed.
    pub fn place(&mut self, task: &'a Task) -> Result<String, Unplaceable> {
        if task.node_id.is_some() {
            // Made for one node: only that node can take it, so the load,
            // which only ranks nodes, does not matter.
            return place(task, &self.nodes, &Load::default());
        }
        let spec = &task.spec;
        let key = (
            spec.container.image.as_str(),
            spec.container.image_digest.as_deref(),
            spec.container.image_platforms.as_slice(),
            spec.placement.constraints.as_slice(),
        );
        let nodes = &self.nodes;
        let eligible = self
            .groups
            .entry(key)
            .or_insert_with(|| filter(task, nodes));
        let ids = match eligible {
            Ok(ids) => ids,
            Err(why) => return Err(why.clone()),
        };
        let zeros;
        let per_service = match self.per_service.get(&task.service_id) {
            Some(v) => v,
            None => {
                zeros = vec![0; self.nodes.len()];
                &zeros
            }
        };
        // Spread first; among equals, a node with the image.
        let best = ids
            .iter()
            .copied()
            .min_by_key(|&(i, lacks)| (per_service[i], lacks, self.total[i], i))
            .map(|(i, _)| i);
        match best {
            Some(i) => Ok(self.nodes[i].id.clone()),
            None => Err(explain(&[])),
        }
    }

    pub fn add(&mut self, node: &str, service: &str) {
        let Some(&i) = self.index_of.get(node) else {
            return; // a node that is gone: it takes nothing new anyway
        };
        self.total[i] += 1;
        // Looked up before inserting: a String per placement is what the
        // pass spent most of its time allocating.
        match self.per_service.get_mut(service) {
            Some(counts) => counts[i] += 1,
            None => {
                let mut counts = vec![0; self.nodes.len()];
                counts[i] += 1;
                self.per_service.insert(service.to_string(), counts);
            }
        }
    }
}

/// The nodes (by index) that pass the filters for `task`, or why none does.
fn filter(task: &Task, nodes: &[&Node]) -> Eligible {
    let constraints = constraints(&task.spec)?;
    let mut ids = Vec::new();
    let mut misfits = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        match fits(&task.spec, &constraints, node).and_then(|()| runtime_up(node)) {
            Ok(()) => ids.push((i, !has_image(&task.spec, node))),
            Err(why) => misfits.push(why),
        }
    }
    if ids.is_empty() {
        Err(explain(&misfits))
    } else {
        Ok(ids)
    }
}
