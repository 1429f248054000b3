//! `shoal bench-sim`: scheduling throughput with simulated nodes.
//!
//! Everything a manager runs is real: the store (redb in a temp dir)
//! written through a one-manager Raft (the same proposer, log and state
//! machine a manager uses), the orchestrator and scheduler loops, and the
//! dispatcher with one session and one reporter per node, the in-process
//! path a manager's own agent uses. Only each node's executor is simulated:
//! it reports every task it is assigned as running, without containerd.
//! A benchmark, not a test: it measures and prints, and never judges.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch};

use crate::dispatcher::Dispatcher;
use crate::shutdown::{self, Shutdown};
use crate::sim::objects::{cluster, node, service, TempDir, IMAGE};
use crate::store::{Change, Object, Proposer, Store};
use crate::types::*;

/// A plain, validated run of the benchmark (the CLI builds it).
#[derive(Debug, Clone)]
pub struct Config {
    pub nodes: usize,
    pub tasks: usize,
    pub services: usize,
    /// Give up when the tasks are not all running by then.
    pub timeout: Duration,
}

/// What one run measured. Times are from the first service create.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always true: these are simulated nodes, not real ones.
    pub simulated: bool,
    pub nodes: usize,
    pub tasks: usize,
    pub services: usize,
    /// All tasks exist (the orchestrator's part).
    pub created_s: f64,
    /// All tasks assigned to a node (the scheduler's part, on top).
    pub assigned_s: f64,
    /// All tasks reported running through the dispatcher.
    pub running_s: f64,
    pub placements_per_s: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "simulated nodes: {} nodes, {} tasks in {} service(s)",
            self.nodes, self.tasks, self.services
        )?;
        writeln!(
            f,
            "(real store on a one-manager Raft, orchestrator, scheduler and dispatcher; simulated executor)"
        )?;
        writeln!(f, "  all tasks created   {:8.3} s", self.created_s)?;
        writeln!(
            f,
            "  all tasks assigned  {:8.3} s  ({:.0} placements/s)",
            self.assigned_s, self.placements_per_s
        )?;
        write!(f, "  all tasks running   {:8.3} s", self.running_s)
    }
}

