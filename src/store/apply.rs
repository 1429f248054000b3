//! Changes and how a batch of them is applied. `apply` is deterministic
//! (given the same state and batch, the same result), which is what Raft
//! will need: every manager applies the same log to the same state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::codec::Codec;
use super::{
    Changed, Commit, StoreError, Written, CLUSTER, CONFIGS, MARKS, META, NETWORKS, NODES, SECRETS,
    SERVICES, TASKS,
};
use crate::types::{
    Cluster, Config, Meta, Network, Node, Secret, Service, Task, TaskState, TaskStatus,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    Cluster,
    Node,
    Service,
    Task,
    Network,
    Secret,
    Config,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cluster => "cluster",
            Kind::Node => "node",
            Kind::Service => "service",
            Kind::Task => "task",
            Kind::Network => "network",
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }

    fn table(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            Kind::Cluster => CLUSTER,
            Kind::Node => NODES,
            Kind::Service => SERVICES,
            Kind::Task => TASKS,
            Kind::Network => NETWORKS,
            Kind::Secret => SECRETS,
            Kind::Config => CONFIGS,
        }
    }
}

// Objects live in batches of changes that are encoded and applied once;
// boxing the large ones would buy nothing but indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Object {
    Cluster(Cluster),
    Node(Node),
    Service(Service),
    Task(Task),
    /// Written only once every manager reports `crate::LEVEL_NETWORKS`:
    /// an older manager cannot apply it.
    Network(Network),
    /// Written only once every manager reports `crate::LEVEL_SECRETS`.
    Secret(Secret),
    Config(Config),
}

impl Object {
    /// The task, if this is one.
    pub fn as_task(&self) -> Option<&Task> {
        match self {
            Object::Task(t) => Some(t),
            _ => None,
        }
    }

    /// The node, if this is one.
    pub fn as_node(&self) -> Option<&Node> {
        match self {
            Object::Node(n) => Some(n),
            _ => None,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Object::Cluster(_) => Kind::Cluster,
            Object::Node(_) => Kind::Node,
            Object::Service(_) => Kind::Service,
            Object::Task(_) => Kind::Task,
            Object::Network(_) => Kind::Network,
            Object::Secret(_) => Kind::Secret,
            Object::Config(_) => Kind::Config,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Object::Cluster(o) => &o.id,
            Object::Node(o) => &o.id,
            Object::Service(o) => &o.id,
            Object::Task(o) => &o.id,
            Object::Network(o) => &o.id,
            Object::Secret(o) | Object::Config(o) => &o.id,
        }
    }

    fn meta_mut(&mut self) -> &mut Meta {
        match self {
            Object::Cluster(o) => &mut o.meta,
            Object::Node(o) => &mut o.meta,
            Object::Service(o) => &mut o.meta,
            Object::Task(o) => &mut o.meta,
            Object::Network(o) => &mut o.meta,
            Object::Secret(o) | Object::Config(o) => &mut o.meta,
        }
    }

