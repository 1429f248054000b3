//! Placement of a whole pass at once. `place` decides one task against
//! every node; with a thousand nodes and ten thousand pending tasks that is
//! ten million filter runs. Tasks with the same image and constraints
//! pass the same filters, so the `Placer` runs the filters once per such
//! group, and keeps the load per node index so that choosing the least
//! loaded eligible node is a scan of integers. The decision is `place`'s:
//! same filters, same spread, same tie-break by node id.

use std::borrow::Borrow;
use std::collections::HashMap;

use super::filters::{
    constraints, explain, fits, has_image, has_volumes, runtime_up, volumes_held, Unplaceable,
};
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
    /// What the live tasks of each node (by index) reserve: CPUs (in
    /// billionths) and memory bytes.
    reserved: Vec<(u64, u64)>,
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
            reserved: vec![(0, 0); sorted.len()],
            nodes: sorted,
            index_of,
            groups: HashMap::new(),
            per_service: HashMap::new(),
        };
        for t in tasks.iter().map(|t| t.borrow()).filter(|t| t.is_live()) {
            if let Some(n) = &t.node_id {
                placer.add(n, t);
            }
        }
        placer
    }

    /// Whether node `i` has room for what `task` reserves, or what it lacks.
    fn room(&self, i: usize, task: &Task) -> Result<(), Short> {
        room(self.nodes[i], self.reserved[i], task)
    }

    /// Where `task` should run, or why it can run nowhere; the same answer
    /// as `place` with the load so far. Call `add` for a task placed.
    pub fn place(&mut self, task: &'a Task) -> Result<String, Unplaceable> {
        if task.node_id.is_some() {
            // Made for one node: only that node can take it, so the load,
            // which only ranks nodes, does not matter; its room does.
            let node = place(task, &self.nodes, &Load::default())?;
            if let Some(&i) = self.index_of.get(node.as_str()) {
                self.room(i, task).map_err(|s| short(&[s]))?;
            }
            return Ok(node);
        }
        let spec = &task.spec;
        let key = (
            spec.container.image.as_str(),
            spec.container.image_digest.as_deref(),
            spec.container.image_platforms.as_slice(),
            spec.placement.constraints.as_slice(),
        );
        let nodes = &self.nodes;
        let reserved = &self.reserved;
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
        // Only nodes below the service's most per node, with room for
        // what the task reserves.
        let placement = &spec.placement;
        let max = placement.max_replicas_per_node;
        let mut lacking = Vec::new();
        let mut full = 0;
        let fit: Vec<(usize, bool)> = ids
            .iter()
            .copied()
            .filter(|&(i, _)| {
                if max > 0 && per_service[i] as u64 >= max {
                    full += 1;
                    return false;
                }
                match room(nodes[i], reserved[i], task) {
                    Ok(()) => true,
                    Err(s) => {
                        lacking.push(s);
                        false
                    }
                }
            })
            .collect();
        // The spread preferences first (Swarm's: the label value with the
        // fewest of the service's tasks, label by label), then the spread
        // over nodes; among equals, a node with the image.
        let groups = spread_groups(&placement.spread, nodes, ids, per_service);
        let best = fit
            .iter()
            .copied()
            .min_by_key(|&(i, lacks)| {
                let by_label: Vec<usize> = groups
                    .iter()
                    .map(|(key, counts)| counts[&label(nodes[i], key)])
                    .collect();
                (by_label, per_service[i], lacks, self.total[i], i)
            })
            .map(|(i, _)| i);
        match best {
            Some(i) => Ok(self.nodes[i].id.clone()),
            None if !lacking.is_empty() => Err(short(&lacking)),
            None if full > 0 => Err(Unplaceable(format!(
                "no suitable node ({full} node{} already {} {max} of its tasks, the most per node)",
                if full == 1 { "" } else { "s" },
                if full == 1 { "has" } else { "have" },
            ))),
            None => Err(explain(&[])),
        }
    }

    /// Counts `task` on `node`: its share of the spread and what it
    /// reserves.
    pub fn add(&mut self, node: &str, task: &Task) {
        let service = task.service_id.as_str();
        let Some(&i) = self.index_of.get(node) else {
            return; // a node that is gone: it takes nothing new anyway
        };
        self.total[i] += 1;
        let r = &task.spec.resources;
        let (cpu, mem) = &mut self.reserved[i];
        *cpu = cpu.saturating_add(r.reserve_nano_cpus);
        *mem = mem.saturating_add(r.reserve_memory_bytes);
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

/// For each spread preference, its label key and the service's tasks on
/// the eligible nodes of each of the label's values (None: the nodes
/// without it, a group of their own, as Swarm has it).
fn spread_groups<'n>(
    spread: &'n [String],
    nodes: &[&'n Node],
    ids: &[(usize, bool)],
    per_service: &[usize],
) -> Vec<(&'n str, HashMap<Option<&'n str>, usize>)> {
    spread
        .iter()
        .map(|pref| {
            // Checked when the service was written; a bad one spreads
            // nothing (every node in one group).
            let key = crate::types::Placement::spread_key(pref).unwrap_or("");
            let mut counts = HashMap::new();
            for &(i, _) in ids {
                *counts.entry(label(nodes[i], key)).or_default() += per_service[i];
            }
            (key, counts)
        })
        .collect()
}

fn label<'n>(node: &'n Node, key: &str) -> Option<&'n str> {
    node.spec.labels.get(key).map(String::as_str)
}

