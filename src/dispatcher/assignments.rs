//! Every node's assignments in one index that follows the store's commits.
//! One reader serves all sessions: on each commit it reads only the tasks
//! the commit changed and tells only the nodes whose set changed. A reader
//! per session, re-reading every task on every commit, costs
//! O(nodes × tasks) per commit, which a cluster of a thousand nodes cannot
//! afford.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};
use tracing::warn;

use super::Assignments;
use crate::shutdown::Shutdown;
use crate::store::{Commit, Kind, Object, Store, StoreError};
use crate::types::{
    IngressView, NetworkDriver, NetworkMembers, PublishMode, Service, ServiceView, Task, TaskState,
};

/// Assigned tasks by node: a pure structure, updated one task at a time.
#[derive(Default)]
pub(super) struct Index {
    /// node id → its tasks by id (sessions see them in id order).
    by_node: HashMap<String, BTreeMap<String, Task>>,
    /// task id → the node whose set holds it, to move or drop it later.
    node_of: HashMap<String, String>,
}

/// The node whose set holds `t`: a task joins its node's set once assigned.
fn holder(t: &Task) -> Option<&str> {
    t.node_id
        .as_deref()
        .filter(|_| t.status.state >= TaskState::Assigned)
}

impl Index {
    pub fn from_tasks(tasks: Vec<Task>) -> Index {
        let mut index = Index::default();
        for t in tasks {
            let id = t.id.clone();
            index.update(&id, Some(t));
        }
        index
    }

    /// Record the current version of task `id` (`None`: it was deleted).
    /// Returns the nodes whose set may have changed: its old and new node.
    pub fn update(&mut self, id: &str, task: Option<Task>) -> Vec<String> {
        let mut touched = Vec::new();
        if let Some(old) = self.node_of.remove(id) {
            if let Some(set) = self.by_node.get_mut(&old) {
                set.remove(id);
                if set.is_empty() {
                    self.by_node.remove(&old);
                }
            }
            touched.push(old);
        }
        if let Some(task) = task {
            if let Some(node) = holder(&task).map(str::to_string) {
                self.by_node
                    .entry(node.clone())
                    .or_default()
                    .insert(id.to_string(), task);
                self.node_of.insert(id.to_string(), node.clone());
                if !touched.contains(&node) {
                    touched.push(node);
                }
            }
        }
        touched
    }

    /// For each network that a task meant to run on `node` is on, the
    /// addresses of that network's tasks meant to run on other nodes, and
    /// whether it crosses between nodes in clear (`plain`, the ids of the
    /// networks created with `encrypted=false`).
    /// Sorted, so that two answers compare equal when they say the same.
    pub fn remote_members(&self, node: &str, plain: &BTreeSet<String>) -> Vec<NetworkMembers> {
        let live = |t: &&Task| t.desired_state == TaskState::Running;
        let Some(own) = self.by_node.get(node) else {
            return Vec::new();
        };
        let mine: BTreeSet<&str> = own
            .values()
            .filter(live)
            .flat_map(|t| t.spec.network.network_ids())
            .collect();
        if mine.is_empty() {
            return Vec::new();
        }
        let mut members: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (_, set) in self.by_node.iter().filter(|(n, _)| n.as_str() != node) {
            for t in set.values().filter(live) {
                for n in t.spec.network.network_ids().filter(|n| mine.contains(n)) {
                    members
                        .entry(n)
                        .or_default()
                        .extend(t.status.addresses.iter().map(String::as_str));
                }
            }
        }
        members
            .into_iter()
            .filter(|(_, a)| !a.is_empty())
            .map(|(n, a)| NetworkMembers {
                network: n.to_string(),
                addresses: a.into_iter().map(String::from).collect(),
                plain: plain.contains(n),
            })
            .collect()
    }

    /// The networks of the tasks meant to run on `node`.
    pub fn networks_of(&self, node: &str) -> BTreeSet<String> {
        self.by_node
            .get(node)
            .into_iter()
            .flat_map(|set| set.values())
            .filter(|t| t.desired_state == TaskState::Running)
            .flat_map(|t| t.spec.network.network_ids().map(String::from))
            .collect()
    }