    fn encode(&self, c: &Codec) -> Vec<u8> {
        match self {
            Object::Cluster(o) => c.encode(o),
            Object::Node(o) => c.encode(o),
            Object::Service(o) => c.encode(o),
            Object::Task(o) => c.encode(o),
            Object::Network(o) => c.encode(o),
            Object::Secret(o) | Object::Config(o) => c.encode(o),
        }
    }
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// Fails if the id exists.
    Create(Object),
    /// Fails unless the stored version is the one in the object's meta,
    /// i.e. the version the writer read.
    Update(Object),
    /// Fails if `expected_version` is given and differs; a missing object
    /// is deleted already.
    Delete {
        kind: Kind,
        id: String,
        expected_version: Option<u64>,
    },
    /// The node's report of a task. Applied only if the state moves
    /// forward, and, when `node` is given, only if the task is that
    /// node's; ignored for a task that no longer exists. Reports come from
    /// nodes and must never conflict with managers' writes.
    TaskStatus {
        id: String,
        status: TaskStatus,
        /// The reporting node (absent: a manager's own note, such as why
        /// a task is pending).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// A manager's new desired state for a task; only moves forward.
    TaskDesired { id: String, state: TaskState },
    /// The scheduler's decision: only applied to a task that is still
    /// pending and unassigned.
    TaskAssign { id: String, node_id: String },
}

/// Apply `batch` at time `now` (the proposer's clock, so that every
/// manager writes the same timestamps), and write `marks` (the caller's
/// bookkeeping, such as Raft's applied log position) in the same
/// transaction. A rejected batch writes nothing but the marks: the outer
/// error is an I/O failure, the inner one a rejection.
pub(super) fn apply(
    db: &Database,
    c: &Codec,
    cache: &Mutex<TaskCache>,
    batch: Vec<Change>,
    now: i64,
    marks: &[(&str, Vec<u8>)],
    durability: redb::Durability,
) -> Result<Result<Commit, StoreError>, StoreError> {
    let mut tasks = Tasks {
        cache,
        written: HashMap::new(),
    };
    let result = apply_in_tx(db, c, &mut tasks, batch, now, marks, durability);
    match &result {
        Ok(Ok(_)) => tasks.committed(),
        // Rejected: nothing of the batch was written, the cache holds.
        Ok(Err(_)) => {}
        // A failed commit may still have reached the disk: forget all.
        Err(_) => cache.lock().expect("task cache lock").clear(),
    }
    result
}

/// Every task as it is stored, decoded, by id: the tasks written since the
/// store was opened (a cluster's tasks, soon). A change of one field of a
/// task (a status report, an assignment) reads the task from here instead
/// of decoding it, spec and all, from its stored bytes: those decodes were
/// most of what a busy manager spent applying. Only `apply` and a snapshot
/// import write tasks, and both keep it exact.
pub(super) type TaskCache = HashMap<String, Arc<Object>>;

/// The cache, and what this batch wrote over it (`None`: deleted), which
/// joins the cache only once the batch is committed.
struct Tasks<'a> {
    cache: &'a Mutex<TaskCache>,
    written: HashMap<String, Option<Arc<Object>>>,
}

impl Tasks<'_> {
    /// The task as this batch sees it; `Err(())` when it must be read.
    fn get(&self, id: &str) -> Result<Option<Arc<Object>>, ()> {
        if let Some(w) = self.written.get(id) {
            return Ok(w.clone());
        }
        match self.cache.lock().expect("task cache lock").get(id) {
            Some(o) => Ok(Some(o.clone())),
            None => Err(()),
        }
    }

    fn committed(self) {
        let mut cache = self.cache.lock().expect("task cache lock");
        for (id, w) in self.written {
            match w {
                Some(o) => cache.insert(id, o),
                None => cache.remove(&id),
            };
        }
    }
}

fn apply_in_tx(
    db: &Database,
    c: &Codec,
    tasks: &mut Tasks,
    batch: Vec<Change>,
    now: i64,
    marks: &[(&str, Vec<u8>)],
    durability: redb::Durability,
) -> Result<Result<Commit, StoreError>, StoreError> {
    let mut tx = db.begin_write()?;
    tx.set_durability(durability)?;
    let index = {
        let mut meta = tx.open_table(META)?;
        let index = meta.get("index")?.map(|v| v.value()).unwrap_or(0) + 1;
        meta.insert("index", index)?;
        index
    };
    let mut changed = Vec::with_capacity(batch.len());
    let mut open = Open::new(&tx);
    for change in batch {
        match apply_one(&mut open, c, tasks, change, index, now) {
            Ok(Some(c)) => changed.push(c),
            Ok(None) => {}
            Err(e) if e.is_rejection() => {
                // `tx` is dropped un-committed: nothing of the batch is
                // written.
                drop(open);
                drop(tx);
                if !marks.is_empty() {
                    let mut tx = db.begin_write()?;
                    tx.set_durability(durability)?;
                    write_marks(&tx, c, marks)?;
                    tx.commit()?;
                }
                return Ok(Err(e));
            }
            Err(e) => return Err(e),
        }
    }
    drop(open);
    write_marks(&tx, c, marks)?;
    tx.commit()?;
    Ok(Ok(Commit { index, changed }))
}

/// Marks are sealed like every other value.
pub(super) fn write_marks(
    tx: &redb::WriteTransaction,
    c: &Codec,
    marks: &[(&str, Vec<u8>)],
) -> Result<(), StoreError> {
    let mut t = tx.open_table(MARKS)?;
    for (k, v) in marks {
        t.insert(*k, c.seal(v).as_slice())?;
    }
    Ok(())
}

