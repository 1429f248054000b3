//! One worker of a simulated cluster: the real agent (one state machine
//! per task) over a `SimulatedExecutor`, and a session with whichever
//! manager leads. The session is bridged in process, straight to the
//! leader's `Dispatcher`, not over gRPC as `crate::agent::session` does,
//! but it keeps that session's contract: the full assignment set comes
//! down, heartbeats go up, and status reports are sent until the leader
//! has committed them, so none is lost when the leader changes.

use std::sync::Arc;
use std::time::Duration;

use futures::future::select_all;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::executor::SimulatedExecutor;
use crate::agent::Agent;
use crate::dispatcher::{DispatchError, Dispatcher};
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::types::{Assignments, StatusReport};

/// How often a simulated worker beats: well inside the heartbeat period.
const BEAT: Duration = Duration::from_millis(100);
/// How long a report may take to commit before the worker looks for
/// another leader (and sends it again there).
const REPORT_TIMEOUT: Duration = Duration::from_secs(2);

pub struct SimWorker {
    pub node_id: String,
    pub executor: Arc<SimulatedExecutor>,
    stop: ShutdownTrigger,
    /// The agent, then the session.
    tasks: [JoinHandle<()>; 2],
}

impl SimWorker {
    /// Start the worker; `dispatchers` are every manager's dispatcher slot.
    pub fn start(
        node_id: &str,
        executor: Arc<SimulatedExecutor>,
        dispatchers: Vec<watch::Receiver<Option<Dispatcher>>>,
    ) -> SimWorker {
        let (stop, shutdown) = shutdown::channel();
        let (reports_tx, reports_rx) = mpsc::channel(1024);
        let (assign_tx, assign_rx) = watch::channel(Assignments::default());
        let rt = crate::agent::Runtime {
            exec: executor.clone(),
            images: executor.clone(),
            registries: Default::default(),
            peers: None,
            node_name: node_id.to_string(),
            images_changed: Box::new(|| {}),
            // Simulated: tasks get no network to set up, no files.
            nets: None,
            files: None,
            volumes: None,
        };
        let agent = Agent::new(rt, reports_tx);
        let tasks = [
            tokio::spawn(agent.run(assign_rx, shutdown.clone())),
            tokio::spawn(session(
                node_id.to_string(),
                dispatchers,
                assign_tx,
                reports_rx,
                shutdown,
            )),
        ];
        SimWorker {
            node_id: node_id.to_string(),
            executor,
            stop,
            tasks,
        }
    }

    /// Stop the worker as a node that loses power: no more heartbeats or
    /// reports, and its simulated containers are gone with it.
    pub async fn kill(self) {
        // The session goes first, so that nothing the agent does on its
        // way down reaches a manager.
        let [agent, session] = self.tasks;
        session.abort();
        let _ = session.await;
        self.stop.trigger();
        agent.abort();
        let _ = agent.await;
    }
}

/// The worker's side of its sessions, one leader after another.
async fn session(
    node_id: String,
    dispatchers: Vec<watch::Receiver<Option<Dispatcher>>>,
    assignments: watch::Sender<Assignments>,
    mut reports: mpsc::Receiver<StatusReport>,
    mut shutdown: Shutdown,
) {
    // Reports not yet committed: kept across leaders.
    let mut pending: Vec<StatusReport> = Vec::new();
    loop {
        let dispatcher = tokio::select! {
            _ = shutdown.wait() => return,
            d = leader(&dispatchers) => match d {
                Some(d) => d,
                None => return,
            },
        };
        let mut set = dispatcher.session(&node_id);
        assignments.send_replace(set.borrow_and_update().clone());
        let mut ended = dispatcher.ended();
        let mut beat = tokio::time::interval(BEAT);
        loop {
            if !pending.is_empty() {
                let sent = tokio::time::timeout(
                    REPORT_TIMEOUT,
                    dispatcher.report(&node_id, pending.clone()),
                )
                .await;
                match sent {
                    // Refused whole: a task that moved elsewhere. Nothing
                    // in it is this node's to send again.
                    Ok(Ok(())) | Ok(Err(DispatchError::NotAssigned { .. })) => pending.clear(),
                    // Not written: look for the leader again.
                    _ => break,
                }
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = ended.wait() => break,
                _ = beat.tick() => dispatcher.heartbeats.beat(&node_id),
                r = set.changed() => {
                    if r.is_err() {
                        break;
                    }
                    assignments.send_replace(set.borrow_and_update().clone());
                }
                r = reports.recv() => match r {
                    Some(report) => {
                        pending.push(report);
                        while let Ok(more) = reports.try_recv() {
                            pending.push(more);
                        }
                    }
                    None => return,
                },
            }
        }
    }
}

/// The dispatcher of the manager that leads, once one does; `None` when
/// every manager is gone.
async fn leader(dispatchers: &[watch::Receiver<Option<Dispatcher>>]) -> Option<Dispatcher> {
    let mut live: Vec<_> = dispatchers.to_vec();
    loop {
        for d in &live {
            if let Some(d) = d.borrow().clone().filter(|d| !d.ended().is_set()) {
                return Some(d);
            }
        }
        if live.is_empty() {
            return None;
        }
        let changed = live.iter_mut().map(|d| Box::pin(d.changed()));
        let (r, i, _) = select_all(changed).await;
        if r.is_err() {
            // That manager is gone for good.
            live.remove(i);
        }
    }
}
