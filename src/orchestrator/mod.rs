//! The orchestrator (leader-only): services → tasks. Each pass reads one
//! snapshot, runs the pure decisions (`replicated`, `global`, `reaper`) and
//! proposes the result as one batch. Passes run on every commit (debounced)
//! and when a restart delay runs out. A pass decides again only for the
//! services whose inputs changed since the last one (their spec, their
//! tasks); a change to the nodes or the cluster, a timer, or a failed pass
//! makes it look at every service.

mod global;
mod job;
mod plan;
mod reaper;
mod replicated;
mod restart;
#[cfg(test)]
mod testutil;
mod update;

#[cfg(test)]
pub use plan::{new_task, probe_task};

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::scheduler::eligible_for_global;
use crate::shutdown::Shutdown;
use crate::store::{Change, Delta, Kind, Mirror, Proposer, Store, StoreError};
use crate::types::{
    now_ms, Availability, Node, NodeState, Service, ServiceMode, Task, TaskState, UpdateState,
    UpdateStatus,
};
use plan::Plan;

/// Coalesce bursts of commits into one pass.
const DEBOUNCE: Duration = Duration::from_millis(50);

pub async fn run(store: Store, proposer: Arc<dyn Proposer>, mut shutdown: Shutdown) {
    let mut events = store.watch();
    let mut state = State::new(&store);
    loop {
        let wake = match pass(&store, proposer.as_ref(), &mut state).await {
            Ok(wake) => wake,
            Err(e) => {
                warn!(error = %e, "orchestrator pass failed; retrying");
                // What the failed pass learnt from the commits is lost
                // with it: the next one looks at everything.
                state.dirty.all = true;
                Some(now_ms() + 1_000)
            }
        };
        let sleep = wake.map(|at| Duration::from_millis((at - now_ms()).max(0) as u64));
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = events.recv() => {}
            _ = tokio::time::sleep(sleep.unwrap_or(Duration::from_secs(3600))), if sleep.is_some() => {}
        }
        tokio::time::sleep(DEBOUNCE).await;
        // Drain what piled up: the next pass reads the latest state anyway.
        while events.try_recv().is_ok() {}
    }
}

/// What the orchestrator keeps from one pass to the next.
struct State {
    tasks: Mirror,
    nodes: Mirror,
    /// Each service's version as the last pass saw it.
    seen: HashMap<String, u64>,
    /// The cluster object's version as the last pass saw it.
    cluster_version: Option<u64>,
    /// The services to decide for again.
    dirty: Dirty,
    /// The earliest restart delay that runs out, of every service.
    wake: Option<i64>,
}

/// Which services a pass must look at.
#[derive(Default)]
struct Dirty {
    all: bool,
    services: HashSet<String>,
}

impl Dirty {
    fn has(&self, service_id: &str) -> bool {
        self.all || self.services.contains(service_id)
    }
}

impl State {
    fn new(store: &Store) -> State {
        State {
            tasks: Mirror::new(store, Kind::Task),
            nodes: Mirror::new(store, Kind::Node),
            seen: HashMap::new(),
            cluster_version: None,
            dirty: Dirty {
                all: true,
                ..Default::default()
            },
            wake: None,
        }
    }

    /// Marks what changed since the last pass, and takes the marks.
    fn take_dirty(
        &mut self,
        services: &[Service],
        cluster_version: u64,
        tasks: &Delta,
        nodes: &Delta,
        now: i64,
    ) -> Dirty {
        let dirty = &mut self.dirty;
        // Nodes decide where tasks may stay (down, drained) and where
        // global services run; the cluster holds the history limit; a
        // timer is some service's restart delay running out.
        if matches!(tasks, Delta::All)
            || !nodes.is_empty()
            || self.cluster_version != Some(cluster_version)
            || self.wake.is_some_and(|at| now >= at)
        {
            dirty.all = true;
        }
        self.cluster_version = Some(cluster_version);
        dirty.services.extend(
            tasks
                .objects()
                .filter_map(|o| o.as_task())
                .map(|t| t.service_id.clone()),
        );
        let seen: HashMap<String, u64> = services
            .iter()
            .map(|s| (s.id.clone(), s.meta.version))
            .collect();
        for (id, version) in &seen {
            if self.seen.get(id) != Some(version) {
                dirty.services.insert(id.clone());
            }
        }
        // A removed service: its tasks are removed.
        for id in self.seen.keys().filter(|id| !seen.contains_key(*id)) {
            dirty.services.insert(id.clone());
        }
        self.seen = seen;
        std::mem::take(dirty)
    }
}

