//! Node liveness. Heartbeats live in the managers' memory and are never
//! written to the store: only a change of state is (ready → down, down →
//! ready). On an SD card every write counts.
//!
//! A node whose daemon stops to start again (SIGTERM: an upgrade, a
//! reboot) says so first. It is marked down at once, but held: its tasks
//! stay where they are for the cluster's restart grace, so that a planned
//! restart does not move every task of the node and back. A node that
//! vanishes without a word is still down after three missed periods, and
//! its tasks are replaced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::shutdown::Shutdown;
use crate::store::{Change, Object, Proposer, Store, StoreError};
use crate::types::{now_ms, NodeState, NodeStatus, DEFAULT_RESTART_GRACE_MS};

/// Missed periods before a node is marked down.
const MISSED_PERIODS: u32 = 3;

/// Writes of a restart notice that lost to another write of the node.
const RESTART_WRITE_ATTEMPTS: u32 = 5;

#[derive(Default)]
pub struct Heartbeats {
    /// Last heartbeat per node id. std Mutex: never held across .await.
    last: Mutex<HashMap<String, Instant>>,
}

impl Heartbeats {
    pub fn beat(&self, node_id: &str) {
        self.last
            .lock()
            .expect("heartbeats lock")
            .insert(node_id.to_string(), Instant::now());
    }

    fn last(&self, node_id: &str) -> Option<Instant> {
        self.last
            .lock()
            .expect("heartbeats lock")
            .get(node_id)
            .copied()
    }

    pub fn forget(&self, node_id: &str) {
        self.last.lock().expect("heartbeats lock").remove(node_id);
    }
}

/// Is a node whose last beat was at `last` alive at `now`? A node never
/// heard from since `since` (this manager started leading) gets the same
/// grace, counted from then.
pub fn alive(last: Option<Instant>, since: Instant, now: Instant, period: Duration) -> bool {
    let from = last.map_or(since, |l| l.max(since));
    now.duration_since(from) <= period * MISSED_PERIODS
}

/// The leader's loop: mark nodes down when they miss heartbeats, and ready
/// again when they come back. `local` is this manager's own node, which is
/// alive as long as this loop runs.
pub async fn watch_nodes(
    store: Store,
    proposer: Arc<dyn Proposer>,
    heartbeats: Arc<Heartbeats>,
    local: String,
    mut shutdown: Shutdown,
) {
    let since = Instant::now();
    loop {
        let period = store
            .read()
            .ok()
            .and_then(|v| v.cluster().ok().flatten())
            .map_or(Duration::from_secs(1), |c| {
                Duration::from_millis(c.heartbeat_period_ms.max(100))
            });
        heartbeats.beat(&local);
        let now = Instant::now();
        let mut changes = Vec::new();
        if let Ok(nodes) = store.read().and_then(|v| v.nodes()) {
            for mut node in nodes {
                let heard = heartbeats.last(&node.id).is_some();
                let up = alive(heartbeats.last(&node.id), since, now, period);
                let Some(next) = next_status(&node.status, up, heard, period, now_ms()) else {
                    continue;
                };
                if next.state != node.status.state {
                    info!(node = %node.id, from = node.status.state.as_str(), to = next.state.as_str(), "node state");
                }
                if next.state == NodeState::Down && node.status.state == NodeState::Ready {
                    crate::counters::global().missed_heartbeats.inc();
                }
                node.status = next;
                changes.push(Change::Update(Object::Node(node)));
            }
        }
        if !changes.is_empty() {
            if let Err(e) = proposer.propose(changes).await {
                warn!(error = %e, "cannot write node states");
            }
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(period / 4) => {}
        }
    }
}

/// What a node's status becomes, if it changes: `up` as `alive` says,
/// `heard` if this manager has had a heartbeat from it since it leads (or
/// since the node said it restarts), `now` the leader's clock (ms).
pub fn next_status(
    status: &NodeStatus,
    up: bool,
    heard: bool,
    period: Duration,
    now: i64,
) -> Option<NodeStatus> {
    let mut next = status.clone();
    match (status.state, up) {
        (NodeState::Ready, false) => {
            next.state = NodeState::Down;
            next.message = format!("heartbeat missed for {:?}", period * MISSED_PERIODS);
        }
        (NodeState::Down | NodeState::Unknown, true) if heard => {
            next.state = NodeState::Ready;
            next.message = String::new();
            next.held_until_ms = None;
        }
        _ if status.held() && status.held_until_ms.is_some_and(|t| now >= t) => {
            next.held_until_ms = None;
            next.message = "did not come back within the restart grace period".into();
        }
        _ => return None,
    }
    Some(next)
}