/// The object tables a batch writes, each opened once per batch rather
/// than once per change (a batch of the scheduler changes thousands).
struct Open<'tx> {
    tx: &'tx redb::WriteTransaction,
    tables: HashMap<Kind, redb::Table<'tx, &'static str, &'static [u8]>>,
}

impl<'tx> Open<'tx> {
    fn new(tx: &'tx redb::WriteTransaction) -> Open<'tx> {
        Open {
            tx,
            tables: HashMap::new(),
        }
    }

    fn table(
        &mut self,
        kind: Kind,
    ) -> Result<&mut redb::Table<'tx, &'static str, &'static [u8]>, StoreError> {
        Ok(match self.tables.entry(kind) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(self.tx.open_table(kind.table())?)
            }
        })
    }
}

fn apply_one(
    open: &mut Open,
    c: &Codec,
    tasks: &mut Tasks,
    change: Change,
    index: u64,
    now: i64,
) -> Result<Option<Changed>, StoreError> {
    match change {
        Change::Create(mut obj) => {
            let (kind, id) = (obj.kind(), obj.id().to_string());
            name_is_free(open, c, &obj)?;
            subnet_is_free(open, c, &obj)?;
            networks_exist(open, &obj)?;
            files_exist(open, &obj)?;
            ports_are_free(open, c, &obj)?;
            vips_are_free(open, c, &obj)?;
            let table = open.table(kind)?;
            if let Some(v) = table.get(id.as_str())? {
                // Ids are new for each create: the same id with the same
                // content is this create, sent again (a follower retrying
                // through a new leader after the old one committed it).
                // It is done already; saying "exists" would call a success
                // a failure.
                if same_but_meta(&stored_object(c, kind, v.value())?, &obj) {
                    return Ok(None);
                }
                return Err(StoreError::Exists {
                    kind: kind.as_str().into(),
                    id,
                });
            }
            *obj.meta_mut() = Meta {
                version: index,
                created_ms: now,
                updated_ms: now,
            };
            table.insert(id.as_str(), obj.encode(c).as_slice())?;
            let mut changed = written(tasks, kind, id, obj);
            changed.created = true;
            Ok(Some(changed))
        }
        Change::Update(mut obj) => {
            let (kind, id) = (obj.kind(), obj.id().to_string());
            name_is_free(open, c, &obj)?;
            subnet_is_free(open, c, &obj)?;
            networks_exist(open, &obj)?;
            files_exist(open, &obj)?;
            ports_are_free(open, c, &obj)?;
            vips_are_free(open, c, &obj)?;
            let table = open.table(kind)?;
            let (stored, bytes) = match table.get(id.as_str())? {
                Some(v) => (
                    stored_meta(c, tasks, kind, &id, v.value())?,
                    v.value().to_vec(),
                ),
                None => {
                    return Err(StoreError::NotFound {
                        kind: kind.as_str().into(),
                        id,
                    })
                }
            };
            if obj.meta_mut().version != stored.version
                && same_but_meta(&stored_object(c, kind, &bytes)?, &obj)
            {
                // What the writer wanted is what is stored: an update sent
                // again after it was applied, or one a concurrent writer
                // made too. Nothing to do, and nothing lost.
                return Ok(None);
            }
            let meta = obj.meta_mut();
            if meta.version != stored.version {
                return Err(StoreError::Conflict {
                    kind: kind.as_str().into(),
                    id,
                    expected: meta.version,
                    actual: stored.version,
                });
            }
            *meta = Meta {
                version: index,
                created_ms: stored.created_ms,
                updated_ms: now,
            };
            table.insert(id.as_str(), obj.encode(c).as_slice())?;
            Ok(Some(written(tasks, kind, id, obj)))
        }
        Change::Delete {
            kind,
            id,
            expected_version,
        } => {
            let table = open.table(kind)?;
            let stored = match table.get(id.as_str())? {
                Some(v) => stored_meta(c, tasks, kind, &id, v.value())?,
                // Gone already, as asked: a delete sent again after it was
                // applied, or two removals racing. The API says "not
                // found" for what never existed before it proposes.
                None => return Ok(None),
            };
            if let Some(expected) = expected_version.filter(|e| *e != stored.version) {
                return Err(StoreError::Conflict {
                    kind: kind.as_str().into(),
                    id,
                    expected,
                    actual: stored.version,
                });
            }
            if kind == Kind::Network {
                network_unused(open, c, &id)?;
            }
            if matches!(kind, Kind::Secret | Kind::Config) {
                file_unused(open, c, kind, &id)?;
            }
            let table = open.table(kind)?;
            table.remove(id.as_str())?;
            if kind == Kind::Task {
                tasks.written.insert(id.clone(), None);
            }
            Ok(Some(Changed {
                kind,
                id,
                written: Written::Deleted,
                created: false,
            }))
        }
        Change::TaskStatus { id, status, node } => {
            update_task(open, c, tasks, &id, index, now, |t| {
                if status.state < t.status.state {
                    return false;
                }
                if node.is_some() && t.node_id != node {
                    return false;
                }
                t.status = status;
                true
            })
        }
        Change::TaskDesired { id, state } => update_task(open, c, tasks, &id, index, now, |t| {
            if state <= t.desired_state {
                return false;
            }
            t.desired_state = state;
            true
        }),
        Change::TaskAssign { id, node_id } => update_task(open, c, tasks, &id, index, now, |t| {
            // Global tasks are made for a node already; the scheduler still
            // confirms them.
            let other_node = t.node_id.as_ref().is_some_and(|n| *n != node_id);
            if other_node || t.status.state > TaskState::Pending {
                return false;
            }
            t.node_id = Some(node_id);
            t.status.state = TaskState::Assigned;
            t.status.timestamp_ms = now;
            t.status.message = "scheduler assigned task to node".into();
            t.status.error = None;
            true
        }),
    }
}

