//! Typed reads from one consistent redb snapshot.

use redb::{ReadTransaction, ReadableTable, TableDefinition};

use super::codec::Codec;
use super::{
    Kind, Object, StoreError, CLUSTER, CONFIGS, META, NETWORKS, NODES, SECRETS, SERVICES, TASKS,
};
use crate::types::{Cluster, Node, Service, Task};
use crate::types::{Config, Network, Secret};

/// A snapshot of the store: everything read through one view is from the
/// same commit.
pub struct ReadView {
    tx: ReadTransaction,
    codec: Codec,
}

impl ReadView {
    pub(super) fn new(tx: ReadTransaction, codec: Codec) -> ReadView {
        ReadView { tx, codec }
    }

    pub fn index(&self) -> Result<u64, StoreError> {
        let t = self.tx.open_table(META)?;
        Ok(t.get("index")?.map(|v| v.value()).unwrap_or(0))
    }

    fn get<T: crate::format::Versioned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        let t = self.tx.open_table(table)?;
        let v = t.get(id)?;
        v.map(|v| self.codec.decode(v.value())).transpose()
    }

    fn all<T: crate::format::Versioned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<T>, StoreError> {
        let t = self.tx.open_table(table)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (_, v) = entry?;
            out.push(self.codec.decode(v.value())?);
        }
        Ok(out)
    }

    /// One object of any kind, by id.
    pub(super) fn object(&self, kind: Kind, id: &str) -> Result<Option<Object>, StoreError> {
        Ok(match kind {
            Kind::Cluster => self.get(CLUSTER, id)?.map(Object::Cluster),
            Kind::Node => self.node(id)?.map(Object::Node),
            Kind::Service => self.service(id)?.map(Object::Service),
            Kind::Task => self.task(id)?.map(Object::Task),
            Kind::Network => self.get(NETWORKS, id)?.map(Object::Network),
            Kind::Secret => self.get(SECRETS, id)?.map(Object::Secret),
            Kind::Config => self.get(CONFIGS, id)?.map(Object::Config),
        })
    }

    /// Every object of one kind.
    pub(super) fn objects(&self, kind: Kind) -> Result<Vec<Object>, StoreError> {
        Ok(match kind {
            Kind::Cluster => self
                .all(CLUSTER)?
                .into_iter()
                .map(Object::Cluster)
                .collect(),
            Kind::Node => self.nodes()?.into_iter().map(Object::Node).collect(),
            Kind::Service => self.services()?.into_iter().map(Object::Service).collect(),
            Kind::Task => self.tasks()?.into_iter().map(Object::Task).collect(),
            Kind::Network => self.networks()?.into_iter().map(Object::Network).collect(),
            Kind::Secret => self.secrets()?.into_iter().map(Object::Secret).collect(),
            Kind::Config => self.configs()?.into_iter().map(Object::Config).collect(),
        })
    }

    /// The cluster object, if `init` has run.
    pub fn cluster(&self) -> Result<Option<Cluster>, StoreError> {
        Ok(self.all::<Cluster>(CLUSTER)?.into_iter().next())
    }

    pub fn node(&self, id: &str) -> Result<Option<Node>, StoreError> {
        self.get(NODES, id)
    }

    /// The node, unless it is not in the store or was removed from the
    /// cluster: the one check of whether a node still belongs.
    pub fn member(&self, id: &str) -> Result<Option<Node>, StoreError> {
        let removed = self.cluster()?.is_some_and(|c| c.is_removed(id));
        Ok(self.node(id)?.filter(|_| !removed))
    }

    pub fn nodes(&self) -> Result<Vec<Node>, StoreError> {
        self.all(NODES)
    }

    /// Every manager's address, for a node's list of where to reconnect.
    pub fn manager_addrs(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .nodes()?
            .into_iter()
            .filter(|n| n.is_manager())
            .map(|n| n.status.addr)
            .collect())
    }

    pub fn service(&self, id: &str) -> Result<Option<Service>, StoreError> {
        self.get(SERVICES, id)
    }

    pub fn services(&self) -> Result<Vec<Service>, StoreError> {
        self.all(SERVICES)
    }

    /// A service by name, or else by id or unique id prefix, as docker
    /// resolves them.
    pub fn find_service(&self, name_or_id: &str) -> Result<Option<Service>, StoreError> {
        Ok(by_name(self.services()?, name_or_id, |s| {
            (&s.spec.name, &s.id)
        }))
    }

    pub fn task(&self, id: &str) -> Result<Option<Task>, StoreError> {
        self.get(TASKS, id)
    }

    pub fn tasks(&self) -> Result<Vec<Task>, StoreError> {
        self.all(TASKS)
    }

    pub fn tasks_of_service(&self, service_id: &str) -> Result<Vec<Task>, StoreError> {
        Ok(self
            .tasks()?
            .into_iter()
            .filter(|t| t.service_id == service_id)
            .collect())
    }

    pub fn tasks_of_node(&self, node_id: &str) -> Result<Vec<Task>, StoreError> {
        Ok(self
            .tasks()?
            .into_iter()
            .filter(|t| t.node_id.as_deref() == Some(node_id))
            .collect())
    }

    pub fn networks(&self) -> Result<Vec<Network>, StoreError> {
        self.all(NETWORKS)
    }

    /// A network by name, or else by id or unique id prefix.
    pub fn find_network(&self, name_or_id: &str) -> Result<Option<Network>, StoreError> {
        Ok(by_name(self.networks()?, name_or_id, |n| {
            (&n.spec.name, &n.id)
        }))
    }

    pub fn secrets(&self) -> Result<Vec<Secret>, StoreError> {
        self.all(SECRETS)
    }

    pub fn configs(&self) -> Result<Vec<Config>, StoreError> {
        self.all(CONFIGS)
    }

    /// A secret (`Kind::Secret`) or a config (`Kind::Config`) by id.
    pub fn file(&self, kind: Kind, id: &str) -> Result<Option<Secret>, StoreError> {
        match kind {
            Kind::Config => self.get(CONFIGS, id),
            _ => self.get(SECRETS, id),
        }
    }

    /// A secret or a config by name, or else by id or unique id prefix.
    pub fn find_file(&self, kind: Kind, name_or_id: &str) -> Result<Option<Secret>, StoreError> {
        let all = match kind {
            Kind::Config => self.configs()?,
            _ => self.secrets()?,
        };
        Ok(by_name(all, name_or_id, |s| (&s.spec.name, &s.id)))
    }
}

/// The object named `name_or_id`, or else the one with that id, or else the
/// only one whose id starts with it.
fn by_name<T>(all: Vec<T>, name_or_id: &str, keys: impl Fn(&T) -> (&String, &String)) -> Option<T> {
    let exact = all.iter().position(|o| {
        let (name, id) = keys(o);
        name == name_or_id || id == name_or_id
    });
    if let Some(i) = exact {
        return all.into_iter().nth(i);
    }
    let mut prefixed = all
        .into_iter()
        .filter(|o| keys(o).1.starts_with(name_or_id));
    match (prefixed.next(), prefixed.next()) {
        (Some(o), None) if !name_or_id.is_empty() => Some(o),
        _ => None,
    }
}