/// One reconcile pass. Returns when the next pass is due, if a timer runs.
async fn pass(
    store: &Store,
    proposer: &dyn Proposer,
    state: &mut State,
) -> Result<Option<i64>, StoreError> {
    let view = store.read()?;
    let Some(cluster) = view.cluster()? else {
        return Ok(None);
    };
    let services = view.services()?;
    let node_delta = state.nodes.update(&view).await?;
    let task_delta = state.tasks.update(&view).await?;
    drop(view);
    let now = now_ms();
    let dirty = state.take_dirty(
        &services,
        cluster.meta.version,
        &task_delta,
        &node_delta,
        now,
    );
    if !dirty.all && dirty.services.is_empty() {
        return Ok(state.wake);
    }
    let nodes: Vec<&Node> = state.nodes.nodes().collect();
    // In id order, as the store lists them: the same state plans the same.
    let mut tasks: Vec<&Task> = state
        .tasks
        .tasks()
        .filter(|t| dirty.has(&t.service_id))
        .collect();
    tasks.sort_by(|a, b| a.id.cmp(&b.id));

    // Borrowed from the copy, never cloned: a pass looks at every task,
    // and most passes change none of them.
    let mut by_service: HashMap<&str, Vec<&Task>> = HashMap::new();
    for t in &tasks {
        by_service.entry(&t.service_id).or_default().push(t);
    }
    let unavailable = replicated::Unavailable {
        // A node held for its restart keeps its tasks until it is back or
        // the grace runs out.
        down: nodes
            .iter()
            .filter(|n| n.status.state == NodeState::Down && !n.status.held())
            .map(|n| n.id.clone())
            .collect(),
        drained: nodes
            .iter()
            .filter(|n| n.spec.availability == Availability::Drain)
            .map(|n| n.id.clone())
            .collect(),
    };
    // Global services: a node held for its restart counts as ready, so
    // that its task stays (the scheduler places nothing new on it).
    let for_global: Vec<Cow<Node>> = nodes
        .iter()
        .map(|n| {
            if n.status.held() {
                let mut ready = (*n).clone();
                ready.status.state = NodeState::Ready;
                Cow::Owned(ready)
            } else {
                Cow::Borrowed(*n)
            }
        })
        .collect();
    let mut plan = Plan::default();
    for s in services.iter().filter(|s| dirty.has(&s.id)) {
        let ts = by_service.remove(s.id.as_str()).unwrap_or_default();
        plan.merge(match s.spec.mode {
            ServiceMode::Replicated { replicas } => {
                replicated::reconcile(s, replicas, &ts, &unavailable, now)
            }
            ServiceMode::Global => {
                global::reconcile(s, &eligible_for_global(&for_global, &s.spec.task), &ts, now)
            }
            ServiceMode::ReplicatedJob {
                completions,
                max_concurrent,
            } => job::replicated(s, completions, max_concurrent, &ts, &unavailable, now),
            ServiceMode::GlobalJob => {
                job::global(s, &eligible_for_global(&for_global, &s.spec.task), &ts, now)
            }
        });
    }
    // Tasks of removed services.
    for t in by_service.values().flatten() {
        if t.desired_state < TaskState::Remove {
            plan.desire.push((t.id.clone(), TaskState::Remove));
        }
    }
    // The services not looked at keep their timers.
    let wake = match (dirty.all, state.wake, plan.wake_at_ms) {
        (true, _, w) => w,
        (false, Some(a), Some(b)) => Some(a.min(b)),
        (false, a, b) => a.or(b),
    };
    state.wake = wake;
    let rollouts = std::mem::take(&mut plan.rollouts);
    // Prune history as it will be once this plan is applied, so that a slot
    // never holds more than the limit, not even for a moment.
    let projected = project(&tasks, &plan, now);
    let mut changes = plan.into_changes();
    for id in reaper::prune(&projected, cluster.task_history_limit as usize) {
        changes.push(Change::Delete {
            kind: Kind::Task,
            id,
            expected_version: None,
        });
    }
    if !changes.is_empty() {
        debug!(changes = changes.len(), "orchestrator proposes");
        // All parts at once: Raft appends them together and commits them
        // in order; one after the other, each waits for the last one's
        // commit, and a plan of thousands of tasks takes that many times
        // longer. A pass is level-triggered: what failed is planned again.
        let parts = in_parts(changes, &services)
            .into_iter()
            .map(|part| proposer.propose(part));
        for result in futures::future::join_all(parts).await {
            result?;
        }
    }
    write_rollouts(proposer, &services, rollouts, now).await;
    Ok(wake)
}