/// Names are unique within a kind, and this is where that holds: checked
/// when the write is applied, in log order, not only when it is proposed,
/// so that creates racing through several managers cannot both win. A scan
/// is enough for the tens of services and networks a cluster has; the
/// values are sealed, so an index of names would have to be sealed too.
fn name_is_free(open: &mut Open, c: &Codec, obj: &Object) -> Result<(), StoreError> {
    let (kind, id, name) = match obj {
        Object::Service(s) => (Kind::Service, &s.id, &s.spec.name),
        Object::Network(n) => (Kind::Network, &n.id, &n.spec.name),
        Object::Secret(f) => (Kind::Secret, &f.id, &f.spec.name),
        Object::Config(f) => (Kind::Config, &f.id, &f.spec.name),
        _ => return Ok(()),
    };
    let table = open.table(kind)?;
    for entry in table.iter()? {
        let (other_id, value) = entry?;
        if other_id.value() == id {
            continue;
        }
        let other = stored_object(c, kind, value.value())?;
        let other_name = match &other {
            Object::Service(s) => &s.spec.name,
            Object::Network(n) => &n.spec.name,
            Object::Secret(f) | Object::Config(f) => &f.spec.name,
            _ => continue,
        };
        if other_name == name {
            return Err(StoreError::Exists {
                kind: kind.as_str().into(),
                id: name.clone(),
            });
        }
    }
    Ok(())
}

/// Subnets are never shared: a network's subnet and a node's bridge
/// subnet must overlap no other. Checked here, when the write is applied in
/// log order, so that two allocations racing through a leader change cannot
/// both win; the loser's write is refused and it allocates again.
fn subnet_is_free(open: &mut Open, c: &Codec, obj: &Object) -> Result<(), StoreError> {
    let (id, subnet) = match obj {
        Object::Network(n) => (&n.id, &n.spec.subnet),
        Object::Node(n) => match &n.bridge_subnet {
            Some(s) => (&n.id, s),
            None => return Ok(()),
        },
        _ => return Ok(()),
    };
    let Ok(mine) = crate::ipam::parse_subnet(subnet) else {
        return Err(StoreError::Invalid(format!("{subnet} is not a subnet")));
    };
    let mut taken = Vec::new();
    for kind in [Kind::Network, Kind::Node] {
        let table = open.table(kind)?;
        for entry in table.iter()? {
            let (other_id, value) = entry?;
            if other_id.value() == id {
                continue;
            }
            let (name, s) = match stored_object(c, kind, value.value())? {
                Object::Network(n) => (format!("network {}", n.spec.name), n.spec.subnet),
                Object::Node(n) => match n.bridge_subnet {
                    Some(s) => (format!("the bridge of node {}", n.description.hostname), s),
                    None => continue,
                },
                _ => continue,
            };
            if let Ok(net) = crate::ipam::parse_subnet(&s) {
                taken.push((name, net));
            }
        }
    }
    crate::ipam::check_free(&mine, &taken).map_err(StoreError::Invalid)
}

