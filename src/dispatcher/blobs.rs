//! Which node holds which image blob, for pulls over the LAN. Kept in the
//! leader's memory only: each node sends its whole set when its session
//! opens (so a new leader learns it from the sessions that move to it),
//! and a node that goes away takes its set with it. Nothing here is
//! written to the store: it changes with every pull and is cheap to
//! learn again.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::Dispatcher;
use crate::types::{is_digest, Node, NodeState};

/// Most blobs one node may report; a node past it is believed for the
/// first ones only.
pub const MAX_BLOBS_PER_NODE: usize = 100_000;

/// How many holders a puller is given, at most.
const MAX_SOURCES: usize = 4;

/// How long a node's claim to fetch a blob from the registry lasts
/// without news from it; a puller renews it while it fetches.
const CLAIM: Duration = Duration::from_secs(30);

/// How soon a node that waits for another's fetch asks again, after the
/// leader held its question for `HOLD` with no holder appearing.
pub const WAIT_AGAIN: Duration = Duration::from_millis(100);

/// How long the leader holds a question about a blob another node is
/// fetching: it answers as soon as a node reports the blob, so a waiting
/// puller starts from that node at once, not at its next poll. Below the
/// puller's own timeout on the question (3 s).
pub const HOLD: Duration = Duration::from_secs(2);

/// What a puller is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sources {
    /// Fetch from these (node id, address).
    Peers(Vec<(String, String)>),
    /// Another node fetches it from the registry now: ask again later.
    Wait,
    /// Fetch it from the registry (this node now holds the claim).
    Registry,
}

#[derive(Default)]
pub struct BlobIndex {
    by_node: HashMap<String, HashSet<String>>,
    /// Blob → the node fetching it from the registry, and until when its
    /// claim holds: so that nodes starting one image at once fetch each
    /// blob over the uplink once, and the others from that node.
    claims: HashMap<String, (String, Instant)>,
}

impl BlobIndex {
    pub fn report(&mut self, node: &str, full: bool, added: Vec<String>, removed: Vec<String>) {
        let set = self.by_node.entry(node.to_string()).or_default();
        if full {
            set.clear();
        }
        for d in removed {
            set.remove(&d);
        }
        for d in added {
            if set.len() >= MAX_BLOBS_PER_NODE {
                break;
            }
            if is_digest(&d) {
                if self.claims.get(&d).is_some_and(|(n, _)| n == node) {
                    self.claims.remove(&d);
                }
                set.insert(d);
            }
        }
    }

    /// Where `asker` should get `digest` from, at `now`. With no holder,
    /// the first asker claims the registry fetch, and the others wait for
    /// it until its claim lapses (it failed, or went away).
    pub fn decide(&mut self, asker: &str, digest: &str, nodes: &[Node], now: Instant) -> Sources {
        let holders = self.sources(asker, digest, nodes);
        if !holders.is_empty() {
            return Sources::Peers(holders);
        }
        self.claims.retain(|_, (_, until)| *until > now);
        match self.claims.get(digest) {
            Some((node, _)) if node != asker => Sources::Wait,
            _ => {
                self.claims
                    .insert(digest.to_string(), (asker.to_string(), now + CLAIM));
                Sources::Registry
            }
        }
    }

    /// The claimant is still fetching: its claim holds a while longer.
    pub fn renew(&mut self, asker: &str, digest: &str, now: Instant) {
        if let Some((node, until)) = self.claims.get_mut(digest) {
            if node == asker {
                *until = now + CLAIM;
            }
        }
    }

    /// Ready nodes other than `asker` that hold `digest`, with their
    /// addresses; the order spreads pulls over the holders.
    pub fn sources(&self, asker: &str, digest: &str, nodes: &[Node]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = nodes
            .iter()
            .filter(|n| n.id != asker && n.status.state == NodeState::Ready)
            .filter(|n| !n.status.addr.is_empty())
            .filter(|n| self.by_node.get(&n.id).is_some_and(|s| s.contains(digest)))
            .map(|n| (n.id.clone(), n.status.addr.clone()))
            .collect();
        // Not always the same first holder: a rotation by the asker's id.
        let k = asker.bytes().map(usize::from).sum::<usize>();
        if !out.is_empty() {
            let len = out.len();
            out.rotate_left(k % len);
        }
        out.truncate(MAX_SOURCES);
        out
    }
}