/// Writes each service's new rollout state, each on its own. A write that
/// the store refuses (a user changed the service first) is dropped: the
/// next pass decides again from the user's change.
async fn write_rollouts(
    proposer: &dyn Proposer,
    services: &[Service],
    rollouts: Vec<(String, update::Rollout)>,
    now: i64,
) {
    for (id, rollout) in rollouts {
        let Some(service) = services.iter().find(|s| s.id == id) else {
            continue;
        };
        let next = match rollout {
            update::Rollout::Status(status) => {
                let mut s = service.clone();
                // The tasks a rebalance moved are gone once it completes.
                if status.state == UpdateState::Completed {
                    s.rebalance.clear();
                }
                s.update_status = Some(status);
                s
            }
            update::Rollout::Rollback { message } => rollback(service, message, now),
        };
        let state = next.update_status.as_ref().map(|u| u.state.as_str());
        match proposer
            .propose(vec![Change::Update(crate::store::Object::Service(next))])
            .await
        {
            Ok(_) => info!(service = %service.spec.name, state, "rollout"),
            Err(e) if e.is_rejection() => {
                debug!(service = %service.spec.name, error = %e, "rollout state not written")
            }
            Err(e) => warn!(service = %service.spec.name, error = %e, "rollout state not written"),
        }
    }
}

/// The service rolled back by its failure action, or, when that cannot be
/// done here, paused with the reason: there is no previous spec, or the
/// previous spec is on networks it has no virtual IP on (`service
/// rollback` gives them).
fn rollback(service: &Service, message: String, now: i64) -> Service {
    let paused = |why: &str| {
        let mut s = service.clone();
        s.update_status = Some(UpdateStatus {
            state: UpdateState::Paused,
            started_ms: s.update_status.as_ref().map_or(now, |u| u.started_ms),
            completed_ms: None,
            message: format!("{message}; but {why}"),
        });
        s
    };
    let Some(mut back) = service.rolled_back(message.clone(), now) else {
        return paused("there is no previous spec to roll back to");
    };
    let networks: Vec<&str> = back.spec.task.network.network_ids().collect();
    back.vips.retain(|v| networks.contains(&v.network.as_str()));
    let without = networks
        .iter()
        .any(|n| !back.vips.iter().any(|v| v.network == *n));
    if back.spec.endpoint_mode.is_vip() && without {
        return paused(&format!(
            "its previous spec is on other networks: `shoal service rollback {}` rolls it back",
            service.spec.name
        ));
    }
    if !back.spec.endpoint_mode.is_vip() {
        back.vips.clear();
    }
    back
}

/// The most one proposal carries: a plan for thousands of tasks goes in
/// parts, each below what one Raft entry may hold (`raft::MAX_ENTRY`, 4
/// MiB). Parts as large as is safe: each part is a log append (an fsync)
/// that the next part waits for.
const PROPOSAL_BYTES: usize = 3 * 1024 * 1024;

/// `changes` in parts of at most `PROPOSAL_BYTES`, in order. A new task is
/// about its service's spec in size (measured once per service); the other
/// changes are small. A pass is level-triggered: a part that fails is
/// planned again by the next pass.
fn in_parts(changes: Vec<Change>, services: &[crate::types::Service]) -> Vec<Vec<Change>> {
    let index: HashMap<&str, &crate::types::Service> =
        services.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut spec_bytes: HashMap<&str, usize> = HashMap::new();
    let mut size_of = |c: &Change| match c {
        Change::Create(crate::store::Object::Task(t)) => match index.get(t.service_id.as_str()) {
            Some(s) => {
                512 + *spec_bytes
                    .entry(s.id.as_str())
                    .or_insert_with(|| crate::format::encode(&s.spec.task).len())
            }
            None => 512,
        },
        _ => 256,
    };
    let mut parts = Vec::new();
    let mut part = Vec::new();
    let mut bytes = 0;
    for change in changes {
        let n = size_of(&change);
        if !part.is_empty() && bytes + n > PROPOSAL_BYTES {
            parts.push(std::mem::take(&mut part));
            bytes = 0;
        }
        bytes += n;
        part.push(change);
    }
    if !part.is_empty() {
        parts.push(part);
    }
    parts
}