/// A service joins only networks that exist: checked in log order, so a
/// service written while its network is removed cannot be left on nothing.
fn networks_exist(open: &mut Open, obj: &Object) -> Result<(), StoreError> {
    let Object::Service(s) = obj else {
        return Ok(());
    };
    let table = open.table(Kind::Network)?;
    for id in s.spec.task.network.network_ids() {
        if table.get(id)?.is_none() {
            return Err(StoreError::NotFound {
                kind: Kind::Network.as_str().into(),
                id: id.into(),
            });
        }
    }
    Ok(())
}

/// A port is published by one service only: every node answers on it for
/// that service. Checked in log order, as names are.
fn ports_are_free(open: &mut Open, c: &Codec, obj: &Object) -> Result<(), StoreError> {
    let Object::Service(new) = obj else {
        return Ok(());
    };
    if new.spec.task.ports.is_empty() {
        return Ok(());
    }
    for other in other_services(open, c, &new.id)? {
        for p in &new.spec.task.ports {
            let clash = other
                .spec
                .task
                .ports
                .iter()
                .any(|o| o.published == p.published && o.protocol == p.protocol);
            if clash {
                return Err(StoreError::Invalid(format!(
                    "port {}/{} is already published by service {}",
                    p.published,
                    p.protocol.as_str(),
                    other.spec.name
                )));
            }
        }
    }
    Ok(())
}

/// A virtual IP is one service's: two creates that picked the same free
/// address at once are told apart here, in log order.
fn vips_are_free(open: &mut Open, c: &Codec, obj: &Object) -> Result<(), StoreError> {
    let Object::Service(new) = obj else {
        return Ok(());
    };
    if new.vips.is_empty() {
        return Ok(());
    }
    for other in other_services(open, c, &new.id)? {
        if let Some(v) = new.vips.iter().find(|v| other.vips.contains(v)) {
            return Err(StoreError::Invalid(format!(
                "virtual IP {} is already service {}'s: try again",
                v.addr, other.spec.name
            )));
        }
    }
    Ok(())
}

/// Every service but the one with id `id`.
fn other_services(open: &mut Open, c: &Codec, id: &str) -> Result<Vec<Service>, StoreError> {
    let table = open.table(Kind::Service)?;
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (other, value) = entry?;
        if other.value() != id {
            out.push(c.decode(value.value())?);
        }
    }
    Ok(out)
}

/// A network in use by a service is not removed.
fn network_unused(open: &mut Open, c: &Codec, id: &str) -> Result<(), StoreError> {
    let table = open.table(Kind::Service)?;
    for entry in table.iter()? {
        let (_, value) = entry?;
        let s: Service = c.decode(value.value())?;
        if s.spec.task.network.network_ids().any(|n| n == id) {
            return Err(StoreError::Invalid(format!(
                "network {id} is in use by service {}",
                s.spec.name
            )));
        }
    }
    Ok(())
}

/// A secret or a config that a service uses stays: its tasks get it from
/// the store whenever they start.
fn file_unused(open: &mut Open, c: &Codec, kind: Kind, id: &str) -> Result<(), StoreError> {
    let table = open.table(Kind::Service)?;
    for entry in table.iter()? {
        let (_, value) = entry?;
        let s: Service = c.decode(value.value())?;
        let refs = match kind {
            Kind::Config => &s.spec.task.configs,
            _ => &s.spec.task.secrets,
        };
        if let Some(f) = refs.iter().find(|f| f.id == id) {
            return Err(StoreError::Invalid(format!(
                "{} {} is in use by service {}",
                kind.as_str(),
                f.name,
                s.spec.name
            )));
        }
    }
    Ok(())
}