pub async fn run(cfg: &Config) -> anyhow::Result<Report> {
    anyhow::ensure!(
        cfg.nodes > 0 && cfg.tasks > 0,
        "--nodes and --tasks must be at least 1"
    );
    anyhow::ensure!(
        cfg.services > 0 && cfg.services <= cfg.tasks,
        "--services must be between 1 and --tasks"
    );
    let dir = TempDir::new("bench-sim")?;
    let store = Store::open(
        &crate::data_dir::DataDir::at(dir.path()).state(),
        crate::store::Codec::ephemeral(),
    )
    .context("cannot open the store")?;
    // Writes go through a one-manager Raft, as on a real manager: every
    // batch is a log entry (appended, then applied, each a redb commit).
    let ca = crate::tls::RootCa::generate("bench-sim")?;
    let tls = crate::tls::client_config(ca.cert_pem(), None)?;
    let raft = crate::raft::RaftNode::start(dir.path(), store.clone(), "bench-sim", tls).await?;
    raft.bootstrap("127.0.0.1:1").await?;
    raft.raft
        .wait(Some(std::time::Duration::from_secs(10)))
        .state(openraft::ServerState::Leader, "one-manager Raft leads")
        .await?;
    let proposer: Arc<dyn Proposer> = Arc::new(crate::raft::LeaderProposer { node: raft.clone() });
    let (trigger, shutdown) = shutdown::channel();

    let mut setup = vec![Change::Create(Object::Cluster(cluster(1_000)?))];
    let node_ids: Vec<String> = (0..cfg.nodes).map(|i| format!("sim{i:05}")).collect();
    setup.extend(
        node_ids
            .iter()
            .map(|id| Change::Create(Object::Node(node(id, &[IMAGE])))),
    );
    proposer.propose(setup).await?;

    tokio::spawn(crate::orchestrator::run(
        store.clone(),
        proposer.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(crate::scheduler::run(
        store.clone(),
        proposer.clone(),
        shutdown.clone(),
    ));
    let dispatcher = Dispatcher::new(store.clone(), proposer.clone(), shutdown.clone());
    for id in &node_ids {
        let assignments = dispatcher.session(id);
        let reports = dispatcher.reporter(id);
        tokio::spawn(simulated_executor(assignments, reports, shutdown.clone()));
    }

    // Watch before the first write, so that no commit is missed.
    let events = store.watch();
    let started = Instant::now();
    for (i, replicas) in split(cfg.tasks, cfg.services).into_iter().enumerate() {
        let service = service(&format!("sim{i}"), IMAGE, replicas as u64);
        proposer
            .propose(vec![Change::Create(Object::Service(service))])
            .await?;
    }
    let mut progress = Progress::default();
    let done = tokio::time::timeout(
        cfg.timeout,
        follow(&store, events, cfg.tasks, started, &mut progress),
    )
    .await;
    trigger.trigger();
    raft.shutdown().await;
    match done {
        Ok(r) => r?,
        Err(_) => anyhow::bail!(
            "not all tasks were running after {:?}: {} created, {} assigned, {} running",
            cfg.timeout,
            progress.states.len(),
            progress.count(TaskState::Assigned),
            progress.count(TaskState::Running),
        ),
    }
    let (Some(created), Some(assigned), Some(running)) =
        (progress.created, progress.assigned, progress.running)
    else {
        anyhow::bail!("the benchmark stopped early");
    };
    let secs = |d: Duration| d.as_secs_f64();
    Ok(Report {
        simulated: true,
        nodes: cfg.nodes,
        tasks: cfg.tasks,
        services: cfg.services,
        created_s: secs(created),
        assigned_s: secs(assigned),
        running_s: secs(running),
        placements_per_s: cfg.tasks as f64 / secs(assigned).max(1e-9),
    })
}

/// What `follow` has seen so far; kept by the caller, so that a run that
/// times out can still say how far it got.
#[derive(Default)]
struct Progress {
    states: HashMap<String, TaskState>,
    created: Option<Duration>,
    assigned: Option<Duration>,
    running: Option<Duration>,
}

impl Progress {
    fn count(&self, at_least: TaskState) -> usize {
        self.states.values().filter(|s| **s >= at_least).count()
    }
}

/// Follows commits until `want` tasks run, reading only the tasks each
/// commit changed, so that watching costs little next to what it measures.
async fn follow(
    store: &Store,
    mut events: broadcast::Receiver<Arc<crate::store::Commit>>,
    want: usize,
    started: Instant,
    p: &mut Progress,
) -> anyhow::Result<()> {
    loop {
        match events.recv().await {
            Ok(c) => {
                for (id, task) in c.tasks(store)? {
                    match task.as_deref().and_then(crate::store::Object::as_task) {
                        Some(t) => p.states.insert(id.to_string(), t.status.state),
                        None => p.states.remove(id),
                    };
                }
            }
            // Fell behind: read everything once.
            Err(broadcast::error::RecvError::Lagged(_)) => {
                p.states = store
                    .read()?
                    .tasks()?
                    .into_iter()
                    .map(|t| (t.id, t.status.state))
                    .collect();
            }
            Err(broadcast::error::RecvError::Closed) => anyhow::bail!("the store closed"),
        }
        if p.created.is_none() && p.states.len() >= want {
            p.created = Some(started.elapsed());
        }
        if p.assigned.is_none() && p.count(TaskState::Assigned) >= want {
            p.assigned = Some(started.elapsed());
        }
        if p.assigned.is_some() && p.count(TaskState::Running) >= want {
            p.running = Some(started.elapsed());
            return Ok(());
        }
    }
}

/// A node's executor, simulated: every task assigned to it that is meant
/// to run is reported running, once.
async fn simulated_executor(
    mut assignments: watch::Receiver<Assignments>,
    reports: mpsc::Sender<StatusReport>,
    mut shutdown: Shutdown,
) {
    let mut reported: HashSet<String> = HashSet::new();
    loop {
        let set = assignments.borrow_and_update().clone();
        for t in set.iter() {
            let wanted = t.desired_state <= TaskState::Running;
            if wanted && t.status.state < TaskState::Running && reported.insert(t.id.clone()) {
                let status = TaskStatus {
                    state: TaskState::Running,
                    timestamp_ms: now_ms(),
                    message: "started (simulated)".into(),
                    ..Default::default()
                };
                if reports
                    .send(StatusReport {
                        task_id: t.id.clone(),
                        status,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            r = assignments.changed() => if r.is_err() { return },
        }
    }
}

/// `tasks` replicas over `services` services, as evenly as they go.
fn split(tasks: usize, services: usize) -> Vec<usize> {
    (0..services)
        .map(|i| tasks / services + usize::from(i < tasks % services))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_split_evenly() {
        assert_eq!(split(10, 3), vec![4, 3, 3]);
        assert_eq!(split(10_000, 1), vec![10_000]);
        assert_eq!(split(3, 3), vec![1, 1, 1]);
    }

    // Not a timed test: it checks that a small run finishes and adds up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_run_places_and_runs_every_task() {
        let report = run(&Config {
            nodes: 5,
            tasks: 40,
            services: 3,
            timeout: Duration::from_secs(60),
        })
        .await
        .unwrap();
        assert!(report.simulated);
        assert!(report.created_s <= report.assigned_s);
        assert!(report.assigned_s <= report.running_s);
    }
}