/// The tasks as they will be after `plan`: desired states changed, new
/// tasks added (stamped `now`, so they count as the newest). Only the tasks
/// the plan changes are copied.
fn project<'a>(tasks: &[&'a Task], plan: &Plan, now: i64) -> Vec<Cow<'a, Task>> {
    let mut out: Vec<Cow<Task>> = tasks.iter().map(|t| Cow::Borrowed(*t)).collect();
    // By id: a scale-down of thousands of tasks must not be quadratic.
    let at: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    for (id, state) in &plan.desire {
        if let Some(&i) = at.get(id.as_str()) {
            if *state > out[i].desired_state {
                out[i].to_mut().desired_state = *state;
            }
        }
    }
    out.extend(plan.create.iter().cloned().map(|mut t| {
        t.meta.created_ms = now;
        Cow::Owned(t)
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use testutil::{service, task_in};

    fn state() -> (tempfile::TempDir, State) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("state.redb"),
            crate::store::Codec::ephemeral(),
        )
        .unwrap();
        (dir, State::new(&store))
    }

    fn changed(t: Task) -> Delta {
        Delta::Some(vec![(None, Some(Arc::new(crate::store::Object::Task(t))))])
    }

    fn none() -> Delta {
        Delta::Some(Vec::new())
    }

    fn dirty(d: &Dirty) -> Vec<&str> {
        let mut v: Vec<&str> = d.services.iter().map(String::as_str).collect();
        v.sort();
        v
    }

    #[test]
    fn a_pass_looks_again_only_at_what_changed() {
        let (_dir, mut st) = state();
        let mut a = service(1);
        a.id = "a".into();
        let mut b = service(1);
        b.id = "b".into();
        let both = [a.clone(), b.clone()];
        // The first pass looks at everything.
        assert!(st.take_dirty(&both, 1, &Delta::All, &none(), 0).all);
        // Nothing changed: nothing to look at.
        let d = st.take_dirty(&both, 1, &none(), &none(), 0);
        assert!(!d.all && d.services.is_empty());
        // A task of b changed: only b.
        let mut t = task_in(1, 1);
        t.service_id = "b".into();
        let d = st.take_dirty(&both, 1, &changed(t), &none(), 0);
        assert!(!d.all);
        assert_eq!(dirty(&d), ["b"]);
        // a's spec changed (a new version), and b was removed.
        a.meta.version = 7;
        let d = st.take_dirty(std::slice::from_ref(&a), 1, &none(), &none(), 0);
        assert!(!d.all);
        assert_eq!(dirty(&d), ["a", "b"]);
        // The nodes, the cluster, or a timer running out: everything.
        let nodes = Delta::Some(vec![(None, None)]);
        assert!(st.take_dirty(&[a.clone()], 1, &none(), &nodes, 0).all);
        assert!(st.take_dirty(&[a.clone()], 2, &none(), &none(), 0).all);
        st.wake = Some(100);
        assert!(!st.take_dirty(&[a.clone()], 2, &none(), &none(), 99).all);
        assert!(st.take_dirty(&[a], 2, &none(), &none(), 100).all);
    }

    #[test]
    fn the_projection_applies_the_plan() {
        let tasks = [task_in(1, 1), task_in(2, 1)];
        let plan = Plan {
            create: vec![new_task(&service(3), 3, None, 0, 0)],
            desire: vec![
                (tasks[1].id.clone(), TaskState::Remove),
                ("gone".into(), TaskState::Remove),
            ],
            wake_at_ms: None,
            rollouts: Vec::new(),
        };
        let out = project(&[&tasks[0], &tasks[1]], &plan, 42);
        let states: Vec<TaskState> = out.iter().map(|t| t.desired_state).collect();
        assert_eq!(
            states,
            [TaskState::Running, TaskState::Remove, TaskState::Running]
        );
        assert_eq!(out[2].meta.created_ms, 42);
    }
}