/// A service uses only secrets and configs that exist: checked in log
/// order, as its networks are.
fn files_exist(open: &mut Open, obj: &Object) -> Result<(), StoreError> {
    let Object::Service(s) = obj else {
        return Ok(());
    };
    for (kind, refs) in [
        (Kind::Secret, &s.spec.task.secrets),
        (Kind::Config, &s.spec.task.configs),
    ] {
        let table = open.table(kind)?;
        for f in refs {
            if table.get(f.id.as_str())?.is_none() {
                return Err(StoreError::NotFound {
                    kind: kind.as_str().into(),
                    id: f.name.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Read-modify-write of one task; `f` says whether it changed anything.
/// A missing task is not an error: the change raced with its removal.
fn update_task(
    open: &mut Open,
    c: &Codec,
    tasks: &mut Tasks,
    id: &str,
    index: u64,
    now: i64,
    f: impl FnOnce(&mut Task) -> bool,
) -> Result<Option<Changed>, StoreError> {
    let table = open.table(Kind::Task)?;
    let mut task: Task = match tasks.get(id) {
        Ok(Some(o)) => match o.as_task() {
            Some(t) => t.clone(),
            None => return Ok(None),
        },
        Ok(None) => return Ok(None),
        Err(()) => match table.get(id)? {
            Some(v) => c.decode(v.value())?,
            None => return Ok(None),
        },
    };
    if !f(&mut task) {
        return Ok(None);
    }
    task.meta.version = index;
    task.meta.updated_ms = now;
    table.insert(id, c.encode(&task).as_slice())?;
    Ok(Some(written(
        tasks,
        Kind::Task,
        id.to_string(),
        Object::Task(task),
    )))
}

fn written(tasks: &mut Tasks, kind: Kind, id: String, obj: Object) -> Changed {
    let obj = Arc::new(obj);
    if kind == Kind::Task {
        tasks.written.insert(id.clone(), Some(obj.clone()));
    }
    Changed {
        kind,
        id,
        written: Written::Object(obj),
        created: false,
    }
}

/// A stored object, decoded as its kind.
fn stored_object(c: &Codec, kind: Kind, bytes: &[u8]) -> Result<Object, StoreError> {
    Ok(match kind {
        Kind::Cluster => Object::Cluster(c.decode(bytes)?),
        Kind::Node => Object::Node(c.decode(bytes)?),
        Kind::Service => Object::Service(c.decode(bytes)?),
        Kind::Task => Object::Task(c.decode(bytes)?),
        Kind::Network => Object::Network(c.decode(bytes)?),
        Kind::Secret => Object::Secret(c.decode(bytes)?),
        Kind::Config => Object::Config(c.decode(bytes)?),
    })
}

/// The two are the same object but for their bookkeeping (version, times).
fn same_but_meta(stored: &Object, new: &Object) -> bool {
    let mut stored = stored.clone();
    *stored.meta_mut() = match new {
        Object::Cluster(o) => o.meta.clone(),
        Object::Node(o) => o.meta.clone(),
        Object::Service(o) => o.meta.clone(),
        Object::Task(o) => o.meta.clone(),
        Object::Network(o) => o.meta.clone(),
        Object::Secret(o) | Object::Config(o) => o.meta.clone(),
    };
    stored == *new
}

fn stored_meta(
    c: &Codec,
    tasks: &Tasks,
    kind: Kind,
    id: &str,
    bytes: &[u8],
) -> Result<Meta, StoreError> {
    if kind == Kind::Task {
        if let Ok(Some(t)) = tasks.get(id) {
            if let Some(t) = t.as_task() {
                return Ok(t.meta.clone());
            }
        }
    }
    Ok(match kind {
        Kind::Cluster => c.decode::<Cluster>(bytes)?.meta,
        Kind::Node => c.decode::<Node>(bytes)?.meta,
        Kind::Service => c.decode::<Service>(bytes)?.meta,
        Kind::Task => c.decode::<Task>(bytes)?.meta,
        Kind::Network => c.decode::<Network>(bytes)?.meta,
        Kind::Secret | Kind::Config => c.decode::<Secret>(bytes)?.meta,
    })
}