impl super::Dispatcher {
    /// `node_id` says its daemon is stopping to start again: mark it down
    /// now, its tasks held for the cluster's restart grace (none: it is
    /// treated as any node that goes away).
    pub async fn restarting(&self, node_id: &str) -> Result<(), StoreError> {
        // The leader's liveness loop writes node states too: a write that
        // crossed ours fails as a conflict, and ours is made again on what
        // it wrote (a node it has just marked down still gets held).
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.hold_for_restart(node_id).await {
                Err(StoreError::Conflict { .. }) if attempts < RESTART_WRITE_ATTEMPTS => continue,
                done => return done,
            }
        }
    }

    async fn hold_for_restart(&self, node_id: &str) -> Result<(), StoreError> {
        let view = self.store.read()?;
        let grace = view
            .cluster()?
            .map_or(DEFAULT_RESTART_GRACE_MS, |c| c.restart_grace_ms);
        let Some(mut node) = view.node(node_id)? else {
            return Ok(());
        };
        drop(view);
        if grace == 0 {
            return Ok(());
        }
        let grace = Duration::from_millis(grace);
        node.status.state = NodeState::Down;
        node.status.held_until_ms = Some(now_ms().saturating_add(grace.as_millis() as i64));
        node.status.message = format!(
            "restarting: its tasks are held for {}",
            humantime::format_duration(grace)
        );
        self.proposer
            .propose(vec![Change::Update(Object::Node(node))])
            .await?;
        // Back only once it beats again, after it restarted. Forgotten only
        // now: forgotten before the write, the liveness loop could see the
        // node silent and mark it down as lost (its tasks replaced), a
        // write that wins over this one.
        self.heartbeats.forget(node_id);
        info!(node = %node_id, grace = ?grace, "node restarting; its tasks are held");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies batches to the store; before the first, another writer
    /// (the liveness loop) marks the node down as lost, so that batch
    /// fails as a conflict.
    struct Crossed {
        store: Store,
        crossed: std::sync::atomic::AtomicBool,
    }

    impl Proposer for Crossed {
        fn propose(&self, batch: Vec<Change>) -> crate::store::ProposeFuture<'_> {
            Box::pin(async move {
                if !self.crossed.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    let mut node = self.store.read()?.node("w1")?.expect("w1");
                    node.status =
                        next_status(&node.status, false, false, Duration::from_secs(1), 0)
                            .expect("ready to down");
                    self.store.apply(vec![Change::Update(Object::Node(node))])?;
                }
                self.store.apply(batch)
            })
        }
    }

    /// Once, the liveness loop could mark a node that had just said it
    /// restarts down as lost, and that write won: its tasks were replaced.
    #[tokio::test]
    async fn a_restart_notice_that_crosses_a_liveness_write_still_holds_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("state.redb"),
            crate::store::Codec::ephemeral(),
        )
        .unwrap();
        let mut node = crate::sim::objects::node("w1", &[]);
        node.status.state = NodeState::Ready;
        store
            .apply(vec![Change::Create(Object::Node(node))])
            .unwrap();
        let proposer = Arc::new(Crossed {
            store: store.clone(),
            crossed: Default::default(),
        });
        let (_trigger, shutdown) = crate::shutdown::channel();
        let d = crate::dispatcher::Dispatcher::new(store.clone(), proposer, shutdown);
        d.restarting("w1").await.expect("written on a second try");
        let status = store.read().unwrap().node("w1").unwrap().unwrap().status;
        assert!(status.held(), "{status:?}");
        assert!(status.message.starts_with("restarting"), "{status:?}");
    }

    #[test]
    fn a_node_held_for_its_restart_is_released_when_back_or_when_the_grace_ends() {
        let p = Duration::from_secs(1);
        let held = NodeStatus {
            state: NodeState::Down,
            message: "restarting".into(),
            held_until_ms: Some(10_000),
            ..Default::default()
        };
        // Within the grace and not heard from: nothing changes.
        assert_eq!(next_status(&held, false, false, p, 9_999), None);
        // Its first beat after the restart: ready, no longer held.
        let back = next_status(&held, true, true, p, 5_000).expect("a change");
        assert_eq!((back.state, back.held_until_ms), (NodeState::Ready, None));
        // The grace ran out: still down, no longer held, so its tasks go.
        let gone = next_status(&held, false, false, p, 10_000).expect("a change");
        assert_eq!((gone.state, gone.held_until_ms), (NodeState::Down, None));
        assert!(!gone.held() && held.held());
        assert_eq!(next_status(&gone, false, false, p, 20_000), None);
    }

    #[test]
    fn a_node_is_down_after_three_missed_periods() {
        let t0 = Instant::now();
        let p = Duration::from_secs(1);
        assert!(alive(Some(t0), t0, t0 + Duration::from_millis(2_900), p));
        assert!(!alive(Some(t0), t0, t0 + Duration::from_millis(3_100), p));
        // Never heard from: the grace counts from when we started leading.
        assert!(alive(None, t0, t0 + Duration::from_secs(2), p));
        assert!(!alive(None, t0, t0 + Duration::from_secs(4), p));
    }
}
