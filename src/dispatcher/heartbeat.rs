//! Node liveness. Heartbeats live in the managers' memory and are never
//! written to the store: only a change of state is (ready → down, down →
//! ready). On an SD card every write counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::shutdown::Shutdown;
use crate::store::{Change, Object, Proposer, Store};
use crate::types::NodeState;

/// Missed periods before a node is marked down.
const MISSED_PERIODS: u32 = 3;

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
                let up = alive(heartbeats.last(&node.id), since, now, period);
                let next = match (node.status.state, up) {
                    (NodeState::Ready, false) => {
                        crate::metrics::global().missed_heartbeats.inc();
                        NodeState::Down
                    }
                    (NodeState::Down | NodeState::Unknown, true)
                        if heartbeats.last(&node.id).is_some() =>
                    {
                        NodeState::Ready
                    }
                    _ => continue,
                };
                info!(node = %node.id, from = node.status.state.as_str(), to = next.as_str(), "node state");
                node.status.state = next;
                node.status.message = match next {
                    NodeState::Down => {
                        format!("heartbeat missed for {:?}", period * MISSED_PERIODS)
                    }
                    _ => String::new(),
                };
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

#[cfg(test)]
mod tests {
    use super::*;

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
