//! The session protocol, the manager's half: what a node is told when it
//! opens a session, and what follows. `rpc::dispatch` only carries it.
//!
//! A session starts with `Cluster` (where the managers are, how often to
//! heartbeat, the node's role), then the node's whole set of assignments,
//! then only what changed. It ends when the node is no longer a member
//! (checked once a heartbeat period), or when this manager stops leading.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{Dispatcher, NetView};
use crate::store::{Change, Kind, Object, Store, StoreError};
use crate::types::{
    ImageGc, Node, NodeRole, OverlayPeer, RegistryAccess, SessionMessage, SessionRequest, Task,
};

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

fn image_gc(store: &Store) -> ImageGc {
    store
        .read()
        .ok()
        .and_then(|v| v.cluster().ok().flatten())
        .map(|c| c.image_gc)
        .unwrap_or_default()
}

fn cluster_message(
    store: &Store,
    period: Duration,
    role: NodeRole,
    node_id: &str,
    net: NetView,
) -> SessionMessage {
    SessionMessage::Cluster {
        image_gc: image_gc(store),
        bridge_subnet: store
            .read()
            .ok()
            .and_then(|v| v.node(node_id).ok().flatten())
            .and_then(|n| n.bridge_subnet),
        managers: store
            .read()
            .and_then(|v| v.manager_addrs())
            .unwrap_or_default(),
        heartbeat_period_ms: period.as_millis() as u64,
        role,
        overlay_peers: overlay_peers(store, node_id),
        remote_members: net.members,
        services: net.services,
        ingress: net.ingress,
    }
}

/// Every other node that the node's overlay can have as a peer: one with
/// a bridge subnet, an overlay endpoint and an address. Sorted, so that
/// two lists compare equal when they say the same.
fn overlay_peers(store: &Store, node_id: &str) -> Vec<OverlayPeer> {
    let Ok(nodes) = store.read().and_then(|v| v.nodes()) else {
        return Vec::new();
    };
    let mut peers: Vec<OverlayPeer> = nodes
        .into_iter()
        .filter(|n| n.id != node_id)
        .filter_map(|n| {
            let ep = n.description.overlay?;
            let host = crate::netaddr::host_of(&n.status.addr)?;
            Some(OverlayPeer {
                node_id: n.id,
                public_key: ep.public_key,
                endpoint: crate::netaddr::join_host_port(&host, ep.port),
                subnet: n.bridge_subnet?,
            })
        })
        .collect();
    peers.sort();
    peers
}

