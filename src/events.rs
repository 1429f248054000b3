//! `shoal events`: what the cluster's state went through, as a stream of
//! events made from the store's commits on a manager. Every manager
//! applies the same log, so a commit has the same index everywhere: a
//! client that loses its manager asks another (or the same one, back) for
//! what came after the last index it saw. A manager keeps the latest
//! `KEPT` events in memory for `--since` and for those resumes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::shutdown::Shutdown;
use crate::store::{Changed, Commit, Kind, Object, Store, Written};

/// Events a manager keeps for `--since` and for clients that resume.
pub const KEPT: usize = 10_000;

/// One change of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The store commit (Raft log index) that made it: the same on every
    /// manager.
    pub index: u64,
    /// When it was written (ms since epoch, the writing leader's clock;
    /// the recording manager's for removals).
    pub time_ms: i64,
    /// `service`, `node`, `task`, `network`, `secret`, `config` or
    /// `cluster`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `create`, `update` or `remove`.
    pub action: String,
    pub id: String,
    /// Its name (a task's `service.slot`), when known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// What changed, in a few words (a task's state, a node's status).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// Where a subscriber starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// Only what happens from now on.
    Now,
    /// Events of commits after this index.
    Index(u64),
    /// Events written at or after this time (ms since epoch).
    Time(i64),
}

/// What a subscriber gets: the kept events it asked for, then the live
/// ones. `gap`: some it asked for are no longer (or not yet) kept here.
pub struct Subscription {
    pub backlog: Vec<Arc<Event>>,
    pub live: broadcast::Receiver<Arc<Event>>,
    pub gap: bool,
}

pub struct EventLog {
    kept: Mutex<Kept>,
    live: broadcast::Sender<Arc<Event>>,
    /// Set once the daemon stops: streams end, so that the API server's
    /// graceful stop is not held by a client that follows forever.
    closed: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct Kept {
    events: VecDeque<Arc<Event>>,
    /// The first commit index this manager recorded since it started.
    first_index: Option<u64>,
    /// Names of objects that exist, so that a removal can say whose.
    names: HashMap<String, String>,
}

impl EventLog {
    pub fn new() -> Arc<EventLog> {
        Arc::new(EventLog {
            kept: Mutex::new(Kept::default()),
            live: broadcast::channel(4096).0,
            closed: tokio::sync::watch::channel(false).0,
        })
    }