    /// Each of `services`' VIPs on a network of `networks`, with the
    /// addresses of the service's running tasks on any node. Sorted.
    pub fn service_views(
        &self,
        networks: &BTreeSet<String>,
        services: &[Service],
    ) -> Vec<ServiceView> {
        let on_networks = |s: &Service| -> Vec<String> {
            s.spec
                .task
                .network
                .network_ids()
                .filter(|n| networks.contains(*n))
                .map(String::from)
                .collect()
        };
        let wanted: BTreeSet<&str> = services
            .iter()
            .filter(|s| !on_networks(s).is_empty())
            .map(|s| s.id.as_str())
            .collect();
        let mut addresses: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for t in self.by_node.values().flat_map(|set| set.values()) {
            if t.desired_state == TaskState::Running
                && t.status.state == TaskState::Running
                && wanted.contains(t.service_id.as_str())
            {
                addresses
                    .entry(t.service_id.as_str())
                    .or_default()
                    .extend(t.status.addresses.iter().map(String::as_str));
            }
        }
        let mut views = Vec::new();
        for s in services.iter().filter(|s| wanted.contains(s.id.as_str())) {
            for network in on_networks(s) {
                // Empty: no VIP (dnsrr, or not given yet), its tasks only.
                let vip = s.vips.iter().find(|v| v.network == network);
                let view = ServiceView {
                    name: s.spec.name.clone(),
                    vip: vip.map(|v| v.addr.clone()).unwrap_or_default(),
                    network,
                    addresses: addresses
                        .get(s.id.as_str())
                        .map(|a| a.iter().map(|x| x.to_string()).collect())
                        .unwrap_or_default(),
                };
                // An alias (a stack's short service name, `db`) answers as
                // the service does, on that network only: sent as a
                // service of its own, so nodes need nothing new for it.
                for alias in s.spec.task.network.aliases_on(&view.network) {
                    views.push(ServiceView {
                        name: alias.clone(),
                        ..view.clone()
                    });
                }
                views.push(view);
            }
        }
        views.sort();
        views
    }

    /// The ports of `services` published in ingress mode, each with its
    /// service's running tasks' addresses, sorted.
    pub fn ingress_views(&self, services: &[Service]) -> Vec<IngressView> {
        let wanted: BTreeSet<&str> = services
            .iter()
            .filter(|s| {
                s.spec
                    .task
                    .ports
                    .iter()
                    .any(|p| p.mode == PublishMode::Ingress)
            })
            .map(|s| s.id.as_str())
            .collect();
        if wanted.is_empty() {
            return Vec::new();
        }
        let mut addresses: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for t in self.by_node.values().flat_map(|set| set.values()) {
            if t.desired_state == TaskState::Running
                && t.status.state == TaskState::Running
                && wanted.contains(t.service_id.as_str())
            {
                addresses
                    .entry(t.service_id.as_str())
                    .or_default()
                    .extend(t.status.addresses.iter().map(String::as_str));
            }
        }
        let mut views = Vec::new();
        for s in services.iter().filter(|s| wanted.contains(s.id.as_str())) {
            let addrs: Vec<String> = addresses
                .get(s.id.as_str())
                .map(|a| a.iter().map(|x| x.to_string()).collect())
                .unwrap_or_default();
            for p in s
                .spec
                .task
                .ports
                .iter()
                .filter(|p| p.mode == PublishMode::Ingress)
            {
                views.push(IngressView {
                    protocol: p.protocol,
                    port: p.published,
                    target: p.target,
                    addresses: addrs.clone(),
                });
            }
        }
        views.sort();
        views
    }

