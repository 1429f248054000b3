//! An in-process cluster for tests: N managers and M workers in one
//! process. Everything a manager runs is real (its own store, the
//! openraft-based `RaftNode` talking gRPC over mTLS on 127.0.0.1, and
//! `crate::leader::run`: orchestrator, scheduler, node liveness,
//! dispatcher); every worker runs the real agent. Only the containers are
//! simulated (`SimulatedExecutor`, scripted per image), and a worker's
//! session with the leader is bridged in process (`worker`). No root, no
//! containerd: a scenario such as "kill the leader during an update" runs
//! in seconds.

mod executor;
mod manager;
pub mod objects;
mod worker;

pub use executor::{Behavior, Script, SimulatedExecutor};
pub use manager::SimManager;
pub use objects::IMAGE;
pub use worker::SimWorker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::raft::RaftProposer;
use crate::store::{Change, Object, Proposer, ReadView};
use crate::types::{Availability, Service, Task, TaskState};
use anyhow::Context;

/// The shape of a simulated cluster.
#[derive(Debug, Clone)]
pub struct Config {
    pub managers: usize,
    pub workers: usize,
    /// A worker silent for three periods is marked down. Short by
    /// default, so that a scenario that kills a worker takes about a
    /// second to see it down; workers beat every 100 ms.
    pub heartbeat_period: Duration,
    /// The images every worker has.
    pub images: Vec<String>,
}

impl Config {
    pub fn new(managers: usize, workers: usize) -> Config {
        Config {
            managers,
            workers,
            heartbeat_period: Duration::from_millis(300),
            images: vec![IMAGE.to_string()],
        }
    }
}

/// How long the cluster may take to form (elect, add managers).
const FORM_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SimCluster {
    /// By index; `None` once killed.
    managers: Vec<Option<SimManager>>,
    workers: Vec<Option<SimWorker>>,
    script: Arc<Script>,
}

impl SimCluster {
    /// `managers` managers and `workers` workers with the defaults.
    pub async fn start(managers: usize, workers: usize) -> anyhow::Result<SimCluster> {
        SimCluster::with(&Config::new(managers, workers)).await
    }

    pub async fn with(cfg: &Config) -> anyhow::Result<SimCluster> {
        anyhow::ensure!(cfg.managers > 0, "a cluster needs at least one manager");
        let cluster = objects::cluster(cfg.heartbeat_period.as_millis() as u64)?;
        let ca = crate::tls::RootCa::generate(&cluster.id)?;
        let mut managers = Vec::new();
        for i in 0..cfg.managers {
            managers.push(SimManager::start(&ca, &cluster.id, &manager_id(i)).await?);
        }
        managers[0].raft.bootstrap(&managers[0].addr).await?;
        managers[0]
            .raft
            .raft
            .wait(Some(FORM_TIMEOUT))
            .state(openraft::ServerState::Leader, "the first manager leads")
            .await?;
        let images: Vec<&str> = cfg.images.iter().map(String::as_str).collect();
        let worker_ids: Vec<String> = (0..cfg.workers).map(worker_id).collect();
        let mut setup = vec![Change::Create(Object::Cluster(cluster))];
        setup.extend(
            worker_ids
                .iter()
                .map(|id| Change::Create(Object::Node(objects::node(id, &images)))),
        );
        proposer(&managers[0]).propose(setup).await?;
        let first = [managers[0].addr.clone()];
        for m in &managers[1..] {
            m.join(&first, FORM_TIMEOUT).await?;
        }
        let script = Arc::new(Script::default());
        let dispatchers: Vec<_> = managers.iter().map(|m| m.dispatcher.clone()).collect();
        let workers = worker_ids
            .iter()
            .map(|id| {
                let exec = Arc::new(SimulatedExecutor::new(script.clone()));
                Some(SimWorker::start(id, exec, dispatchers.clone()))
            })
            .collect();
        Ok(SimCluster {
            managers: managers.into_iter().map(Some).collect(),
            workers,
            script,
        })
    }

    /// What the simulated containers do, by image; change it at any time.
    pub fn script(&self) -> &Script {
        &self.script
    }

    /// The index of the manager that leads now, if any.
    pub fn leader(&self) -> Option<usize> {
        self.live_managers()
            .find(|(_, m)| m.leads())
            .map(|(i, _)| i)
    }

    /// Wait until a manager leads; its index.
    pub async fn wait_for_leader(&self, timeout: Duration) -> anyhow::Result<usize> {
        let mut found = None;
        self.wait_until("a manager leads", timeout, |_| {
            found = self.leader();
            Ok(found.is_some())
        })
        .await?;
        found.context("no manager leads")
    }