    /// Changes once the daemon stops.
    pub fn closed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closed.subscribe()
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        // A panic while holding it leaves plain data behind: still usable.
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the events of every commit the store applies, until
    /// shutdown.
    pub async fn record(self: Arc<Self>, store: Store, mut shutdown: Shutdown) {
        let mut commits = store.watch();
        if let Ok(view) = store.read() {
            let mut k = self.kept();
            let named = view.services().map(|v| {
                v.into_iter()
                    .map(|s| (s.id, s.spec.name))
                    .collect::<Vec<_>>()
            });
            k.names.extend(named.unwrap_or_default());
            let nets = view.networks().map(|v| {
                v.into_iter()
                    .map(|n| (n.id, n.spec.name))
                    .collect::<Vec<_>>()
            });
            k.names.extend(nets.unwrap_or_default());
            let nodes = view.nodes().map(|v| {
                v.into_iter()
                    .map(|n| (n.id, n.description.hostname))
                    .collect::<Vec<_>>()
            });
            k.names.extend(nodes.unwrap_or_default());
        }
        loop {
            let commit = tokio::select! {
                _ = shutdown.wait() => {
                    self.closed.send_replace(true);
                    return;
                }
                c = commits.recv() => c,
            };
            match commit {
                Ok(c) => self.add(&c, crate::types::now_ms()),
                // Lost commits are lost events: the kept ones go on from
                // the next.
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(lost = n, "events: commits went by unrecorded");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Records one commit's events.
    pub fn add(&self, commit: &Commit, now_ms: i64) {
        let mut k = self.kept();
        k.first_index.get_or_insert(commit.index);
        for ch in &commit.changed {
            let Some(e) = event_of(commit.index, ch, &mut k.names, now_ms) else {
                continue;
            };
            let e = Arc::new(e);
            if k.events.len() >= KEPT {
                k.events.pop_front();
            }
            k.events.push_back(e.clone());
            // Sent under the lock: a subscriber never misses one between
            // its backlog and its live stream.
            let _ = self.live.send(e);
        }
    }

    /// The kept events `since` asks for, and the live ones after them.
    pub fn subscribe(&self, since: Since) -> Subscription {
        let k = self.kept();
        let live = self.live.subscribe();
        let (backlog, gap): (Vec<Arc<Event>>, bool) = match since {
            Since::Now => (Vec::new(), false),
            Since::Index(i) => {
                let oldest = k.events.front().map(|e| e.index).or(k.first_index);
                let gap = oldest.is_some_and(|o| o > i + 1);
                let b = k.events.iter().filter(|e| e.index > i).cloned().collect();
                (b, gap)
            }
            Since::Time(t) => {
                let b: Vec<Arc<Event>> = k
                    .events
                    .iter()
                    .filter(|e| e.time_ms >= t)
                    .cloned()
                    .collect();
                // Older than what is kept: said so, when the ring is full.
                let gap = k.events.len() >= KEPT && k.events.front().is_some_and(|e| e.time_ms > t);
                (b, gap)
            }
        };
        Subscription { backlog, live, gap }
    }
}

/// The event of one changed object; None for what is no user's change
/// (a snapshot installed on a lagging manager).
fn event_of(
    index: u64,
    ch: &Changed,
    names: &mut HashMap<String, String>,
    now_ms: i64,
) -> Option<Event> {
    let mut attributes = std::collections::BTreeMap::new();
    let (action, name, time_ms) = match &ch.written {
        Written::Unread => return None,
        Written::Deleted => ("remove", names.remove(&ch.id).unwrap_or_default(), now_ms),
        Written::Object(o) => {
            let (name, time) = describe(o, &mut attributes);
            if ch.kind != Kind::Task {
                names.insert(ch.id.clone(), name.clone());
            }
            (if ch.created { "create" } else { "update" }, name, time)
        }
    };
    Some(Event {
        index,
        time_ms,
        kind: ch.kind.as_str().to_string(),
        action: action.to_string(),
        id: ch.id.clone(),
        name,
        attributes,
    })
}

/// An object's name and write time, and what to say of it.
fn describe(
    o: &Object,
    attributes: &mut std::collections::BTreeMap<String, String>,
) -> (String, i64) {
    let mut attr = |k: &str, v: String| {
        attributes.insert(k.to_string(), v);
    };
    match o {
        Object::Cluster(c) => ("cluster".into(), c.meta.updated_ms),
        Object::Node(n) => {
            attr("state", n.status.state.as_str().into());
            attr("availability", n.spec.availability.as_str().into());
            attr("role", n.spec.role.as_str().into());
            (n.description.hostname.clone(), n.meta.updated_ms)
        }
        Object::Service(s) => {
            attr("version", s.spec_version.to_string());
            if let Some(u) = &s.update_status {
                attr("update", u.state.as_str().into());
            }
            (s.spec.name.clone(), s.meta.updated_ms)
        }
        Object::Task(t) => {
            attr("service", t.service_name.clone());
            attr("state", t.status.state.as_str().into());
            attr("desired", t.desired_state.as_str().into());
            if let Some(n) = &t.node_id {
                attr("node", n.clone());
            }
            (t.display_name(), t.meta.updated_ms)
        }
        Object::Network(n) => (n.spec.name.clone(), n.meta.updated_ms),
        Object::Secret(s) | Object::Config(s) => (s.spec.name.clone(), s.meta.updated_ms),
    }
}

/// The event types `--filter type=` takes.
pub const TYPES: &[&str] = &[
    "service", "node", "task", "network", "secret", "config", "cluster",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::*;

    fn service(name: &str) -> Object {
        Object::Secret(Secret {
            id: format!("id-{name}"),
            meta: Meta::default(),
            spec: SecretSpec {
                name: name.into(),
                labels: Default::default(),
                data: Default::default(),
            },
        })
    }

    fn commit(index: u64, changed: Vec<Changed>) -> Commit {
        Commit { index, changed }
    }

    fn written(o: Object, created: bool) -> Changed {
        Changed {
            kind: o.kind(),
            id: o.id().to_string(),
            written: Written::Object(Arc::new(o)),
            created,
        }
    }

    #[test]
    fn commits_become_events_kept_for_later_subscribers() {
        let log = EventLog::new();
        let mut live = log.subscribe(Since::Now);
        log.add(&commit(5, vec![written(service("pw"), true)]), 1);
        log.add(&commit(6, vec![written(service("pw"), false)]), 2);
        log.add(
            &commit(
                7,
                vec![Changed {
                    kind: Kind::Secret,
                    id: "id-pw".into(),
                    written: Written::Deleted,
                    created: false,
                }],
            ),
            3,
        );
        let actions: Vec<String> = (0..3)
            .map(|_| live.live.try_recv().unwrap().action.clone())
            .collect();
        assert_eq!(actions, ["create", "update", "remove"]);
        // The removal still names it.
        let all = log.subscribe(Since::Index(4));
        assert_eq!(all.backlog.len(), 3);
        assert_eq!(all.backlog[2].name, "pw");
        assert!(!all.gap);
        // Resuming after index 5 gives 6 and 7; after a later start than
        // asked for, a gap is said.
        let after = log.subscribe(Since::Index(5));
        assert_eq!(
            after.backlog.iter().map(|e| e.index).collect::<Vec<_>>(),
            [6, 7]
        );
        let fresh = EventLog::new();
        fresh.add(&commit(50, vec![written(service("x"), true)]), 1);
        assert!(fresh.subscribe(Since::Index(10)).gap);
        assert!(!fresh.subscribe(Since::Index(49)).gap);
    }
}