    /// `node`'s assignments, sorted by task id.
    pub fn assigned(&self, node: &str) -> Vec<Task> {
        self.by_node
            .get(node)
            .map(|set| set.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// What the nodes' network views are made of besides the tasks.
#[derive(Debug, Default)]
pub struct Catalog {
    pub services: Vec<Service>,
    /// The ids of the overlay networks created with `encrypted=false`.
    pub plain: BTreeSet<String>,
}

/// The index and the sessions' channels, shared by the dispatcher's clones.
#[derive(Default)]
pub(super) struct Hub {
    /// std Mutex: never held across .await.
    inner: Mutex<Inner>,
    /// The services and networks, read once per change of any of them:
    /// every node's session asks for them at each heartbeat (its network
    /// view).
    catalog: Mutex<Option<Arc<Catalog>>>,
    /// Bumped when a commit changes a service or a network, so that a read
    /// that raced the change is not kept.
    catalog_gen: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Inner {
    /// `None` until the first session: a dispatcher nobody asks reads
    /// nothing. Also `None` again once the follower stopped.
    index: Option<Index>,
    /// One channel per node; every session of the node subscribes to it.
    senders: HashMap<String, watch::Sender<Assignments>>,
}

impl Hub {
    /// Every service, and the networks that cross in clear, from the cache
    /// while the follower runs and no service or network changed since
    /// they were read.
    pub fn catalog(&self, store: &Store) -> Result<Arc<Catalog>, StoreError> {
        use std::sync::atomic::Ordering;
        if let Some(c) = self.catalog.lock().expect("catalog lock").clone() {
            return Ok(c);
        }
        let generation = self.catalog_gen.load(Ordering::SeqCst);
        let read = store.read()?;
        let plain = read
            .networks()?
            .into_iter()
            .filter(|n| n.spec.driver == NetworkDriver::Overlay && !n.spec.encrypted)
            .map(|n| n.id)
            .collect();
        let read = Arc::new(Catalog {
            services: read.services()?,
            plain,
        });
        let following = self.inner.lock().expect("hub lock").index.is_some();
        let mut cache = self.catalog.lock().expect("catalog lock");
        if following && self.catalog_gen.load(Ordering::SeqCst) == generation {
            *cache = Some(read.clone());
        }
        Ok(read)
    }

    fn forget_catalog(&self) {
        self.catalog_gen
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        *self.catalog.lock().expect("catalog lock") = None;
    }

    /// The node whose set holds task `id` (`Some(None)`: no node's), or
    /// `None` while there is no index yet.
    pub fn holder_of(&self, id: &str) -> Option<Option<String>> {
        let inner = self.inner.lock().expect("hub lock");
        let index = inner.index.as_ref()?;
        Some(index.node_of.get(id).cloned())
    }

    /// The other nodes' tasks that share a network with `node_id`'s (none
    /// while there is no index yet).
    pub fn remote_members(&self, node_id: &str, plain: &BTreeSet<String>) -> Vec<NetworkMembers> {
        let inner = self.inner.lock().expect("hub lock");
        inner
            .index
            .as_ref()
            .map(|i| i.remote_members(node_id, plain))
            .unwrap_or_default()
    }

    /// The networks of `node_id`'s tasks (none while there is no index).
    pub fn networks_of(&self, node_id: &str) -> BTreeSet<String> {
        let inner = self.inner.lock().expect("hub lock");
        inner
            .index
            .as_ref()
            .map(|i| i.networks_of(node_id))
            .unwrap_or_default()
    }

    /// See `Index::service_views`.
    pub fn ingress_views(&self, services: &[Service]) -> Vec<IngressView> {
        let inner = self.inner.lock().expect("hub lock");
        inner
            .index
            .as_ref()
            .map(|i| i.ingress_views(services))
            .unwrap_or_default()
    }

    pub fn service_views(
        &self,
        networks: &BTreeSet<String>,
        services: &[Service],
    ) -> Vec<ServiceView> {
        let inner = self.inner.lock().expect("hub lock");
        inner
            .index
            .as_ref()
            .map(|i| i.service_views(networks, services))
            .unwrap_or_default()
    }

    /// A watch of `node_id`'s assignments, starting the follower on first use.
    pub fn session(
        self: &Arc<Self>,
        node_id: &str,
        store: &Store,
        shutdown: &Shutdown,
    ) -> watch::Receiver<Assignments> {
        let mut inner = self.inner.lock().expect("hub lock");
        if inner.index.is_none() {
            // Watch before reading, so that no commit falls in between.
            let events = store.watch();
            let (tasks, stale) = match store.read().and_then(|v| v.tasks()) {
                Ok(tasks) => (tasks, false),
                Err(e) => {
                    // The follower reloads on the next commit.
                    warn!(error = %e, "cannot read assignments");
                    (Vec::new(), true)
                }
            };
            inner.index = Some(Index::from_tasks(tasks));
            let follower = self
                .clone()
                .follow(store.clone(), events, stale, shutdown.clone());
            tokio::spawn(follower);
        }
        let Inner { index, senders } = &mut *inner;
        let index = index.as_ref().expect("index was just built");
        senders
            .entry(node_id.to_string())
            .or_insert_with(|| watch::channel(Arc::new(index.assigned(node_id))).0)
            .subscribe()
    }

    /// Keeps the index current, one commit at a time, and re-sends the set
    /// of every node a commit touched. Ends at shutdown, which closes every
    /// session's channel.
    async fn follow(
        self: Arc<Self>,
        store: Store,
        mut events: broadcast::Receiver<Arc<Commit>>,
        // Set after a failed read: the next commit reloads everything.
        mut stale: bool,
        mut shutdown: Shutdown,
    ) {
        loop {
            let ev = tokio::select! {
                _ = shutdown.wait() => break,
                ev = events.recv() => ev,
            };
            match &ev {
                Ok(commit)
                    if !commit
                        .changed
                        .iter()
                        .any(|c| c.is(Kind::Service) || c.is(Kind::Network)) => {}
                _ => self.forget_catalog(),
            }
            let result = match ev {
                Ok(_) if stale => self.reload(&store),
                Ok(commit) => self.apply(&store, &commit),
                // Missed commits: only a full read is sure to be complete.
                Err(broadcast::error::RecvError::Lagged(_)) => self.reload(&store),
                Err(broadcast::error::RecvError::Closed) => break,
            };
            stale = result
                .map_err(|e| warn!(error = %e, "cannot read assignments"))
                .is_err();
        }
        let mut inner = self.inner.lock().expect("hub lock");
        inner.senders.clear();
        inner.index = None;
        drop(inner);
        self.forget_catalog();
    }

    /// Reads the tasks `commit` changed, outside the lock, then updates.
    fn apply(&self, store: &Store, commit: &Commit) -> Result<(), StoreError> {
        let latest = commit.tasks(store)?;
        if latest.is_empty() {
            return Ok(());
        }
        let mut inner = self.inner.lock().expect("hub lock");
        let Inner { index, senders } = &mut *inner;
        let Some(index) = index else { return Ok(()) };
        // A set: a commit of the scheduler touches a thousand nodes.
        let mut touched = std::collections::HashSet::new();
        for (id, task) in latest {
            let task = task.as_deref().and_then(Object::as_task).cloned();
            touched.extend(index.update(id, task));
        }
        for node in touched {
            publish(senders, index, &node);
        }
        Ok(())
    }

    /// Rebuilds the index from every task (after lagging behind).
    fn reload(&self, store: &Store) -> Result<(), StoreError> {
        let tasks = store.read()?.tasks()?;
        let fresh = Index::from_tasks(tasks);
        let mut inner = self.inner.lock().expect("hub lock");
        let Inner { index, senders } = &mut *inner;
        let index = index.insert(fresh);
        let nodes: Vec<String> = senders.keys().cloned().collect();
        for node in nodes {
            publish(senders, index, &node);
        }
        Ok(())
    }
}

/// Sends `node` its set if it changed; forgets a channel nobody watches.
fn publish(senders: &mut HashMap<String, watch::Sender<Assignments>>, index: &Index, node: &str) {
    let Some(tx) = senders.get(node) else { return };
    if tx.is_closed() {
        senders.remove(node);
        return;
    }
    let set = index.assigned(node);
    tx.send_if_modified(|cur| {
        if **cur == set {
            return false;
        }
        *cur = Arc::new(set);
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(id: &str, node: &str, state: TaskState) -> Task {
        let mut t = crate::orchestrator::probe_task();
        t.id = id.into();
        t.node_id = Some(node.into());
        t.status.state = state;
        t
    }

    fn ids(ts: &[Task]) -> Vec<&str> {
        ts.iter().map(|t| t.id.as_str()).collect()
    }

    #[test]
    fn a_node_sees_its_assigned_tasks_in_id_order() {
        let index = Index::from_tasks(vec![
            on("c", "n1", TaskState::Running),
            on("a", "n1", TaskState::Assigned),
            on("b", "n2", TaskState::Running),
            // Not assigned yet: a global task made for n1 waits for the
            // scheduler before n1 sees it.
            on("d", "n1", TaskState::Pending),
        ]);
        assert_eq!(ids(&index.assigned("n1")), vec!["a", "c"]);
        assert_eq!(ids(&index.assigned("n2")), vec!["b"]);
        assert!(index.assigned("n3").is_empty());
    }

    #[test]
    fn updates_touch_the_old_and_the_new_node() {
        let mut index = Index::from_tasks(vec![on("a", "n1", TaskState::Running)]);
        let mut moved = on("a", "n2", TaskState::Assigned);
        assert_eq!(index.update("a", Some(moved.clone())), vec!["n1", "n2"]);
        assert!(index.assigned("n1").is_empty());
        moved.status.state = TaskState::Running;
        assert_eq!(index.update("a", Some(moved.clone())), vec!["n2"]);
        assert_eq!(index.assigned("n2"), vec![moved]);
        assert_eq!(index.update("a", None), vec!["n2"]);
        assert!(index.assigned("n2").is_empty());
        assert!(index.update("gone", None).is_empty());
    }
}