/// Whether `node`, whose tasks reserve `reserved` (CPUs in billionths,
/// memory bytes), has room for what `task` reserves, or what it lacks.
fn room(node: &Node, reserved: (u64, u64), task: &Task) -> Result<(), Short> {
    let want = &task.spec.resources;
    let node = &node.description;
    let (cpu, mem) = reserved;
    let cpus = u64::from(node.cpus) * 1_000_000_000;
    if want.reserve_memory_bytes > 0
        && mem.saturating_add(want.reserve_memory_bytes) > node.memory_bytes
    {
        return Err(Short::Memory(want.reserve_memory_bytes));
    }
    if want.reserve_nano_cpus > 0 && cpu.saturating_add(want.reserve_nano_cpus) > cpus {
        return Err(Short::Cpu(want.reserve_nano_cpus));
    }
    Ok(())
}

/// What a node lacks for a task's reservations.
#[derive(Debug, Clone, Copy)]
enum Short {
    Memory(u64),
    Cpu(u64),
}

/// "no suitable node (3 nodes have less than 512 MiB of memory free)".
fn short(lacking: &[Short]) -> Unplaceable {
    let mut parts = Vec::new();
    let (mem, cpu): (Vec<_>, Vec<_>) = lacking.iter().partition(|s| matches!(s, Short::Memory(_)));
    for (list, what) in [(mem, "memory"), (cpu, "CPU")] {
        let Some(first) = list.first() else { continue };
        let amount = match first {
            Short::Memory(b) => crate::types::human_bytes(*b),
            Short::Cpu(n) => format!("{} CPUs", crate::types::human_cpus(*n)),
        };
        let nodes = match list.len() {
            1 => "1 node has".to_string(),
            n => format!("{n} nodes have"),
        };
        let of = if what == "memory" { " of memory" } else { "" };
        parts.push(format!("{nodes} less than {amount}{of} free"));
    }
    Unplaceable(format!("no suitable node ({})", parts.join(", ")))
}

/// The nodes (by index) that pass the filters for `task`, or why none does.
fn filter(task: &Task, nodes: &[&Node]) -> Eligible {
    let constraints = constraints(&task.spec)?;
    let held = volumes_held(&task.spec, nodes);
    let mut ids = Vec::new();
    let mut misfits = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let fit = fits(&task.spec, &constraints, node)
            .and_then(|()| has_volumes(&held, node))
            .and_then(|()| runtime_up(node));
        match fit {
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
