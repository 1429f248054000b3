//! The session protocol, the manager's half: what a node is told when it
//! opens a session, and what follows. `rpc::dispatch` only carries it.
//!
//! A session starts with `Cluster` (where the managers are, how often to
//! heartbeat, the node's role), then the node's whole set of assignments,
//! then only what changed. It ends when the node is no longer a member
//! (checked once a heartbeat period), or when this manager stops leading.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::Dispatcher;
use crate::store::{Change, Object, Store, StoreError};
use crate::types::{Node, NodeRole, SessionMessage, SessionRequest, Task};

/// Why the manager refused or ended a node's session.
#[derive(Debug, thiserror::Error)]
pub enum SessionEnd {
    #[error("node {0} is not part of this cluster")]
    NotMember(String),
    #[error("this manager stopped leading")]
    StoppedLeading,
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// The node, if it is a current member of the cluster.
pub fn check_member(store: &Store, node_id: &str) -> Result<Node, SessionEnd> {
    store
        .read()?
        .member(node_id)?
        .ok_or_else(|| SessionEnd::NotMember(node_id.to_string()))
}

/// The cluster's heartbeat period (at least 100 ms).
pub fn heartbeat_period(store: &Store) -> Duration {
    let ms = store
        .read()
        .ok()
        .and_then(|v| v.cluster().ok().flatten())
        .map_or(1_000, |c| c.heartbeat_period_ms);
    Duration::from_millis(ms.max(100))
}

fn cluster_message(store: &Store, period: Duration, role: NodeRole) -> SessionMessage {
    SessionMessage::Cluster {
        managers: store
            .read()
            .and_then(|v| v.manager_addrs())
            .unwrap_or_default(),
        heartbeat_period_ms: period.as_millis() as u64,
        role,
    }
}

impl Dispatcher {
    /// Opens `node`'s session: records what the node says of itself, and
    /// returns the stream of messages for it, which ends with the reason
    /// when the manager ends it.
    pub async fn open_session(
        &self,
        store: &Store,
        node: Node,
        hello: SessionRequest,
    ) -> mpsc::Receiver<Result<SessionMessage, SessionEnd>> {
        // Keep what the node says of itself current (only when it changed:
        // every write counts on an SD card).
        let mut updated = node.clone();
        updated.description = hello.description;
        updated.status.addr = hello.addr;
        updated.version = hello.version;
        if updated != node {
            if let Err(e) = self
                .proposer()
                .propose(vec![Change::Update(Object::Node(updated))])
                .await
            {
                warn!(node = %node.id, error = %e, "cannot update node description");
            }
        }
        self.heartbeats.beat(&node.id);
        info!(node = %node.id, "session opened");
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(run(self.clone(), store.clone(), node, tx));
        rx
    }
}

async fn run(
    dispatcher: Dispatcher,
    store: Store,
    node: Node,
    tx: mpsc::Sender<Result<SessionMessage, SessionEnd>>,
) {
    let mut assignments = dispatcher.session(&node.id);
    let mut term = dispatcher.ended();
    let period = heartbeat_period(&store);
    let mut role = node.spec.role;
    if tx
        .send(Ok(cluster_message(&store, period, role)))
        .await
        .is_err()
    {
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
                match check_member(&store, &node.id) {
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    // Promoted or demoted: the node takes its new role
                    // from here.
                    Ok(n) if n.spec.role != role => {
                        role = n.spec.role;
                        if tx.send(Ok(cluster_message(&store, period, role))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                }
            }
            _ = tx.closed() => return,
            // The node reconnects, to the new leader.
            _ = term.wait() => {
                let _ = tx.send(Err(SessionEnd::StoppedLeading)).await;
                return;
            }
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
