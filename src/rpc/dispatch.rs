//! The dispatcher service (managers): a node's session. The caller is the
//! node named in its certificate, and it must be a node of the store that
//! has not been removed. Heartbeats only touch memory.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::ca::manager_addrs;
use super::messages::*;
use super::pb::v2::dispatcher_server::Dispatcher as DispatcherRpc;
use super::transport::peer;
use crate::dispatcher::{DispatchError, Dispatcher};
use crate::store::{Change, Object, Store};
use crate::types::{Node, Task};

pub struct DispatcherService {
    pub store: Store,
    /// The dispatcher while this manager leads; sessions go to the leader.
    pub dispatcher: watch::Receiver<Option<Dispatcher>>,
}

impl DispatcherService {
    fn current(&self) -> Result<Dispatcher, Status> {
        self.dispatcher.borrow().clone().ok_or_else(|| {
            Status::unavailable("this manager is not the leader: sessions go to the leader")
        })
    }

    /// The calling node, as the store knows it; refused if unknown or
    /// removed.
    fn caller<T>(&self, req: &Request<T>) -> Result<Node, Status> {
        let me = peer(req)?;
        check_member(&self.store, &me.node_id)
    }

    fn period(&self) -> Duration {
        let ms = self
            .store
            .read()
            .ok()
            .and_then(|v| v.cluster().ok().flatten())
            .map_or(1_000, |c| c.heartbeat_period_ms);
        Duration::from_millis(ms.max(100))
    }
}

/// The node, if it is a current member of the cluster.
pub fn check_member(store: &Store, node_id: &str) -> Result<Node, Status> {
    match store.read().and_then(|v| v.member(node_id)) {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(Status::permission_denied(format!(
            "node {node_id} is not part of this cluster"
        ))),
        Err(e) => Err(Status::internal(e.to_string())),
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<SessionMessage, Status>> + Send>>;

#[tonic::async_trait]
impl DispatcherRpc for DispatcherService {
    type SessionStream = SessionStream;

    async fn session(
        &self,
        req: Request<SessionRequest>,
    ) -> Result<Response<SessionStream>, Status> {
        let node = self.caller(&req)?;
        let dispatcher = self.current()?;
        let r = req.into_inner();
        // Keep what the node says of itself current (only when it changed:
        // every write counts on an SD card).
        let mut updated = node.clone();
        updated.description = r.description;
        updated.status.addr = r.addr;
        updated.version = r.version;
        if updated != node {
            if let Err(e) = dispatcher
                .proposer()
                .propose(vec![Change::Update(Object::Node(updated))])
                .await
            {
                warn!(node = %node.id, error = %e, "cannot update node description");
            }
        }
        dispatcher.heartbeats.beat(&node.id);
        info!(node = %node.id, "session opened");

        let (tx, rx) = mpsc::channel(16);
        let mut assignments = dispatcher.session(&node.id);
        let mut term = dispatcher.ended();
        let store = self.store.clone();
        let period = self.period();
        let node_id = node.id.clone();
        let mut role = node.spec.role;
        tokio::spawn(async move {
            let hello = SessionMessage::Cluster {
                managers: manager_addrs(&store),
                heartbeat_period_ms: period.as_millis() as u64,
                role,
            };
            if tx.send(Ok(hello)).await.is_err() {
                return;
            }
            let mut sent: HashMap<String, Task> = HashMap::new();
            let mut first = true;
            loop {
                let set = assignments.borrow_and_update().clone();
                let msg = diff(&mut sent, &set, first);
                first = false;
                if let Some(msg) = msg {
                    if tx.send(Ok(msg)).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    r = assignments.changed() => if r.is_err() { return },
                    // A removed node's open session ends within a period.
                    _ = tokio::time::sleep(period) => {
                        match check_member(&store, &node_id) {
                            Err(s) => {
                                let _ = tx.send(Err(s)).await;
                                return;
                            }
                            // Promoted or demoted: the node takes its new
                            // role from here.
                            Ok(n) if n.spec.role != role => {
                                role = n.spec.role;
                                let msg = SessionMessage::Cluster {
                                    managers: manager_addrs(&store),
                                    heartbeat_period_ms: period.as_millis() as u64,
                                    role,
                                };
                                if tx.send(Ok(msg)).await.is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                        }
                    }
                    _ = tx.closed() => return,
                    // The node reconnects, to the new leader.
                    _ = term.wait() => {
                        let _ = tx.send(Err(Status::unavailable("this manager stopped leading"))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn heartbeat(&self, req: Request<Empty>) -> Result<Response<HeartbeatResponse>, Status> {
        let node = self.caller(&req)?;
        self.current()?.heartbeats.beat(&node.id);
        Ok(Response::new(HeartbeatResponse {
            period_ms: self.period().as_millis() as u64,
        }))
    }

    async fn update_status(&self, req: Request<StatusBatch>) -> Result<Response<Empty>, Status> {
        let node = self.caller(&req)?;
        match self
            .current()?
            .report(&node.id, req.into_inner().updates)
            .await
        {
            Ok(()) => Ok(Response::new(Empty {})),
            Err(e @ DispatchError::NotAssigned { .. }) => {
                warn!(node = %node.id, error = %e, "status refused");
                Err(Status::permission_denied(e.to_string()))
            }
            Err(e @ DispatchError::NotWritten) => Err(Status::unavailable(e.to_string())),
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }
}

/// The message that brings a node from `sent` to `set`: the full set the
/// first time, then only what changed.
fn diff(sent: &mut HashMap<String, Task>, set: &[Task], first: bool) -> Option<SessionMessage> {
    let removed: Vec<String> = sent
        .keys()
        .filter(|id| !set.iter().any(|t| &&t.id == id))
        .cloned()
        .collect();
    let changed: Vec<Task> = set
        .iter()
        .filter(|t| first || sent.get(&t.id) != Some(*t))
        .cloned()
        .collect();
    for id in &removed {
        sent.remove(id);
    }
    for t in &changed {
        sent.insert(t.id.clone(), t.clone());
    }
    if !first && removed.is_empty() && changed.is_empty() {
        return None;
    }
    Some(SessionMessage::Assignments {
        full: first,
        tasks: changed,
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, slot: u64) -> Task {
        let mut t = crate::orchestrator::new_task(
            &crate::types::Service {
                id: "s".into(),
                meta: Default::default(),
                spec: crate::types::ServiceSpec {
                    name: "s".into(),
                    labels: Default::default(),
                    mode: crate::types::ServiceMode::Global,
                    task: Default::default(),
                },
                spec_version: 1,
                previous_spec: None,
            },
            slot,
            None,
            0,
            0,
        );
        t.id = id.into();
        t
    }

    #[test]
    fn a_full_set_first_then_increments() {
        let mut sent = HashMap::new();
        let a = task("a", 1);
        let b = task("b", 2);
        let Some(SessionMessage::Assignments { full, tasks, .. }) =
            diff(&mut sent, &[a.clone(), b.clone()], true)
        else {
            panic!("expected assignments")
        };
        assert!(full);
        assert_eq!(tasks.len(), 2);
        assert!(diff(&mut sent, &[a.clone(), b.clone()], false).is_none());
        let mut b2 = b.clone();
        b2.slot = 7;
        let Some(SessionMessage::Assignments {
            full,
            tasks,
            removed,
        }) = diff(&mut sent, &[b2.clone()], false)
        else {
            panic!("expected assignments")
        };
        assert!(!full);
        assert_eq!(tasks, vec![b2]);
        assert_eq!(removed, vec!["a".to_string()]);
    }
}