/// The next subnet of the cluster's pool that no node bridge and no
/// network has. Two nodes connecting at once may be given the same: the
/// store refuses the second write, and that node gets one when it
/// connects again.
fn free_bridge_subnet(store: &Store) -> Option<String> {
    let view = store.read().ok()?;
    let pool = crate::ipam::parse_pool(&view.cluster().ok()??.addr_pool).ok()?;
    let mut taken = Vec::new();
    for n in view.nodes().ok()? {
        taken.extend(
            n.bridge_subnet
                .and_then(|s| crate::ipam::parse_subnet(&s).ok()),
        );
    }
    for n in view.networks().ok()? {
        taken.extend(crate::ipam::parse_subnet(&n.spec.subnet).ok());
    }
    let s = crate::ipam::next_subnet(&pool, crate::ipam::SUBNET_PREFIX, &taken);
    if s.is_none() {
        warn!(%pool, "the address pool is full: a node gets no bridge subnet");
    }
    s.map(|s| s.to_string())
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
        if updated.bridge_subnet.is_none() {
            updated.bridge_subnet = free_bridge_subnet(store);
        }
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
    let mut gc = image_gc(&store);
    let mut peers = overlay_peers(&store, &node.id);
    let mut net = dispatcher.net_view(&node.id);
    let cluster =
        |role, net: &NetView| Ok(cluster_message(&store, period, role, &node.id, net.clone()));
    if tx.send(cluster(role, &net)).await.is_err() {
        return;
    }
    let mut sent: HashMap<String, Task> = HashMap::new();
    // The registry access the node was sent and keeps, by host.
    let mut node_has: BTreeMap<String, RegistryAccess> = BTreeMap::new();
    // The secrets and configs the node was sent and keeps, by id.
    let mut node_files: BTreeSet<String> = BTreeSet::new();
    let mut first = true;
    loop {
        let set = assignments.borrow_and_update().clone();
        let msg = diff(&mut sent, &set, first);
        first = false;
        if let Some(mut msg) = msg {
            with_registries(&mut msg, &cluster_registries(&store), &mut node_has);
            with_files(&mut msg, &sent, &store, &mut node_files);
            if tx.send(Ok(msg)).await.is_err() {
                return;
            }
            // A task of a network new to the node: it learns that
            // network's tasks elsewhere now, not at the next tick.
            let now = dispatcher.net_view(&node.id);
            if now != net {
                net = now;
                if tx.send(cluster(role, &net)).await.is_err() {
                    return;
                }
            }
        }
        tokio::select! {
            r = assignments.changed() => if r.is_err() { return },
            // A removed node's open session ends within a period.
            _ = tokio::time::sleep(period) => {
                // A `registry login`, `logout` or `add` since the last
                // message reaches the nodes whose tasks need it: the whole
                // set again, whose registries replace the node's.
                if !sent.is_empty() {
                    let all = cluster_registries(&store);
                    if registries_changed(&all, sent.values(), &node_has) {
                        let mut tasks: Vec<Task> = sent.values().cloned().collect();
                        tasks.sort_by(|a, b| a.id.cmp(&b.id));
                        let mut msg = SessionMessage::Assignments {
                            full: true,
                            tasks,
                            removed: Vec::new(),
                            registries: Vec::new(),
                            files: Vec::new(),
                        };
                        with_registries(&mut msg, &all, &mut node_has);
                        with_files(&mut msg, &sent, &store, &mut node_files);
                        if tx.send(Ok(msg)).await.is_err() {
                            return;
                        }
                    }
                }
                match check_member(&store, &node.id) {
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    // Promoted or demoted: the node takes its new role
                    // from here.
                    Ok(n) if n.spec.role != role => {
                        role = n.spec.role;
                        if tx.send(cluster(role, &net)).await.is_err() {
                            return;
                        }
                    }
                    // `cluster update --image-gc-*`, and nodes that come,
                    // go or change address, reach the node here.
                    Ok(_) if image_gc(&store) != gc
                        || overlay_peers(&store, &node.id) != peers
                        || dispatcher.net_view(&node.id) != net => {
                        gc = image_gc(&store);
                        peers = overlay_peers(&store, &node.id);
                        net = dispatcher.net_view(&node.id);
                        if tx.send(cluster(role, &net)).await.is_err() {
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
        registries: Vec::new(),
        files: Vec::new(),
    })
}

/// The cluster's registry entries (none when the store cannot say).
fn cluster_registries(store: &Store) -> Vec<RegistryAccess> {
    match store.read().and_then(|v| v.cluster()) {
        Ok(c) => c.map(|c| c.registries).unwrap_or_default(),
        Err(e) => {
            warn!(error = %e, "cannot read the cluster's registries");
            Vec::new()
        }
    }
}

/// Whether a task still needs its image's registry: it is to run and has
/// not finished (a terminal task pulls nothing).
fn needs_registry(t: &Task) -> bool {
    t.is_live()
}

/// The entries of `all` for the registries of `tasks`' images, for the
/// tasks that still need them, one per host, sorted by host. An entry with
/// no credentials is sent too: the node needs its CA, mirrors or plain
/// HTTP to pull.
fn registries_for<'a>(
    all: &[RegistryAccess],
    tasks: impl IntoIterator<Item = &'a Task>,
) -> Vec<RegistryAccess> {
    let mut out: BTreeMap<&str, &RegistryAccess> = BTreeMap::new();
    for t in tasks.into_iter().filter(|t| needs_registry(t)) {
        let host = crate::types::registry_host(&t.spec.container.image);
        if let Some(a) = all.iter().find(|a| a.host == host) {
            out.insert(&a.host, a);
        }
    }
    out.into_values().cloned().collect()
}

/// Fills an assignments message's registries from `all`, for its tasks,
/// and notes what the node then keeps: a full message replaces the node's
/// registries, an increment adds to them.
fn with_registries(
    msg: &mut SessionMessage,
    all: &[RegistryAccess],
    node_has: &mut BTreeMap<String, RegistryAccess>,
) {
    let SessionMessage::Assignments {
        full,
        tasks,
        registries,
        ..
    } = msg
    else {
        return;
    };
    *registries = registries_for(all, tasks.iter());
    if *full {
        node_has.clear();
    }
    for a in registries.iter() {
        node_has.insert(a.host.clone(), a.clone());
    }
}

/// Fills an assignments message with the data of the secrets and configs
/// of its tasks still to run that the node lacks (all of them when the
/// message is the full set, which replaces what the node keeps). One the
/// store no longer has is left out: the node then fails the task, saying
/// it never got it. `sent` is the node's whole set once it has the
/// message: the node drops the data none of its tasks still to run uses
/// (`agent::files::Files::retain_used`), and so does `node_files` here.
fn with_files(
    msg: &mut SessionMessage,
    sent: &HashMap<String, Task>,
    store: &Store,
    node_files: &mut BTreeSet<String>,
) {
    let SessionMessage::Assignments {
        full, tasks, files, ..
    } = msg
    else {
        return;
    };
    if *full {
        node_files.clear();
    }
    let used: BTreeSet<&str> = sent
        .values()
        .filter(|t| t.is_live())
        .flat_map(|t| t.spec.file_ids())
        .collect();
    node_files.retain(|id| used.contains(id.as_str()));
    let mut wanted: BTreeMap<&str, Kind> = BTreeMap::new();
    for t in tasks.iter().filter(|t| t.is_live()) {
        for f in &t.spec.secrets {
            wanted.insert(&f.id, Kind::Secret);
        }
        for f in &t.spec.configs {
            wanted.insert(&f.id, Kind::Config);
        }
    }
    wanted.retain(|id, _| !node_files.contains(*id));
    if wanted.is_empty() {
        return;
    }
    let view = match store.read() {
        Ok(v) => v,
        Err(e) => {
            return warn!(error = %e, "cannot read the secrets and configs of the node's tasks")
        }
    };
    for (id, kind) in wanted {
        match view.file(kind, id) {
            Ok(Some(f)) => {
                node_files.insert(id.to_string());
                files.push(crate::types::FileData {
                    id: f.id,
                    data: f.spec.data,
                });
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "cannot read a secret or config of the node's tasks"),
        }
    }
}

/// Whether the node's registry access for the tasks it was `sent` is not
/// what the cluster now says: an entry added, changed or removed for a
/// registry one of them needs.
fn registries_changed<'a>(
    all: &[RegistryAccess],
    sent: impl IntoIterator<Item = &'a Task>,
    node_has: &BTreeMap<String, RegistryAccess>,
) -> bool {
    sent.into_iter().filter(|t| needs_registry(t)).any(|t| {
        let host = crate::types::registry_host(&t.spec.container.image);
        all.iter().find(|a| a.host == host) != node_has.get(host)
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
                    endpoint_mode: Default::default(),
                    update: Default::default(),
                    rollback: Default::default(),
                    depends_on: Vec::new(),
                    task: Default::default(),
                },
                spec_version: 1,
                previous_spec: None,
                vips: Vec::new(),
                update_status: None,
                rebalance: Vec::new(),
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
            ..
        }) = diff(&mut sent, &[b2.clone()], false)
        else {
            panic!("expected assignments")
        };
        assert!(!full);
        assert_eq!(tasks, vec![b2]);
        assert_eq!(removed, vec!["a".to_string()]);
    }

    fn pulling(id: &str, image: &str) -> Task {
        let mut t = task(id, 1);
        t.spec.container.image = image.into();
        t
    }

    fn access(host: &str, password: Option<&str>) -> RegistryAccess {
        RegistryAccess {
            host: host.into(),
            username: password.map(|_| "me".into()),
            password: password.map(Into::into),
            ..Default::default()
        }
    }

    fn hosts(r: &[RegistryAccess]) -> Vec<&str> {
        r.iter().map(|a| a.host.as_str()).collect()
    }

    #[test]
    fn a_message_carries_the_registries_of_its_live_tasks_only() {
        let mut ca_only = access("ca.example", None);
        ca_only.ca_pem = Some("-----BEGIN CERTIFICATE-----".into());
        let all = vec![
            access("docker.io", Some("hub-secret")),
            access("reg.example:5000", Some("reg-secret")),
            access("unused.example", Some("unused-secret")),
            ca_only,
            access("done.example", Some("done-secret")),
        ];
        let mut done = pulling("d", "done.example/app:1");
        done.status.state = crate::types::TaskState::Failed;
        let tasks = [
            pulling("a", "docker.io/library/busybox:latest"),
            pulling("b", "reg.example:5000/team/web:1.4"),
            pulling("c", "reg.example:5000/team/api:2"),
            pulling("e", "ca.example/x:1"),
            pulling("f", "elsewhere.example/x:1"),
            done,
        ];
        let mut msg = diff(&mut HashMap::new(), &tasks, true).unwrap();
        let mut node_has = BTreeMap::new();
        with_registries(&mut msg, &all, &mut node_has);
        let SessionMessage::Assignments { registries, .. } = &msg else {
            panic!("expected assignments")
        };
        // One per host, sorted; none for a host no live task pulls from,
        // and the CA-only entry too.
        assert_eq!(
            hosts(registries),
            vec!["ca.example", "docker.io", "reg.example:5000"]
        );
        assert_eq!(
            node_has.keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["ca.example", "docker.io", "reg.example:5000"]
        );
        // Nothing changed: nothing to send again.
        assert!(!registries_changed(&all, tasks.iter(), &node_has));
        // A logout, or a new password, is seen.
        let mut fewer = all.clone();
        fewer.retain(|a| a.host != "docker.io");
        assert!(registries_changed(&fewer, tasks.iter(), &node_has));
        let mut changed = all.clone();
        changed[1].password = Some("new".into());
        assert!(registries_changed(&changed, tasks.iter(), &node_has));
        // An entry for a registry no task of the node needs is not.
        let mut more = all.clone();
        more.push(access("other.example", Some("x")));
        assert!(!registries_changed(&more, tasks.iter(), &node_has));
    }

    #[test]
    fn an_increment_adds_to_what_the_node_has_and_a_full_set_replaces_it() {
        let all = vec![
            access("a.example", Some("1")),
            access("b.example", Some("2")),
        ];
        let mut sent = HashMap::new();
        let mut node_has = BTreeMap::new();
        let a = pulling("a", "a.example/x:1");
        let b = pulling("b", "b.example/x:1");
        let mut first = diff(&mut sent, std::slice::from_ref(&a), true).unwrap();
        with_registries(&mut first, &all, &mut node_has);
        let mut more = diff(&mut sent, &[a.clone(), b.clone()], false).unwrap();
        with_registries(&mut more, &all, &mut node_has);
        let SessionMessage::Assignments { registries, .. } = &more else {
            panic!("expected assignments")
        };
        assert_eq!(hosts(registries), vec!["b.example"]);
        assert_eq!(node_has.len(), 2);
        let mut again = diff(&mut HashMap::new(), &[b], true).unwrap();
        with_registries(&mut again, &all, &mut node_has);
        assert_eq!(
            node_has.keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["b.example"]
        );
    }

    #[test]
    fn the_debug_of_a_message_shows_no_password() {
        let mut msg = diff(
            &mut HashMap::new(),
            &[pulling("a", "reg.example/x:1")],
            true,
        )
        .unwrap();
        with_registries(
            &mut msg,
            &[access("reg.example", Some("hunter2"))],
            &mut BTreeMap::new(),
        );
        let shown = format!("{msg:?}");
        assert!(shown.contains("reg.example"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;
    use crate::types::{FileRef, Meta, Secret, SecretSpec, TaskState};

    fn store_with_secret() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("state.redb"),
            crate::store::Codec::ephemeral(),
        )
        .unwrap();
        let secret = Secret {
            id: "x".into(),
            meta: Meta::default(),
            spec: SecretSpec {
                name: "pw".into(),
                labels: Default::default(),
                data: bytes::Bytes::from_static(b"hunter2"),
            },
        };
        store
            .apply(vec![Change::Create(Object::Secret(secret))])
            .unwrap();
        (dir, store)
    }

    fn with_secret(id: &str) -> Task {
        let mut t = crate::orchestrator::probe_task();
        t.id = id.into();
        t.status.state = TaskState::Assigned;
        t.spec.secrets = vec![FileRef {
            id: "x".into(),
            name: "pw".into(),
            target: "pw".into(),
            uid: 0,
            gid: 0,
            mode: 0o444,
        }];
        t
    }

    /// The data in each message, as the session would send it.
    fn step(
        sent: &mut HashMap<String, Task>,
        set: &[Task],
        first: bool,
        store: &Store,
        node_files: &mut BTreeSet<String>,
    ) -> Vec<String> {
        let mut msg = diff(sent, set, first).expect("a message");
        with_files(&mut msg, sent, store, node_files);
        let SessionMessage::Assignments { files, .. } = msg else {
            unreachable!()
        };
        files.into_iter().map(|f| f.id).collect()
    }

    /// Stop-first: the old task ends before its replacement comes; the
    /// node drops the data meanwhile, so the replacement brings it again.
    #[test]
    fn data_goes_with_the_tasks_that_need_it_and_again_after_a_gap() {
        let (_dir, store) = store_with_secret();
        let (mut sent, mut has) = (HashMap::new(), BTreeSet::new());
        let a = with_secret("a");
        assert_eq!(
            step(&mut sent, std::slice::from_ref(&a), true, &store, &mut has),
            ["x"]
        );
        let mut ended = a.clone();
        ended.status.state = TaskState::Complete;
        assert!(step(&mut sent, &[ended.clone()], false, &store, &mut has).is_empty());
        let b = with_secret("b");
        assert_eq!(
            step(&mut sent, &[ended, b.clone()], false, &store, &mut has),
            ["x"]
        );
        // Once there, a change of the task sends nothing more.
        let mut b2 = b;
        b2.status.state = TaskState::Running;
        assert!(step(&mut sent, &[b2], false, &store, &mut has).is_empty());
    }
}
