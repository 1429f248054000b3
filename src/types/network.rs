//! Networks that tasks join, and how a task is networked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Meta;

/// How a network's tasks reach each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NetworkDriver {
    /// Spans the nodes: tasks on any node reach each other through the
    /// overlay between nodes.
    #[default]
    Overlay,
    /// Local to each node: tasks reach only the tasks on their own node.
    Bridge,
}

impl NetworkDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkDriver::Overlay => "overlay",
            NetworkDriver::Bridge => "bridge",
        }
    }

    pub fn parse(s: &str) -> Option<NetworkDriver> {
        match s {
            "overlay" => Some(NetworkDriver::Overlay),
            "bridge" => Some(NetworkDriver::Bridge),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    pub name: String,
    pub driver: NetworkDriver,
    /// The network's subnet (CIDR), given or allocated from the cluster's
    /// pool at create. Never shared with another network or a node's
    /// bridge: the store refuses an overlap when it applies the create.
    pub subnet: String,
    /// The subnet's first host unless given.
    pub gateway: String,
    /// Whether traffic between nodes is encrypted (WireGuard); `false`
    /// (`--opt encrypted=false`) is for trusted LANs.
    pub encrypted: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attachable: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub meta: Meta,
    pub spec: NetworkSpec,
}

/// No release before this one stored networks, so no value of this type is
/// ever in format 1; the frozen form is today's (never used to decode).
impl crate::format::Versioned for Network {
    type V1 = Network;
}

/// How a task's container is networked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NetworkMode {
    /// The node's own network namespace. What a spec without the field
    /// means, because 254a909 ran every task so: an upgrade must not move a
    /// running service off the host's ports.
    #[default]
    Host,
    /// A network namespace of its own, on the node's bridge, and on these
    /// networks (by id) too.
    Own(Vec<NetworkAttachment>),
}

impl NetworkMode {
    pub fn is_host(&self) -> bool {
        matches!(self, NetworkMode::Host)
    }

    /// The networks (ids) the task joins, besides the node's bridge.
    pub fn network_ids(&self) -> impl Iterator<Item = &str> {
        let list: &[NetworkAttachment] = match self {
            NetworkMode::Host => &[],
            NetworkMode::Own(l) => l,
        };
        list.iter().map(|a| a.network.as_str())
    }

    /// The aliases the task has on network `id`.
    pub fn aliases_on(&self, id: &str) -> &[String] {
        match self {
            NetworkMode::Host => &[],
            NetworkMode::Own(l) => l
                .iter()
                .find(|a| a.network == id)
                .map_or(&[], |a| a.aliases.as_slice()),
        }
    }
}

/// A service's virtual IP on one of its networks: one address of the
/// network's subnet, which every node balances over the service's tasks.
/// Given when the service joins the network, kept while it stays on it,
/// and never held by two services at once (the store checks).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Vip {
    /// The network's id.
    pub network: String,
    /// The address, without a prefix.
    pub addr: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachment {
    /// The network's id.
    pub network: String,
    /// Extra names the task answers to on this network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            _ => None,
        }
    }
}

/// Where a published port answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum PublishMode {
    /// On every node, whichever runs a task (the routing mesh).
    #[default]
    Ingress,
    /// On the nodes that run a task, to their own tasks.
    Host,
}

impl PublishMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PublishMode::Ingress => "ingress",
            PublishMode::Host => "host",
        }
    }

    pub fn parse(s: &str) -> Option<PublishMode> {
        match s {
            "ingress" => Some(PublishMode::Ingress),
            "host" => Some(PublishMode::Host),
            _ => None,
        }
    }
}

/// A port of the service's tasks published on the nodes
/// (`--publish published=P,target=T`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortConfig {
    pub protocol: Protocol,
    /// The port the tasks listen on.
    pub target: u16,
    /// The port the nodes answer on.
    pub published: u16,
    pub mode: PublishMode,
}

impl std::fmt::Display for PortConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "*:{}->{}/{}",
            self.published,
            self.target,
            self.protocol.as_str()
        )
    }
}