    pub fn manager(&self, i: usize) -> Option<&SimManager> {
        self.managers.get(i).and_then(Option::as_ref)
    }

    pub fn worker(&self, i: usize) -> Option<&SimWorker> {
        self.workers.get(i).and_then(Option::as_ref)
    }

    /// Kill manager `i`, as a crashed process. Nothing if it is gone.
    pub async fn kill_manager(&mut self, i: usize) {
        if let Some(m) = self.managers.get_mut(i).and_then(Option::take) {
            m.kill().await;
        }
    }

    /// Kill worker `i`, as a node that loses power. Nothing if it is gone.
    pub async fn kill_worker(&mut self, i: usize) {
        if let Some(w) = self.workers.get_mut(i).and_then(Option::take) {
            w.kill().await;
        }
    }

    /// Write `batch` as the API does: through a live manager's Raft, which
    /// forwards it to the leader.
    pub async fn propose(&self, batch: Vec<Change>) -> anyhow::Result<u64> {
        let (_, m) = self
            .live_managers()
            .next()
            .context("every manager is gone")?;
        Ok(proposer(m).propose(batch).await?)
    }

    /// Create `service`.
    pub async fn create_service(&self, service: Service) -> anyhow::Result<()> {
        self.propose(vec![Change::Create(Object::Service(service))])
            .await?;
        Ok(())
    }

    /// Change service `name`'s image, as `shoal service update --image`
    /// does: a new spec version, which the orchestrator rolls out.
    pub async fn update_image(&self, name: &str, image: &str) -> anyhow::Result<()> {
        let mut service = self
            .view()?
            .find_service(name)?
            .with_context(|| format!("no service {name}"))?;
        let mut spec = service.spec.clone();
        spec.task.container.image = image.to_string();
        service.set_spec(spec, crate::types::now_ms());
        self.propose(vec![Change::Update(Object::Service(service))])
            .await?;
        Ok(())
    }

    /// Drain node `id`, as `shoal node update --availability drain` does:
    /// its tasks stop, and run again elsewhere.
    pub async fn drain(&self, id: &str) -> anyhow::Result<()> {
        let mut node = self
            .view()?
            .node(id)?
            .with_context(|| format!("no node {id}"))?;
        node.spec.availability = Availability::Drain;
        self.propose(vec![Change::Update(Object::Node(node))])
            .await?;
        Ok(())
    }

    /// A read of the cluster state: the leader's store, else any live
    /// manager's (which may lag a moment).
    pub fn view(&self) -> anyhow::Result<ReadView> {
        let m = match self.leader() {
            Some(i) => self.manager(i),
            None => self.live_managers().next().map(|(_, m)| m),
        };
        Ok(m.context("every manager is gone")?.store().read()?)
    }

    /// The tasks of service `name` that are meant to run and do.
    pub fn running(&self, name: &str) -> anyhow::Result<Vec<Task>> {
        Ok(self
            .tasks(name)?
            .into_iter()
            .filter(|t| {
                t.desired_state == TaskState::Running && t.status.state == TaskState::Running
            })
            .collect())
    }

    /// Every task of service `name`, whatever its state.
    pub fn tasks(&self, name: &str) -> anyhow::Result<Vec<Task>> {
        let view = self.view()?;
        let service = view
            .find_service(name)?
            .with_context(|| format!("no service {name}"))?;
        Ok(view.tasks_of_service(&service.id)?)
    }

    /// Poll `cond` against a fresh view until it holds; an error naming
    /// `what` if it does not within `timeout`. A view that cannot be read
    /// (a manager just killed) counts as "not yet".
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&ReadView) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last_error = None;
        loop {
            match self.view().and_then(|v| cond(&v)) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last_error = Some(e),
            }
            if Instant::now() >= deadline {
                let why = last_error.map(|e| format!(" (last error: {e:#})"));
                anyhow::bail!("not within {timeout:?}: {what}{}", why.unwrap_or_default());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stop every node that is left.
    pub async fn shutdown(mut self) {
        for i in 0..self.workers.len() {
            self.kill_worker(i).await;
        }
        for i in 0..self.managers.len() {
            self.kill_manager(i).await;
        }
    }

    fn live_managers(&self) -> impl Iterator<Item = (usize, &SimManager)> {
        self.managers
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.as_ref().map(|m| (i, m)))
    }
}

/// How often `wait_until` looks again.
const POLL: Duration = Duration::from_millis(50);

pub fn manager_id(i: usize) -> String {
    format!("manager-{i}")
}

pub fn worker_id(i: usize) -> String {
    format!("worker-{i:02}")
}

/// A proposer through manager `m`'s Raft, which forwards to the leader.
fn proposer(m: &SimManager) -> RaftProposer {
    RaftProposer {
        slot: m.raft_slot(),
    }
}