impl Dispatcher {
    pub fn report_blobs(&self, node: &str, full: bool, added: Vec<String>, removed: Vec<String>) {
        let news = !added.is_empty();
        let mut index = self.blobs.lock().unwrap_or_else(|e| e.into_inner());
        index.report(node, full, added, removed);
        drop(index);
        if news {
            self.blob_added.notify_waiters();
        }
    }

    /// `blob_sources`, but while another node fetches the blob, held for
    /// up to `hold` until a node reports it.
    pub async fn blob_sources_held(
        &self,
        asker: &str,
        digest: &str,
        fetching: bool,
        hold: Duration,
    ) -> Sources {
        let deadline = tokio::time::Instant::now() + hold;
        loop {
            // Registered before the look, so a report between the look
            // and the wait is not missed.
            let added = self.blob_added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            match self.blob_sources(asker, digest, fetching) {
                Sources::Wait => {
                    if tokio::time::timeout_at(deadline, added).await.is_err() {
                        return Sources::Wait;
                    }
                }
                s => return s,
            }
        }
    }

    pub fn blob_sources(&self, asker: &str, digest: &str, fetching: bool) -> Sources {
        let now = Instant::now();
        if fetching {
            let mut index = self.blobs.lock().unwrap_or_else(|e| e.into_inner());
            index.renew(asker, digest, now);
            return Sources::Registry;
        }
        let nodes = self
            .store
            .read()
            .and_then(|v| v.nodes())
            .unwrap_or_default();
        let mut index = self.blobs.lock().unwrap_or_else(|e| e.into_inner());
        index.decide(asker, digest, &nodes, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{NodeDescription, NodeRole};

    fn node(id: &str, ready: bool) -> Node {
        let mut n = Node::joined(
            id.into(),
            NodeRole::Worker,
            NodeDescription::default(),
            format!("10.0.0.{}:4290", id.len()),
            String::new(),
        );
        if ready {
            n.status.state = NodeState::Ready;
        }
        n
    }

    #[test]
    fn holders_are_ready_nodes_but_the_asker() {
        let d = format!("sha256:{}", "a".repeat(64));
        let mut index = BlobIndex::default();
        index.report("a", true, vec![d.clone(), "junk".into()], vec![]);
        index.report("bb", true, vec![d.clone()], vec![]);
        index.report("ccc", true, vec![d.clone()], vec![]);
        let nodes = [node("a", true), node("bb", true), node("ccc", false)];
        let from_a = index.sources("a", &d, &nodes);
        assert_eq!(
            from_a,
            vec![("bb".to_string(), "10.0.0.2:4290".to_string())]
        );
        let from_x = index.sources("x", &d, &nodes);
        assert_eq!(from_x.len(), 2);
        // A full report replaces; a removal removes.
        index.report("bb", true, vec![], vec![]);
        assert!(index.sources("a", &d, &nodes).is_empty());
        index.report("a", false, vec![], vec![d.clone()]);
        assert!(index.sources("x", &d, &nodes).is_empty());
    }

    #[test]
    fn the_first_asker_fetches_and_the_others_wait_for_it() {
        let d = format!("sha256:{}", "b".repeat(64));
        let nodes = [node("a", true), node("bb", true), node("ccc", true)];
        let mut index = BlobIndex::default();
        let t0 = Instant::now();
        assert_eq!(index.decide("a", &d, &nodes, t0), Sources::Registry);
        assert_eq!(index.decide("bb", &d, &nodes, t0), Sources::Wait);
        // The claimant asks again (a retry): still its own to fetch.
        assert_eq!(index.decide("a", &d, &nodes, t0), Sources::Registry);
        // Renewed, the claim outlives its first term.
        index.renew("a", &d, t0 + CLAIM / 2);
        assert_eq!(index.decide("bb", &d, &nodes, t0 + CLAIM), Sources::Wait);
        // Done: the others fetch from it.
        index.report("a", false, vec![d.clone()], vec![]);
        assert_eq!(
            index.decide("ccc", &d, &nodes, t0 + CLAIM),
            Sources::Peers(vec![("a".to_string(), "10.0.0.1:4290".to_string())])
        );
        // A claimant that goes silent loses the claim.
        let e = format!("sha256:{}", "c".repeat(64));
        assert_eq!(index.decide("a", &e, &nodes, t0), Sources::Registry);
        assert_eq!(
            index.decide("bb", &e, &nodes, t0 + CLAIM * 2),
            Sources::Registry
        );
        assert!(!is_digest("sha256:ABC"));
    }
}
